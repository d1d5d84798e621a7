"""Evaluation throughput: ``evaluate`` with 16 requests in flight versus answering the same
examples one at a time, on the local inference server with the embedded SmolLM2-135M-Instruct.

The peer is the sequential loop a script would write; both run in the same process against
the same server, interleaved, medians of ``--runs``. Target: >= 3x at 16 in flight (the
server decodes concurrent requests as one batch).

    python benchmarks/evaluate_bench.py [--examples 32] [--runs 2] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from finetune_sdk import FineTuneClient, evaluate
from finetune_sdk.datasets import path as dataset_path

MODEL = "smollm2-135m-instruct"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="finetune-evalbench-"))
    client = FineTuneClient("local", home=str(home), ledger=False)
    data = dataset_path("contacts", "test")
    try:
        client.chat(MODEL, "warm up", max_tokens=1)  # starts the server and loads the weights
        timings: dict[int, list[float]] = {1: [], args.concurrency: []}
        answered: dict[int, int] = {}
        for _ in range(args.runs):
            for concurrency in (1, args.concurrency):  # interleaved: machine noise hits both
                started = time.perf_counter()
                ev = evaluate(data, [MODEL], client=client, concurrency=concurrency, max_tokens=args.max_tokens,
                              limit=args.examples, progress=False)
                timings[concurrency].append(time.perf_counter() - started)
                answered[concurrency] = len(ev.candidates[0].answers) - ev.candidates[0].failures
        seq, par = statistics.median(timings[1]), statistics.median(timings[args.concurrency])
        print(f"{args.examples} examples, max_tokens {args.max_tokens}, medians of {args.runs} interleaved runs")
        print(f"  one at a time (peer):    {seq:7.1f} s  {args.examples / seq:5.2f} examples/s  "
              f"({answered[1]} answered)")
        print(f"  {args.concurrency:>2} in flight (evaluate): {par:7.1f} s  {args.examples / par:5.2f} examples/s  "
              f"({answered[args.concurrency]} answered)")
        ratio = seq / par
        print(f"  speed-up: {ratio:.2f}x (target >= 3x): {'PASS' if ratio >= 3 else 'MISS'}")
        return 0 if ratio >= 3 else 1
    finally:
        for deployment in client.deployments.list():
            client.deployments.delete(deployment.name)
        from finetune_sdk.providers.local.serving.background import stop_server

        stop_server(home)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
