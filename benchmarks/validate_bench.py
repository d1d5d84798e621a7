"""Benchmark ``finetune_sdk.data.validate`` against the OpenAI cookbook's chat data-prep check.

The peer is a re-implementation (from its published description) of the cookbook notebook
"Chat_finetuning_data_prep": load the whole JSONL file, count format errors, count tokens
per example (3 per message + value tokens + 1 per name + 3 priming), warn about missing
system/user messages and examples over 16,385 tokens, and estimate epochs and billing.

Measured in one run, each candidate in a fresh subprocess (3 runs, medians): the peer; our
validator with workers=2 and workers=1; and the floor -- tiktoken alone encoding the same
strings the peer encodes (and, as floor*, each distinct string once), on one core and split
over two processes. Peak memory is sampled over the subprocess tree (RSS sum, conservative,
and PSS, which counts shared pages once). The machine may be shared: before each measurement
the script waits for it to be quiet, and it reports the CPU other processes used meanwhile.

    python benchmarks/validate_bench.py [--examples 100000] [--runs 3] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

MODEL = "gpt-4o-mini-2024-07-18"  # o200k_base, training context 65,536 tokens
ENCODING = "o200k_base"
GEN_VERSION = 3  # bump when the generator changes, to invalidate cached files

# ----------------------------------------------------------------------------- data

_COMMON = """the of and to in is that for it as with was on be by this are from at or an have not which but
all can had her one our out day get has him his how man new now old see two way who boy did its let put say
she too use data model training example answer question system user value result should would could about
into than then them these those there their what when where while after before under over again first last
long great little own other old right big high different small large next early young important few public
bad same able report order customer account service support invoice payment delivery shipping return refund
product price discount number email phone address city country weather forecast temperature file folder
document request response error warning message server client network database query table column record
please thanks sorry help check update change create delete send receive open close start stop
""".split()
_RARE = ["photosynthesis", "idempotent", "Kubernetes", "asynchronous", "serialization", "heteroscedasticity",
         "microservice", "OAuth2", "PostgreSQL", "JSONL", "tokenizer", "hyperparameter", "gradient",
         "latency", "throughput", "reconciliation", "amortization", "subpoena", "thermodynamics",
         "biodiversity"]
_NON_ASCII = ["café", "naïve", "Zürich", "São Paulo", "Müller", "résumé", "東京", "数据集", "привет", "données",
              "señor", "€", "—", "😀", "Ελλάδα", "مرحبا", "日本語", "Ångström", "jalapeño", "Kraków", "“quoted”"]
_SYLL = ["ka", "lo", "mi", "ten", "dra", "vor", "ix", "pel", "sun", "gra", "bo", "ze", "qua", "rin",
         "th", "ul"]

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
        ("convert_currency", "Convert an amount.",
         [("amount", "number"), ("from", "string"), ("to", "string")]),
        ("run_sql", "Run a read-only SQL query.", [("sql", "string")]),
    ]]
_TOOLSETS = [[0, 1], [2, 3], [3, 4, 5], [0, 1, 2, 3, 4, 5]]  # few distinct schemas, heavily repeated


class _Gen:
    """Deterministic natural-ish text and conversations from one seed."""

    SHIFT = 0.0  # log-size shift of messages: sets the mean example size (~3.5 KB)

    def __init__(self, seed: int) -> None:
        self.r = r = random.Random(seed)
        self.scale = 0.0  # log-size class of the example being generated
        pseudo = ["".join(r.choices(_SYLL, k=r.randint(2, 4))) for _ in range(3000)]
        self.sentences = [self._sentence(pseudo) for _ in range(40000)]
        self.systems = [self.text(k) for k in (1, 2, 2, 3, 4, 5, 6, 8, 10, 14, 20, 30)]  # ~20-700 tokens

    def _word(self, pseudo: list[str]) -> str:
        r, x = self.r, self.r.random()
        pool = (_COMMON if x < .82 else pseudo if x < .89 else _RARE if x < .92
                else _NON_ASCII if x < .95 else None)
        if pool is not None:
            return r.choice(pool)
        return r.choice([str(r.randint(0, 999)), f"{r.uniform(0, 1e4):.2f}", str(r.randint(1950, 2030)),
                         f"{r.randint(1, 99)}%", f"#{r.randint(1000, 99999)}"])

    def _sentence(self, pseudo: list[str]) -> str:
        r = self.r
        n = r.randint(4, 24)
        s = " ".join(self._word(pseudo) + ("," if 0 < i < n - 1 and r.random() < 0.07 else "")
                     for i in range(n))
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
        return max(1, min(150, int(self.r.lognormvariate(mu + self.scale, 0.9))))

    def example(self, tool_fraction: float) -> dict:
        r, msgs = self.r, []
        self.scale = r.gauss(self.SHIFT, 0.8)  # most examples short, a long tail of long ones
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
                fn_call = {"name": fn["name"], "arguments": json.dumps(args, ensure_ascii=False)}
                call_id = f"call_{r.getrandbits(48):012x}"
                calls.append({"id": call_id, "type": "function", "function": fn_call})
            msgs.append({"role": "assistant", "tool_calls": calls})
            for c in calls:
                result = {"ok": True, "result": self.text(self.length(1.0))}
                msgs.append({"role": "tool", "tool_call_id": c["id"],
                             "content": json.dumps(result, ensure_ascii=False)})
            msgs.append({"role": "assistant", "content": self.text(self.length(1.4))})
            return ex
        for _turn in range(r.choices([1, 2, 3, 5], weights=[55, 25, 14, 6])[0]):
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
        f.writelines(json.dumps(g.example(tool_fraction), ensure_ascii=False) + "\n" for _ in range(n))
    os.replace(path + ".tmp", path)
    with open(meta, "w") as f:
        json.dump({**params, "size": os.path.getsize(path)}, f)
    print(f"built {path}: {n:,} examples, {os.path.getsize(path) / 1e6:.0f} MB "
          f"in {time.perf_counter() - t0:.0f}s")


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
        return {"min": int(a.min()), "max": int(a.max()), "mean": float(a.mean()),
                "median": float(np.median(a)), "p10": float(np.quantile(a, 0.1)),
                "p90": float(np.quantile(a, 0.9))}

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
            "missing_user": n_missing_user, "too_long": n_too_long, "n_epochs": n_epochs,
            "billing": n_billing,
            "total_tokens": int(sum(convo_lens)), "assistant_tokens": int(sum(assistant_lens)),
            "dist": {k: stats[k] for k in ("total", "assistant")}}


# ----------------------------------------------------------------------------- measured children


def _load_strings(path: str, distinct: bool) -> list:
    """Every string value of every message (what the peer encodes); optionally each string once."""
    out: list = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.extend(v for m in json.loads(line)["messages"] for v in m.values() if isinstance(v, str))
    return list(dict.fromkeys(out)) if distinct else out


def _half(strings: list, half: int) -> list:
    """One of two contiguous halves of ``strings`` with (nearly) equal character counts."""
    chars = list(itertools.accumulate(map(len, strings), initial=0))
    mid = bisect.bisect_left(chars, chars[-1] // 2)
    return strings[:mid] if half == 0 else strings[mid:]


def _floor_proc(path: str, distinct: bool, half: int, conn) -> None:
    """One process of the 2-core floor: load its own half (no copy-on-write sharing), encode on "go"."""
    from finetune_sdk.data.tokens import load_encoding
    mine, encode = _half(_load_strings(path, distinct), half), load_encoding(ENCODING).encode_ordinary
    conn.send("ready")
    conn.recv()
    c0 = time.process_time()
    n = sum(len(encode(s)) for s in mine)
    conn.send((n, time.process_time() - c0))


def _floor(path: str, workers: int, distinct: bool) -> dict:
    """tiktoken alone over the prepared strings: serially, or two processes in parallel."""
    from finetune_sdk.data.tokens import load_encoding
    if workers == 1:
        strings, encode = _load_strings(path, distinct), load_encoding(ENCODING).encode_ordinary
        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(len(encode(s)) for s in strings)
        return {"tokens": n, "seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}
    ctx = multiprocessing.get_context("fork")
    pipes = [ctx.Pipe() for _ in range(2)]
    procs = [ctx.Process(target=_floor_proc, args=(path, distinct, h, pipes[h][1])) for h in range(2)]
    for p in procs:
        p.start()
    for conn, _ in pipes:
        conn.recv()
    t0 = time.perf_counter()
    for conn, _ in pipes:
        conn.send("go")
    done = [conn.recv() for conn, _ in pipes]
    seconds = time.perf_counter() - t0
    for p in procs:
        p.join()
    return {"tokens": sum(d[0] for d in done), "seconds": seconds, "cpu": sum(d[1] for d in done)}


def _cpu() -> float:
    """CPU seconds of this process and its reaped children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def child(kind: str, path: str, workers: int) -> dict:
    """Run one candidate in this (fresh) process; the parent samples its memory meanwhile."""
    from finetune_sdk.data import validate
    from finetune_sdk.data.tokens import load_encoding
    if kind.startswith("floor"):
        out = _floor(path, workers, distinct=kind == "floor-distinct")
    else:
        t0, c0 = time.perf_counter(), _cpu()
        if kind == "peer":
            out = peer(path, load_encoding(ENCODING))
        else:
            rep = validate(path, model=MODEL, workers=workers)
            tk = rep.tokens
            out = {"examples": rep.examples, "errors": rep.error_counts, "warnings": rep.warning_counts,
                   "total_tokens": tk.total_tokens, "assistant_tokens": tk.assistant_tokens,
                   "billing": rep.estimate.tokens_per_epoch, "n_epochs": rep.estimate.n_epochs,
                   "dist": {"total": tk.per_example.model_dump(),
                            "assistant": tk.assistant_per_example.model_dump()}}
        out.update(seconds=time.perf_counter() - t0, cpu=_cpu() - c0)
    out["maxrss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["maxrss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def _busy() -> float:
    """CPU seconds the whole machine has been busy since boot (all processes)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def _wait_quiet(max_wait: float = 90.0) -> None:
    """Wait (up to ``max_wait`` s) until other processes use under a quarter of a core."""
    end = time.monotonic() + max_wait
    while time.monotonic() < end:
        b0 = _busy()
        time.sleep(1.0)
        if _busy() - b0 < 0.25:
            return


def measure(kind: str, path: str, workers: int) -> dict:
    """Run ``child`` in a fresh interpreter; sample the RSS (and PSS) of its process tree.

    Also records the CPU that *other* processes used meanwhile ("other", in cores): the
    machine is shared, and a busy neighbour inflates wall times.
    """
    import psutil
    _wait_quiet()
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", kind, "--file", path,
           "--workers", str(workers)]
    b0, c0, w0 = _busy(), _cpu(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    root, peak_rss, peak_pss, i = psutil.Process(proc.pid), 0, 0, 0
    while proc.poll() is None:
        rss = pss = 0
        try:
            for p in [root] + root.children(recursive=True):
                if i % 5 == 0:  # PSS reads smaps_rollup: costlier, so every 5th sample
                    m = p.memory_full_info()
                    rss, pss = rss + m.rss, pss + m.pss
                else:
                    rss += p.memory_info().rss
        except psutil.Error:
            pass
        peak_rss, peak_pss, i = max(peak_rss, rss), max(peak_pss, pss), i + 1
        time.sleep(0.02)
    stdout = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{kind} failed with exit code {proc.returncode}")
    res = json.loads(stdout.strip().splitlines()[-1])
    res["other"] = max(0.0, (_busy() - b0) - (_cpu() - c0)) / (time.perf_counter() - w0)
    res["rss_mb"] = max(peak_rss / 1e6, res["maxrss_self_mb"] * 1.048576)
    res["pss_mb"] = peak_pss / 1e6
    return res


def measure_quiet(kind: str, path: str, workers: int, retries: int) -> dict:
    """``measure``, repeated (up to ``retries`` more times) while other processes loaded the machine."""
    best: dict | None = None
    for _ in range(retries + 1):
        r = measure(kind, path, workers)
        best = r if best is None or r["other"] < best["other"] else best
        if r["other"] < 0.15:
            break
    return best


# ----------------------------------------------------------------------------- report

_CANDIDATES = [("peer (cookbook)", "peer", 1), ("ours, workers=2", "ours", 2), ("ours, workers=1", "ours", 1),
               ("floor, 1 core", "floor", 1), ("floor, 2 cores", "floor", 2),
               ("floor*, 1 core", "floor-distinct", 1), ("floor*, 2 cores", "floor-distinct", 2)]


def report(a: argparse.Namespace, big: str, runs: dict) -> None:
    """Print the medians table, the targets and the token-total comparison."""
    size_mb = os.path.getsize(big) / 1e6
    keys = ("seconds", "cpu", "rss_mb", "pss_mb", "other")
    med = {label: {k: statistics.median(r[k] for r in rs) for k in keys} for label, rs in runs.items()}
    best = {label: min(r["seconds"] for r in rs) for label, rs in runs.items()}
    print(f"\nFile: {big}\n  {a.examples:,} examples, {size_mb:.1f} MB, encoding {ENCODING}, "
          f"medians of {a.runs} run(s), {os.cpu_count()} CPUs")
    print(f"\n{'candidate':17s}{'seconds':>8s}{'(best)':>8s}{'examples/s':>11s}{'MB/s':>7s}{'CPU s':>7s}"
          f"{'peak RSS MB':>12s}{'peak PSS MB':>12s}{'other load':>11s}")
    for label, m in med.items():
        print(f"{label:17s}{m['seconds']:8.2f}{best[label]:8.2f}{a.examples / m['seconds']:11,.0f}"
              f"{size_mb / m['seconds']:7.1f}{m['cpu']:7.1f}{m['rss_mb']:12.0f}{m['pss_mb']:12.0f}"
              f"{m['other']:10.2f}c")
    print("  RSS: summed over the process tree, sampled every 20 ms (pages shared with forked workers\n"
          "  count once per process); PSS splits shared pages. floor = tiktoken over every string value\n"
          "  the peer encodes (strings prepared before timing); floor* = each distinct string once (ours\n"
          "  caches repeated system prompts, tool schemas and roles, so it can beat the plain floor).\n"
          "  'other load' = cores used by other processes on this shared machine during the run (ideally 0).")
    def ok(c: bool) -> str:
        return "PASS" if c else "MISS"

    sec = {"median": {k: m["seconds"] for k, m in med.items()}, "best": best}
    print("\nTargets (timing ratios from medians and from best runs; contention only ever adds time)")
    print(f"  {'':34s}{'median':>8s}{'best':>8s}")
    for name, num, den, limit, higher in (
            ("throughput ours(2)/peer", "peer (cookbook)", "ours, workers=2", 2.5, True),
            ("time ours(2)/floor(2 cores)", "ours, workers=2", "floor, 2 cores", 1.3, False),
            ("time ours(2)/floor*(2 cores)", "ours, workers=2", "floor*, 2 cores", 1.3, False),
            ("time ours(1)/floor(1 core)", "ours, workers=1", "floor, 1 core", 1.3, False),
            ("time ours(1)/floor*(1 core)", "ours, workers=1", "floor*, 1 core", 1.3, False)):
        r = [sec[s][num] / sec[s][den] for s in ("median", "best")]
        passed = [x >= limit if higher else x <= limit for x in r]
        verdict = ok(passed[0]) if passed[0] == passed[1] else "UNSURE (median and best disagree)"
        print(f"  {name:34s}{r[0]:7.2f}x{r[1]:7.2f}x  (target {'>=' if higher else '<='} {limit}x)  "
              f"{verdict}")
    rss = max(med[k]["rss_mb"] for k in ("ours, workers=2", "ours, workers=1"))
    pss = max(med[k]["pss_mb"] for k in ("ours, workers=2", "ours, workers=1"))
    print(f"  peak memory, ours: {rss:.0f} MB RSS / {pss:.0f} MB PSS  (target < 500 MB)  "
          f"{ok(rss < 500)} / {ok(pss < 500)}")
    pr, r2, r1 = (runs[k][0] for k in ("peer (cookbook)", "ours, workers=2", "ours, workers=1"))
    print(f"  ours(2) getrusage max RSS: parent {r2['maxrss_self_mb']:.0f} MB, largest worker "
          f"{r2['maxrss_children_mb']:.0f} MB")

    # Exactness: the first 10,000 plain chat examples of the same file, counted by both.
    plain = big.replace(".jsonl", ".plain.jsonl")
    n_plain = extract_plain(big, plain, 10_000)
    pp, po = measure("peer", plain, 1), measure("ours", plain, 2)  # counts only: contention is harmless
    same = all(pp[k] == po[k] for k in ("total_tokens", "assistant_tokens")) and all(
        abs(pp["dist"][d][q] - po["dist"][d][q]) < 1e-6 for d in ("total", "assistant")
        for q in ("min", "median", "p90", "max"))
    print(f"\nToken counts on {n_plain:,} plain chat examples of the file "
          f"(no tools; role/content/name strings)")
    for who, r in (("peer", pp), ("ours", po)):
        d = r["dist"]["total"]
        print(f"  {who}: total {r['total_tokens']:,}  assistant {r['assistant_tokens']:,}  per example min "
              f"{d['min']:.0f} median {d['median']:.1f} p90 {d['p90']:.1f} max {d['max']:.0f}  "
              f"billing {r['billing']:,}")
    print(f"  identical totals and distributions: {'YES' if same else 'NO'}  {ok(same)}\n"
          f"  (billing caps differ: peer min(16,385, n), ours min(65,536, n) for {MODEL})")
    print(f"\nBig file ({a.tool_fraction:.0%} of examples with tools, which the peer does not know)")
    print(f"  peer total {pr['total_tokens']:,} (assistant {pr['assistant_tokens']:,}, "
          f"billing {pr['billing']:,} @16,385, {pr['n_epochs']} epoch(s), {pr['too_long']} over 16,385)")
    print(f"  ours total {r2['total_tokens']:,} (assistant {r2['assistant_tokens']:,}, "
          f"billing {r2['billing']:,} @65,536, {r2['n_epochs']} epoch(s)); "
          f"workers=1 total {r1['total_tokens']:,}")
    print(f"  peer format errors: {dict(sorted(pr['format_errors'].items()))}")
    print(f"  peer warnings: missing system {pr['missing_system']:,}, missing user {pr['missing_user']:,}")
    print(f"  ours errors: {r2['errors']}\n  ours warnings: {r2['warnings']}")
    for k in ("floor, 1 core", "floor*, 1 core"):
        print(f"  {k[:6]} encodes {runs[k][0]['tokens']:,} tokens "
              f"(string values only, no per-message overhead)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "validate_bench"))
    ap.add_argument("--seed", type=int, default=20240718)
    ap.add_argument("--tool-fraction", type=float, default=0.3)
    ap.add_argument("--quick", action="store_true", help="5,000 examples, 1 run (smoke test)")
    ap.add_argument("--retries", type=int, default=2, help="re-measure a run disturbed by other processes")
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
    runs: dict = {label: [] for label, _, _ in _CANDIDATES}
    for i in range(a.runs):  # interleaved, so drift hits every candidate alike
        for label, kind, w in _CANDIDATES:
            r = measure_quiet(kind, big, w, a.retries)
            runs[label].append(r)
            print(f"  run {i + 1}/{a.runs} {label:16s} {r['seconds']:7.2f}s  cpu {r['cpu']:6.1f}s  "
                  f"rss {r['rss_mb']:6.0f} MB  other load {r['other']:.2f} cores", flush=True)
    report(a, big, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
