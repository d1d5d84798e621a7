"""Waiting for jobs, written once for every provider: adaptive polling, event tailing, progress.

- Polls start quick and back off to a cap; when the job reports an estimated finish the
  poller sleeps until then instead of guessing, so a 30-minute job costs a few dozen
  requests and is seen finished within seconds of finishing.
- ``Retry-After`` is honoured; transient failures during a wait are retried, permanent
  ones surface at once.
- :meth:`Waiter.follow` yields every event exactly once, oldest first, until the job ends.
- :meth:`Waiter.wait` shows a progress bar (status, step/total, latest loss, ETA) in
  terminals and notebooks (off when output is not interactive, unless asked), raises
  :class:`JobFailedError` / :class:`WaitTimeout`, and on Ctrl-C leaves the job running
  and prints how to re-attach.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from ._secrets import get_logger
from .errors import JobFailedError, WaitTimeout
from .providers.base import Capability, Provider
from .retry import RetryPolicy
from .types import Event, Job, JobStatus

__all__ = ["PollSchedule", "Waiter", "progress_enabled"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class PollSchedule:
    """Seconds between polls: ``initial``, growing by ``growth`` up to ``maximum``;
    ``near_end`` is the interval used once the estimated finish has passed."""

    initial: float = 2.0
    maximum: float = 60.0
    growth: float = 1.6
    near_end: float = 2.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.growth >= 1 and self.near_end > 0):
            raise ValueError("need 0 < initial <= maximum, growth >= 1 and near_end > 0")


def progress_enabled(requested: bool | None) -> bool:
    """Progress display: as requested, else on for terminals and notebooks only."""
    if requested is not None:
        return requested
    try:
        from rich.console import Console

        console = Console(stderr=True)
        return bool(console.is_terminal or console.is_jupyter)
    except Exception:  # pragma: no cover - rich is a core dependency
        return sys.stderr.isatty()


@dataclass
class _Progress:
    job_id: str
    bar: Any = None
    task: Any = None
    step: int | None = None
    total: int | None = None
    loss: float | None = None

    def start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self.task = self.bar.add_task(f"{self.job_id}", total=None, detail="")
        self.bar.start()

    def update(self, job: Job, events: list[Event], eta: float | None) -> None:
        for e in events:
            if e.type == "metrics" or "train_loss" in e.data:
                self.step = int(e.data.get("step", self.step or 0))
                self.total = int(e.data["total_steps"]) if e.data.get("total_steps") else self.total
                loss = e.data.get("train_loss")
                self.loss = float(loss) if isinstance(loss, (int, float)) else self.loss
        parts = [job.status.value]
        if self.step is not None:
            parts.append(f"step {self.step}/{self.total or '?'}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if eta is not None and eta > 0:
            parts.append(f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")
        if self.bar is not None:
            self.bar.update(self.task, total=self.total, completed=self.step or 0, detail=" · ".join(parts))

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@dataclass
class Waiter:
    """Polling, following and waiting over one provider."""

    provider: Provider
    schedule: PollSchedule = field(default_factory=PollSchedule)
    # Patient: a wait survives a minute-long outage of the service.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=8, maximum=60.0))
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    reattach_hint: str = "finetune jobs wait {job_id}"

    def __post_init__(self) -> None:
        # Retries sleep on the same clock as the polls (tests and benchmarks simulate it).
        if self.retry.sleep is time.sleep and self.sleep is not time.sleep:
            self.retry = replace(self.retry, sleep=self.sleep)

    # -- polling primitives
    def _get(self, fn: Callable[[], Any], what: str) -> Any:
        """Call ``fn``, sleeping through transient failures (honouring Retry-After) for as
        long as the retry policy allows; permanent errors raise at once."""
        return self.retry.call(fn, describe=what)

    def _eta(self, job: Job, events: list[Event], started: float | None) -> float | None:
        now = self.clock()
        if job.estimated_finish is not None:
            return job.estimated_finish.timestamp() - now
        # Extrapolate from the latest metrics event: elapsed / done * remaining.
        for e in reversed(events):
            step, total = e.data.get("step"), e.data.get("total_steps")
            if e.type == "metrics" and isinstance(step, int) and isinstance(total, int) and step > 0 and started:
                elapsed = e.created_at.timestamp() - started
                return started + elapsed / step * total - now
        return None

    def _interval(self, interval: float, eta: float | None, past_eta: float | None) -> tuple[float, float, float | None]:
        """(seconds to sleep now, next base interval, next past-ETA interval)."""
        s = self.schedule
        grown = min(s.maximum, interval * s.growth)
        if eta is None:
            return interval, grown, None
        if eta > 0:
            return min(interval, max(s.near_end, eta)), grown, None
        # The estimate has passed: poll at near_end, backing off again if it was badly wrong.
        current = past_eta if past_eta is not None else s.near_end
        return current, grown, min(s.maximum, current * s.growth)

    # -- public API
    def follow(self, job_id: str, *, after: str | None = None) -> Iterator[Event]:
        """Yield each event of the job exactly once, oldest first, until the job is terminal."""
        self.provider.require(Capability.EVENTS)
        last = after
        seen: set[str] = set()
        interval = self.schedule.initial
        while True:
            events = self._get(lambda: self.provider.list_events(job_id, after=last), f"listing events of {job_id}")
            for event in events:
                if event.id not in seen:
                    seen.add(event.id)
                    last = event.id
                    yield event
            job = self._get(lambda: self.provider.get_job(job_id), f"retrieving {job_id}")
            if job.is_terminal:
                for event in self._get(lambda: self.provider.list_events(job_id, after=last), "draining events"):
                    if event.id not in seen:
                        seen.add(event.id)
                        last = event.id
                        yield event
                return
            interval = self.schedule.initial if events else min(self.schedule.maximum, interval * self.schedule.growth)
            self.sleep(interval)

    def wait(self, job_id: str, *, timeout: float | None = None, progress: bool | None = None,
             on_event: Callable[[Event], None] | None = None) -> Job:
        """Block until the job is terminal; return it if it succeeded.

        Raises:
            JobFailedError: the job failed or was cancelled (``.job`` holds it).
            WaitTimeout: ``timeout`` seconds passed; the job keeps running.
            KeyboardInterrupt: after printing how to re-attach; the job keeps running.
        """
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None to wait indefinitely)")
        show = progress_enabled(progress)
        want_events = show or on_event is not None
        if want_events and Capability.EVENTS not in self.provider.capabilities:
            want_events = False
        bar = _Progress(job_id)
        deadline = self.clock() + timeout if timeout is not None else None
        interval, past_eta = self.schedule.initial, None
        last_event: str | None = None
        recent: list[Event] = []
        started_at: float | None = None
        job: Job | None = None
        if show:
            bar.start()
        try:
            while True:
                job = self._get(lambda: self.provider.get_job(job_id), f"retrieving {job_id}")
                if want_events:
                    new = self._get(lambda: self.provider.list_events(job_id, after=last_event),
                                    f"listing events of {job_id}")
                    if new:
                        last_event = new[-1].id
                        recent = (recent + new)[-50:]
                    for e in new:
                        if started_at is None and e.message.lower().startswith(("fine-tuning job started",
                                                                                "job started", "training started")):
                            started_at = e.created_at.timestamp()
                        if on_event is not None:
                            on_event(e)
                eta = self._eta(job, recent, started_at)
                if show:
                    bar.update(job, recent if want_events else [], eta)
                if job.is_terminal:
                    break
                now = self.clock()
                if deadline is not None and now >= deadline:
                    raise WaitTimeout(f"Job {job_id} is still {job.status.value} after {timeout:g} s; it keeps "
                                      f"running. Re-attach with: {self.reattach_hint.format(job_id=job_id)}",
                                      job=job, timeout=timeout)
                pause, interval, past_eta = self._interval(interval, eta, past_eta)
                if deadline is not None:
                    pause = max(0.0, min(pause, deadline - now))
                self.sleep(pause)
        except KeyboardInterrupt:
            bar.stop()
            print(f"\nStopped waiting. Job {job_id} is still running on {self.provider.name}. "
                  f"Re-attach with: {self.reattach_hint.format(job_id=job_id)}", file=sys.stderr)
            raise
        finally:
            bar.stop()
        assert job is not None
        if job.status is JobStatus.SUCCEEDED:
            return job
        detail = f": {job.error.message}" + (f" (code {job.error.code})" if job.error.code else "") if job.error else ""
        raise JobFailedError(f"Job {job_id} {job.status.value}{detail}", job=job)
