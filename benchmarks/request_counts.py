"""Requests the client makes under faults: create under each fault kind, one call and one
``wait()`` under a persistent 503, and the "deliberate second create" case.

Every number is counted by the emulator's fault plan (what reached the server), on a
simulated clock (no real waiting). Run: ``python benchmarks/request_counts.py [--json]``.

What the numbers should be (docs/client.md):

- create, one fault then ok: 2 create requests (+1 lookup after a fault that may have
  created the job: lost, drop, 5xx, timeout); always exactly 1 job.
- create under ``daily``: 1 request, an error, 0 jobs.
- a second ``create`` with the same arguments while the first request of it gets 429:
  2 jobs (a deliberate second call is never merged with the first).
- one ``jobs.get`` under a persistent 503: exactly the retry policy's attempts.
- one ``wait()`` under a persistent 503: the documented bounded number of polls.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import FineTuneError
from finetune_sdk.testing import emulator

JOBS = "/v1/fine_tuning/jobs"
MODEL = "gpt-4o-mini-2024-07-18"


def _client(emu: Any, **kwargs: Any) -> FineTuneClient:
    return FineTuneClient("openai", ledger=False, sleep=emu.clock.advance, clock=emu.clock.now, timeout=5,
                          base_model=MODEL, **emu.client_settings("openai"), **kwargs)


def _counts(plan: Any) -> dict[str, int]:
    return dict(sorted(plan.requests.items()))


def _create_under(emu: Any, kind: str) -> dict[str, Any]:
    # A timed-out request is still being handled by the server in real time, so the client
    # that times out waits in real time too (the others run on the simulated clock).
    client = FineTuneClient("openai", ledger=False, timeout=0.4, base_model=MODEL, **emu.client_settings("openai")) \
        if kind == "slow" else _client(emu)
    file_id = client.files.upload(dataset_path("contacts", "train")).id
    emu.clock.advance(10)
    before = len(emu.openai.list_jobs())
    if kind == "slow":
        plan = emu.set_faults([{"route": f"POST {JOBS}", "kind": "slow", "delay": 0.6, "times": 1}])
    else:
        plan = emu.set_faults(f"POST {JOBS}: {kind}, ok")
    error = None
    try:
        client.jobs.create(training_file=file_id, suffix=f"count-{kind}")
    except FineTuneError as exc:
        error = type(exc).__name__
    if kind == "slow":
        time.sleep(1.0)  # the slow request is still being handled on the server: count after it lands
    emu.set_faults(None)
    client.close()
    return {"fault": kind, "requests": _counts(plan), "jobs_created": len(emu.openai.list_jobs()) - before,
            "error": error}


def _second_create(emu: Any) -> dict[str, Any]:
    client = _client(emu)
    file_id = client.files.upload(dataset_path("contacts", "train")).id
    emu.clock.advance(10)
    before = len(emu.openai.list_jobs())
    first = client.jobs.create(training_file=file_id, suffix="again")
    plan = emu.set_faults(f"POST {JOBS}: 429, ok")
    second = client.jobs.create(training_file=file_id, suffix="again")
    emu.set_faults(None)
    client.close()
    return {"case": "same arguments twice, the second sees 429 then ok", "requests": _counts(plan),
            "jobs_created": len(emu.openai.list_jobs()) - before, "same_job_returned": first.id == second.id}


def _persistent_503(emu: Any) -> dict[str, Any]:
    client = _client(emu)
    file_id = client.files.upload(dataset_path("contacts", "train")).id
    emu.clock.advance(10)
    job = client.jobs.create(training_file=file_id, suffix="outage")
    plan = emu.set_faults(f"GET {JOBS}/*: 503@1.0")
    try:
        client.jobs.get(job.id)
    except FineTuneError:
        pass
    one_call = sum(plan.requests.values())
    plan = emu.set_faults(f"GET {JOBS}/*: 503@1.0")
    started = emu.clock.now()
    outcome = "returned"
    try:
        client.jobs.wait(job.id, progress=False)
    except FineTuneError as exc:
        outcome = type(exc).__name__
    waited = emu.clock.now() - started
    emu.set_faults(None)
    client.close()
    return {"one_call_requests": one_call, "wait_requests": sum(plan.requests.values()), "wait_outcome": outcome,
            "wait_simulated_seconds": round(waited, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with emulator(speed=0, dialect="openai") as emu:
        results = {"create": [_create_under(emu, kind) for kind in ("lost", "drop", "500", "502", "503", "429",
                                                                   "daily", "slow")],
                   "second_create": _second_create(emu), "persistent_503": _persistent_503(emu)}
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"{'fault on create':<16}{'create reqs':>12}{'lookups':>9}{'jobs':>6}  error")
    for row in results["create"]:
        creates = row["requests"].get(f"POST {JOBS}", 0)
        lookups = row["requests"].get(f"GET {JOBS}", 0)
        print(f"{row['fault']:<16}{creates:>12}{lookups:>9}{row['jobs_created']:>6}  {row['error'] or ''}")
    second = results["second_create"]
    print(f"\nsecond create with the same arguments (429 then ok): {second['jobs_created']} job(s) created, "
          f"same job returned: {second['same_job_returned']}")
    outage = results["persistent_503"]
    print(f"persistent 503: one jobs.get made {outage['one_call_requests']} requests; wait() made "
          f"{outage['wait_requests']} requests over {outage['wait_simulated_seconds']} simulated s, then "
          f"{outage['wait_outcome']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
