"""How many requests does ``wait()`` make, and how late does it notice the end?

A simulated 30-minute job (the simulated provider, in process, on a frozen clock that
only the waiting code advances) is waited on by:

- the peer: a fixed 5-second poll loop (what most hand-written loops do);
- ``Waiter.wait()`` as the client uses it, with the job's estimated finish available
  (OpenAI reports ``estimated_finish``);
- ``Waiter.wait()`` when the service gives no estimate (the fallback: back off to the cap);
- ``Waiter.wait()`` with event tailing on (progress bar / on_event), which adds an events
  request per poll.

Targets: at most one fifth of the peer's requests, and no more than one poll interval
(5 s, the peer's) of extra latency after the job ends.

    python benchmarks/wait_bench.py [--minutes 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.providers.simulated import SimClock, SimTimings, SimulatedProvider, SimulatedSettings
from finetune_sdk.types import Hyperparameters, JobSpec
from finetune_sdk.waiting import Waiter

PEER_INTERVAL = 5.0


class Counting:
    """A provider proxy that counts calls (each would be one HTTP request)."""

    def __init__(self, inner: SimulatedProvider, hide_eta: bool = False) -> None:
        self.inner = inner
        self.hide_eta = hide_eta
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            result = attr(*args, **kwargs)
            if name == "get_job" and self.hide_eta:
                result = result.model_copy(update={"estimated_finish": None})
            return result
        return counted

    @property
    def requests(self) -> int:
        return sum(self.calls.values())


def make_job(minutes: float) -> tuple[SimulatedProvider, SimClock, str, float]:
    clock = SimClock(speed=0, start=1_800_000_000)
    steps, pre = 150, 180.0  # 300 examples, batch 6, 3 epochs; 1 min validating + 2 min queued
    step = (minutes * 60 - pre - 5) / steps
    provider = SimulatedProvider(SimulatedSettings(data_dir=tempfile.mkdtemp()), clock=clock,
                                 timings=SimTimings(file_processing=1, validation=60, queue=120, step=step, finalize=5))
    f = provider.upload(Path(dataset_path("contacts", "train")))
    clock.advance(2)
    job = provider.create_job(JobSpec(model="gpt-4o-mini-2024-07-18", training_file=f.id,
                                      hyperparameters=Hyperparameters(n_epochs=3)))
    return provider, clock, job.id, clock.now()


def finished_at(provider: SimulatedProvider, job_id: str) -> float:
    job = provider.get_job(job_id)
    assert job.finished_at is not None
    return job.finished_at.timestamp()


def run_peer(minutes: float) -> dict[str, float]:
    provider, clock, job_id, start = make_job(minutes)
    counting = Counting(provider)
    while True:
        job = counting.get_job(job_id)
        if job.is_terminal:
            break
        clock.advance(PEER_INTERVAL)
    return {"requests": counting.requests, "late": clock.now() - finished_at(provider, job_id),
            "duration": finished_at(provider, job_id) - start}


def run_ours(minutes: float, *, hide_eta: bool = False, events: bool = False) -> dict[str, float]:
    provider, clock, job_id, start = make_job(minutes)
    counting = Counting(provider, hide_eta=hide_eta)
    waiter = Waiter(counting, sleep=clock.advance, clock=clock.now)  # type: ignore[arg-type]
    waiter.wait(job_id, progress=False, on_event=(lambda e: None) if events else None)
    return {"requests": counting.requests, "late": clock.now() - finished_at(provider, job_id),
            "duration": finished_at(provider, job_id) - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    args = parser.parse_args()
    peer = run_peer(args.minutes)
    rows = [("fixed 5 s loop (peer)", peer),
            ("wait(), ETA reported", run_ours(args.minutes)),
            ("wait(), no ETA", run_ours(args.minutes, hide_eta=True)),
            ("wait(), tailing events", run_ours(args.minutes, events=True))]
    print(f"simulated job: {peer['duration'] / 60:.1f} minutes from creation to success\n")
    print(f"{'strategy':<26}{'requests':>9}{'vs peer':>9}{'late (s)':>10}")
    for name, r in rows:
        print(f"{name:<26}{int(r['requests']):>9}{r['requests'] / peer['requests']:>9.2f}{r['late']:>10.1f}")
    ours = rows[1][1]
    ok_requests = ours["requests"] <= peer["requests"] / 5
    ok_late = ours["late"] <= PEER_INTERVAL
    print(f"\ntarget ≤ 1/5 of the peer's requests: {'PASS' if ok_requests else 'FAIL'} "
          f"({ours['requests'] / peer['requests']:.3f})")
    print(f"target ≤ {PEER_INTERVAL:g} s late: {'PASS' if ok_late else 'FAIL'} ({ours['late']:.1f} s)")
    return 0 if ok_requests and ok_late else 1


if __name__ == "__main__":
    sys.exit(main())
