"""The local inference server against ``model.generate``, in the same run.

1. **Overhead of a single request**: greedy generation of the same prompt, the same number
   of new tokens, (a) with ``transformers``' ``model.generate`` in this process and (b)
   through ``finetune serve`` (a separate process, HTTP + SSE, the official ``openai``
   client). Tokens per second and time to first token; target: server overhead < 10 %.
2. **Batching**: aggregate completion tokens per second with 1, 4 and 16 concurrent
   requests; target: ≥ 2× the sequential throughput at 16.

Medians of ``--runs`` repetitions; the two sides run one after the other, never at the
same time. The model is the embedded SmolLM2-135M-Instruct (or ``--model``).

    python benchmarks/serve_bench.py [--tokens 64] [--runs 3] [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper who finds a message in a "
                                      "bottle. Use at least three paragraphs."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def direct(model_name: str, tokens: int, runs: int) -> dict[str, float]:
    import torch
    from transformers import TextIteratorStreamer

    from finetune_sdk.providers.local.models import load_model, load_tokenizer, resolve_base_model

    resolved = resolve_base_model(model_name)
    tok = load_tokenizer(resolved)
    model = load_model(resolved).eval()
    ids = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    rates, ttfts = [], []
    for _ in range(runs + 1):  # the first run warms up
        streamer = TextIteratorStreamer(tok, skip_prompt=True)
        started = time.perf_counter()
        first: list[float] = []

        def consume(streamer: Any = streamer, first: list[float] = first) -> None:
            for piece in streamer:
                if piece and not first:
                    first.append(time.perf_counter())

        reader = threading.Thread(target=consume)
        reader.start()
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                 streamer=streamer, pad_token_id=tok.pad_token_id)
        reader.join()
        elapsed = time.perf_counter() - started
        n = out.shape[1] - ids["input_ids"].shape[1]
        rates.append(n / elapsed)
        ttfts.append((first[0] if first else time.perf_counter()) - started)
    return {"tokens_per_second": statistics.median(rates[1:]), "ttft": statistics.median(ttfts[1:])}


def stream_once(client: Any, model: str, tokens: int) -> tuple[int, float, float]:
    started = time.perf_counter()
    first = None
    n = 0
    stream = client.chat.completions.create(model=model, messages=PROMPT, temperature=0, max_tokens=tokens,
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter()
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
    end = time.perf_counter()
    return n, (first or end) - started, end - started


def served(model_name: str, tokens: int, runs: int, concurrency: list[int]) -> dict[str, Any]:
    import httpx
    import openai

    port = free_port()
    key = "sk-bench"
    home = tempfile.mkdtemp(prefix="serve-bench-")
    proc = subprocess.Popen([sys.executable, "-m", "finetune_sdk", "serve", "--model", model_name, "--port", str(port),
                             "--home", home], env={**os.environ, "FINETUNE_SERVE_API_KEY": key},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=600)
        model = client.models.list().data[0].id
        stream_once(client, model, 4)  # loads the weights
        singles = [stream_once(client, model, tokens) for _ in range(runs + 1)][1:]
        result: dict[str, Any] = {"tokens_per_second": statistics.median(n / t for n, _, t in singles),
                                  "ttft": statistics.median(f for _, f, _ in singles), "throughput": {}}
        for c in concurrency:
            rates = []
            for _ in range(runs):
                totals: list[int] = []
                barrier = threading.Barrier(c)

                def go(barrier: threading.Barrier = barrier, totals: list[int] = totals) -> None:
                    barrier.wait()
                    totals.append(stream_once(client, model, tokens)[0])

                threads = [threading.Thread(target=go) for _ in range(c)]
                started = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                rates.append(sum(totals) / (time.perf_counter() - started))
            result["throughput"][c] = statistics.median(rates)
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="1,4,16")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    print(f"model {args.model}, {args.tokens} new tokens, greedy, medians of {args.runs}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    d = direct(args.model, args.tokens, args.runs)
    s = served(args.model, args.tokens, args.runs, levels)
    overhead = 1 - s["tokens_per_second"] / d["tokens_per_second"]
    print(f"\n{'single request':<28}{'tokens/s':>10}{'TTFT (s)':>10}")
    print(f"{'model.generate (direct)':<28}{d['tokens_per_second']:>10.1f}{d['ttft']:>10.3f}")
    print(f"{'finetune serve (HTTP, SSE)':<28}{s['tokens_per_second']:>10.1f}{s['ttft']:>10.3f}")
    print(f"server overhead: {overhead:+.1%} tokens/s  (target < 10 %: {'PASS' if overhead < 0.10 else 'FAIL'})")
    base = s["throughput"][levels[0]]
    print(f"\n{'concurrent requests':<22}{'aggregate tokens/s':>20}{'vs 1':>8}")
    for c, rate in s["throughput"].items():
        print(f"{c:<22}{rate:>20.1f}{rate / base:>8.2f}")
    top = s["throughput"][levels[-1]] / base
    print(f"batching gain at {levels[-1]}: {top:.2f}x  (target >= 2x: {'PASS' if top >= 2 else 'FAIL'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
