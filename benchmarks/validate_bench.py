"""Benchmark ``finetune_sdk.data.validate`` against the OpenAI cookbook's chat data-prep check.

The peer is a re-implementation (from its published description) of the cookbook notebook
"Chat_finetuning_data_prep": load the whole JSONL file, count format errors, count tokens
per example (3 per message + value tokens + 1 per name + 3 priming), warn about missing
system/user messages and examples over 16,385 tokens, and estimate epochs and billing.

Measured in one run, each candidate in a fresh subprocess (3 runs, medians): the peer; our
validator with workers=2 and workers=1; and the floor -- tiktoken alone encoding the same
strings the peer encodes, on one core and split over two processes. Peak memory is sampled
over the subprocess tree (RSS sum, conservative, and PSS, which counts shared pages once).

    python benchmarks/validate_bench.py [--examples 100000] [--runs 3] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

MODEL = "gpt-4o-mini-2024-07-18"  # o200k_base, training context 65,536 tokens
ENCODING = "o200k_base"
GEN_VERSION = 2  # bump when the generator changes, to invalidate cached files

# ----------------------------------------------------------------------------- data

_COMMON = """the of and to in is that for it as with was on be by this are from at or an have not which but
all can had her one our out day get has him his how man new now old see two way who boy did its let put say
she too use data model training example answer question system user value result should would could about
into than then them these those there their what when where while after before under over again first last
long great little own other old right big high different small large next early young important few public
bad same able report order customer account service support invoice payment delivery shipping return refund
product price discount number email phone address city country weather forecast temperature file folder
document request response error warning message server client network database query table column record
please thanks sorry help check update change create delete send receive open close start stop""".split()
_RARE = ["photosynthesis", "idempotent", "Kubernetes", "asynchronous", "serialization", "heteroscedasticity",
         "microservice", "OAuth2", "PostgreSQL", "JSONL", "tokenizer", "hyperparameter", "gradient", "latency",
         "throughput", "reconciliation", "amortization", "subpoena", "thermodynamics", "biodiversity"]
_NON_ASCII = ["café", "naïve", "Zürich", "São Paulo", "Müller", "résumé", "東京", "数据集", "привет", "données",
              "señor", "€", "—", "😀", "Ελλάδα", "مرحبا", "日本語", "Ångström", "jalapeño", "Kraków", "“quoted”"]
_SYLL = ["ka", "lo", "mi", "ten", "dra", "vor", "ix", "pel", "sun", "gra", "bo", "ze", "qua", "rin", "th", "ul"]

_TOOLS = [
    {"type": "function", "function": {"name": n, "description": d, "parameters": {
        "type": "object", "properties": {p: {"type": t, "description": f"The {p}."} for p, t in props},
        "required": [props[0][0]]}}}
    for n, d, props in [
        ("get_weather", "Current weather for a city.", [("city", "string"), ("unit", "string")]),
        ("search_docs", "Search the knowledge base.", [("query", "string"), ("top_k", "integer")]),
        ("create_ticket", "Open a support ticket.", [("title", "string"), ("priority", "string"),
                                                      ("body", "string")]),
        ("lookup_order", "Find an order by id.", [("order_id", "string")]),
        ("convert_currency", "Convert an amount.", [("amount", "number"), ("from", "string"), ("to", "string")]),
        ("run_sql", "Run a read-only SQL query.", [("sql", "string")]),
    ]]
_TOOLSETS = [[0, 1], [2, 3], [3, 4, 5], [0, 1, 2, 3, 4, 5]]  # few distinct schemas, heavily repeated


class _Gen:
    """Deterministic natural-ish text and conversations from one seed."""

    def __init__(self, seed: int) -> None:
        self.r = r = random.Random(seed)
        self.scale = 0.0  # log-size class of the example being generated
        pseudo = ["".join(r.choices(_SYLL, k=r.randint(2, 4))) for _ in range(3000)]
        self.sentences = [self._sentence(pseudo) for _ in range(40000)]
        self.systems = [self.text(r.choice([1, 2, 4, 12, 40])) for _ in range(12)]

    def _word(self, pseudo: list[str]) -> str:
        r, x = self.r, self.r.random()
        if x < 0.82:
            return r.choice(_COMMON)
        if x < 0.89:
            return r.choice(pseudo)
        if x < 0.92:
            return r.choice(_RARE)
        if x < 0.95:
            return r.choice(_NON_ASCII)
        return r.choice([str(r.randint(0, 999)), f"{r.uniform(0, 1e4):.2f}", str(r.randint(1950, 2030)),
                         f"{r.randint(1, 99)}%", f"#{r.randint(1000, 99999)}"])

    def _sentence(self, pseudo: list[str]) -> str:
        r = self.r
        words = [self._word(pseudo) for _ in range(r.randint(4, 24))]
        for i in range(1, len(words) - 1):
            if r.random() < 0.07:
                words[i] += ","
        s = " ".join(words)
        return s[0].upper() + s[1:] + r.choice(".....?!:")

    def text(self, n_sentences: int) -> str:
        r = self.r
        out = " ".join(r.choices(self.sentences, k=n_sentences))
        if n_sentences > 6 and r.random() < 0.3:  # paragraphs and a bullet list
            items = "\n".join("- " + s for s in r.choices(self.sentences, k=r.randint(3, 6)))
            out = out.replace(". ", ".\n\n", 2) + "\n\n" + items
        return out

    def length(self, mu: float) -> int:
        """Sentences in one message: log-normal around ``mu``, shifted by the example's size class."""
        return max(1, min(400, int(self.r.lognormvariate(mu + self.scale, 0.9))))

    def example(self, tool_fraction: float) -> dict:
        r, msgs = self.r, []
        self.scale = r.gauss(-0.37, 0.8)  # most examples short, a long tail of long ones
        if r.random() < 0.88:
            msgs.append({"role": "system", "content": r.choice(self.systems)})
        ex: dict = {"messages": msgs}
        if r.random() < tool_fraction:
            ts = r.choice(_TOOLSETS)
            ex["tools"] = [_TOOLS[i] for i in ts]
            msgs.append({"role": "user", "content": self.text(self.length(0.8))})
            calls = []
            for _ in range(r.choice([1, 1, 2])):
                fn = _TOOLS[r.choice(ts)]["function"]
                args = {p: (r.randint(1, 500) if s["type"] in ("integer", "number") else self.text(1)[:60])
                        for p, s in fn["parameters"]["properties"].items()}
                calls.append({"id": f"call_{r.getrandbits(48):012x}", "type": "function",
                              "function": {"name": fn["name"], "arguments": json.dumps(args, ensure_ascii=False)}})
            msgs.append({"role": "assistant", "tool_calls": calls})
            for c in calls:
                result = {"ok": True, "result": self.text(self.length(1.0))}
                msgs.append({"role": "tool", "tool_call_id": c["id"], "content": json.dumps(result, ensure_ascii=False)})
            msgs.append({"role": "assistant", "content": self.text(self.length(1.4))})
            return ex
        for turn in range(r.choices([1, 2, 3, 5], weights=[55, 25, 14, 6])[0]):
            msgs.append({"role": "user", "content": self.text(self.length(0.9))})
            msgs.append({"role": "assistant", "content": self.text(self.length(1.6))})
        if r.random() < 0.02:
            msgs[-2]["name"] = r.choice(["alice", "bob_smith", "Operator-7"])
        if r.random() < 0.01:
            msgs.pop(-2)  # no user message in this one
        return ex


def build_dataset(path: str, n: int, seed: int, tool_fraction: float) -> None:
    """Write ``n`` examples to ``path`` unless a file from the same parameters is already there."""
    params = {"n": n, "seed": seed, "tool_fraction": tool_fraction, "version": GEN_VERSION}
    meta = path + ".params.json"
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta) as f:
            if json.load(f) == {**params, "size": os.path.getsize(path)}:
                return
    t0 = time.perf_counter()
    g = _Gen(seed)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps(g.example(tool_fraction), ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)
    with open(meta, "w") as f:
        json.dump({**params, "size": os.path.getsize(path)}, f)
    print(f"built {path}: {n:,} examples, {os.path.getsize(path) / 1e6:.0f} MB in {time.perf_counter() - t0:.0f}s")


def extract_plain(src: str, dst: str, limit: int) -> int:
    """Copy the first ``limit`` examples without tools (only role/content/name string messages)."""
    n = 0
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for line in f:
            ex = json.loads(line)
            if set(ex) == {"messages"} and all(set(m) <= {"role", "content", "name"} for m in ex["messages"]):
                out.write(line)
                n += 1
                if n >= limit:
                    break
    return n


# ----------------------------------------------------------------------------- peer


def peer(path: str, enc) -> dict:
    """The cookbook's checks, re-implemented from its description (not copied)."""
    import numpy as np

    with open(path, encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]
    format_errors: dict = defaultdict(int)
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages")
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
            if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
                format_errors["message_unrecognized_key"] += 1
            if message.get("role") not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
            content, function_call = message.get("content"), message.get("function_call")
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] += 1
        if not any(m.get("role") == "assistant" for m in messages):
            format_errors["example_missing_assistant_message"] += 1

    encode = enc.encode_ordinary

    def num_tokens_from_messages(messages, tokens_per_message=3, tokens_per_name=1):
        n = 0
        for message in messages:
            n += tokens_per_message
            for key, value in message.items():
                # The cookbook encodes every value and would crash on non-strings (tool_calls,
                # weight, content=None); the peer counts only string values.
                if isinstance(value, str):
                    n += len(encode(value))
                    if key == "name":
                        n += tokens_per_name
        return n + 3

    def num_assistant_tokens(messages):
        return sum(len(encode(m["content"])) for m in messages
                   if m.get("role") == "assistant" and isinstance(m.get("content"), str))

    n_missing_system = n_missing_user = 0
    n_messages, convo_lens, assistant_lens = [], [], []
    for ex in dataset:
        messages = ex["messages"]
        n_missing_system += not any(m.get("role") == "system" for m in messages)
        n_missing_user += not any(m.get("role") == "user" for m in messages)
        n_messages.append(len(messages))
        convo_lens.append(num_tokens_from_messages(messages))
        assistant_lens.append(num_assistant_tokens(messages))

    def dist(values):
        a = np.asarray(values)
        return {"min": int(a.min()), "max": int(a.max()), "mean": float(a.mean()), "median": float(np.median(a)),
                "p10": float(np.quantile(a, 0.1)), "p90": float(np.quantile(a, 0.9))}

    stats = {"messages": dist(n_messages), "total": dist(convo_lens), "assistant": dist(assistant_lens)}
    n_too_long = sum(length > 16385 for length in convo_lens)
    TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25000
    MIN_DEFAULT_EPOCHS, MAX_DEFAULT_EPOCHS = 1, 25
    n_epochs, n_train = TARGET_EPOCHS, len(dataset)
    if n_train * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        n_epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_train)
    elif n_train * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        n_epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_train)
    n_billing = sum(min(16385, length) for length in convo_lens)
    return {"examples": n_train, "format_errors": dict(format_errors), "missing_system": n_missing_system,
            "missing_user": n_missing_user, "too_long": n_too_long, "n_epochs": n_epochs, "billing": n_billing,
            "total_tokens": int(sum(convo_lens)), "assistant_tokens": int(sum(assistant_lens)),
            "dist": {k: stats[k] for k in ("total", "assistant")}}


# ----------------------------------------------------------------------------- measured children

_STRINGS: list = []


def _encode_slice(bounds: tuple) -> int:
    from finetune_sdk.data.tokens import load_encoding
    encode = load_encoding(ENCODING).encode_ordinary  # inherited through fork: already loaded
    return sum(len(encode(s)) for s in _STRINGS[bounds[0]:bounds[1]])


def child(kind: str, path: str, workers: int) -> dict:
    """Run one candidate in this (fresh) process; the parent samples our memory meanwhile."""
    import resource

    from finetune_sdk.data import validate
    from finetune_sdk.data.tokens import load_encoding
    out: dict = {}
    if kind == "peer":
        t0 = time.perf_counter()
        out = peer(path, load_encoding(ENCODING))
    elif kind == "ours":
        t0 = time.perf_counter()
        rep = validate(path, model=MODEL, workers=workers)
        tk = rep.tokens
        out = {"examples": rep.examples, "errors": rep.error_counts, "warnings": rep.warning_counts,
               "total_tokens": tk.total_tokens, "assistant_tokens": tk.assistant_tokens,
               "billing": rep.estimate.tokens_per_epoch, "n_epochs": rep.estimate.n_epochs,
               "dist": {"total": tk.per_example.model_dump(), "assistant": tk.assistant_per_example.model_dump()}}
    else:  # floor: prepare the strings the peer encodes, then time tiktoken alone
        enc = load_encoding(ENCODING)
        with open(path, encoding="utf-8") as f:
            for line in f:
                _STRINGS.extend(v for m in json.loads(line)["messages"] for v in m.values() if isinstance(v, str))
        chars = [0]
        for s in _STRINGS:
            chars.append(chars[-1] + len(s))
        if workers == 1:
            t0 = time.perf_counter()
            out["tokens"] = sum(len(enc.encode_ordinary(s)) for s in _STRINGS)
        else:  # contiguous halves of (nearly) equal character counts, one process each
            import bisect
            import multiprocessing
            mid = bisect.bisect_left(chars, chars[-1] // 2)
            with multiprocessing.get_context("fork").Pool(2) as pool:
                pool.map(abs, [0, 0], chunksize=1)  # both workers up before the clock starts
                t0 = time.perf_counter()
                out["tokens"] = sum(pool.map(_encode_slice, [(0, mid), (mid, len(_STRINGS))], chunksize=1))
    out["seconds"] = time.perf_counter() - t0
    out["maxrss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["maxrss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def measure(kind: str, path: str, workers: int) -> dict:
    """Run ``child`` in a fresh interpreter, sampling the RSS and PSS of its process tree."""
    import psutil
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", kind, "--file", path, "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    root, peak_rss, peak_pss = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        rss = pss = 0
        try:
            for p in [root] + root.children(recursive=True):
                m = p.memory_full_info()
                rss, pss = rss + m.rss, pss + m.pss
        except psutil.Error:
            pass
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.02)
    stdout = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{kind} failed with exit code {proc.returncode}")
    res = json.loads(stdout.strip().splitlines()[-1])
    res["rss_mb"] = max(peak_rss / 1e6, res["maxrss_self_mb"] * 1.048576)
    res["pss_mb"] = peak_pss / 1e6
    return res


# ----------------------------------------------------------------------------- report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "validate_bench"))
    ap.add_argument("--seed", type=int, default=20240718)
    ap.add_argument("--tool-fraction", type=float, default=0.3)
    ap.add_argument("--quick", action="store_true", help="5,000 examples, 1 run (smoke test)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        print(json.dumps(child(a._child, a.file, a.workers)))
        return 0
    if a.quick:
        a.examples, a.runs = 5000, 1
    os.makedirs(a.out, exist_ok=True)
    big = os.path.join(a.out, f"chat_{a.examples}_s{a.seed}_t{a.tool_fraction}.jsonl")
    build_dataset(big, a.examples, a.seed, a.tool_fraction)
    size_mb = os.path.getsize(big) / 1e6

    cands = [("peer (cookbook)", "peer", 1), ("ours, workers=2", "ours", 2), ("ours, workers=1", "ours", 1),
             ("floor, 1 core", "floor", 1), ("floor, 2 cores", "floor", 2)]
    runs: dict = {label: [] for label, _, _ in cands}
    for i in range(a.runs):  # interleaved, so drift hits every candidate alike
        for label, kind, w in cands:
            r = measure(kind, big, w)
            runs[label].append(r)
            print(f"  run {i + 1}/{a.runs} {label:16s} {r['seconds']:7.2f}s  rss {r['rss_mb']:6.0f} MB", flush=True)
    med = {label: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "rss_mb", "pss_mb")}
           for label, rs in runs.items()}

    print(f"\nFile: {big}\n  {a.examples:,} examples, {size_mb:.1f} MB, encoding {ENCODING}, "
          f"medians of {a.runs} run(s), {os.cpu_count()} CPUs")
    print(f"\n{'candidate':18s}{'seconds':>9s}{'examples/s':>12s}{'MB/s':>8s}{'peak RSS MB':>13s}{'peak PSS MB':>13s}")
    for label, m in med.items():
        print(f"{label:18s}{m['seconds']:9.2f}{a.examples / m['seconds']:12,.0f}{size_mb / m['seconds']:8.1f}"
              f"{m['rss_mb']:13.0f}{m['pss_mb']:13.0f}")
    print("  (RSS = sum over the process tree, sampled every 20 ms; counts pages shared by forked workers "
          "once per process. PSS splits shared pages.)")

    peer_r, ours2, ours1 = runs["peer (cookbook)"][0], runs["ours, workers=2"][0], runs["ours, workers=1"][0]
    ratio = med["peer (cookbook)"]["seconds"] / med["ours, workers=2"]["seconds"]
    vs_floor = med["ours, workers=2"]["seconds"] / med["floor, 2 cores"]["seconds"]
    mem = max(med["ours, workers=2"]["rss_mb"], med["ours, workers=1"]["rss_mb"])
    mem_pss = max(med["ours, workers=2"]["pss_mb"], med["ours, workers=1"]["pss_mb"])
    ok = lambda c: "PASS" if c else "MISS"  # noqa: E731
    print("\nTargets")
    print(f"  throughput ours(2)/peer      {ratio:6.2f}x   (target >= 2.5x)   {ok(ratio >= 2.5)}")
    print(f"  time ours(2)/floor(2 cores)  {vs_floor:6.2f}x   (target <= 1.3x)   {ok(vs_floor <= 1.3)}")
    print(f"  peak memory, ours            {mem:6.0f} MB RSS, {mem_pss:.0f} MB PSS (target < 500 MB)   "
          f"{ok(mem < 500)} (RSS) / {ok(mem_pss < 500)} (PSS)")
    print(f"  worker RSS via getrusage: self {ours2['maxrss_self_mb']:.0f} MB, "
          f"largest child {ours2['maxrss_children_mb']:.0f} MB")

    # Token totals: exact on plain chat examples taken from the same file.
    plain = big.replace(".jsonl", ".plain.jsonl")
    n_plain = extract_plain(big, plain, 10_000)
    pp, po = measure("peer", plain, 1), measure("ours", plain, 2)
    same = pp["total_tokens"] == po["total_tokens"] and pp["assistant_tokens"] == po["assistant_tokens"]
    print(f"\nToken totals on {n_plain:,} plain chat examples (no tools; role/content/name strings only)")
    for who, r in (("peer", pp), ("ours", po)):
        d = r["dist"]["total"]
        print(f"  {who}: total {r['total_tokens']:,}  assistant {r['assistant_tokens']:,}  per example min "
              f"{d['min']:.0f} median {d['median']:.1f} p90 {d['p90']:.1f} max {d['max']:.0f}  billing {r['billing']:,}")
    print(f"  identical totals: {'YES' if same else 'NO'}   {ok(same)}")

    print(f"\nBig file ({a.examples:,} examples; {a.tool_fraction:.0%} with tools, which the peer does not know)")
    print(f"  peer total {peer_r['total_tokens']:,} (assistant {peer_r['assistant_tokens']:,}, billing "
          f"{peer_r['billing']:,} @16,385, {peer_r['n_epochs']} epochs, {peer_r['too_long']} too long)")
    print(f"  ours total {ours2['total_tokens']:,} (assistant {ours2['assistant_tokens']:,}, billing "
          f"{ours2['billing']:,} @65,536, {ours2['n_epochs']} epochs); workers=1 total {ours1['total_tokens']:,}")
    print(f"  peer format errors: {dict(sorted(peer_r['format_errors'].items()))}")
    print(f"  peer warnings: missing system {peer_r['missing_system']:,}, missing user {peer_r['missing_user']:,}")
    print(f"  ours errors: {ours2['errors']}\n  ours warnings: {ours2['warnings']}")
    floors = {r["tokens"] for label in ("floor, 1 core", "floor, 2 cores") for r in runs[label]}
    print(f"  floor tokens (string values only, no per-message overhead): {sorted(floors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
