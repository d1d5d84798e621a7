"""Waiting for jobs, written once for every provider: adaptive polling, event tailing, progress.

- Polls start quick and back off to a cap; when the job reports an estimated finish the
  poller sleeps until then instead of guessing (or extrapolates one from the step rate of
  metrics events), so a 30-minute job costs a few dozen requests and is seen finished
  within seconds of finishing.
- Each poll is one request. Transient failures (429, 5xx, dropped connections) are ridden
  out by the schedule itself, honouring ``Retry-After``, for up to the outage budget
  (:attr:`PollSchedule.outage`, 5 minutes); then the last error is raised. Permanent
  errors surface at once. No retry runs inside another (see :mod:`finetune_sdk.polling`).
- :meth:`Waiter.follow` yields every event exactly once, oldest first, until the job ends.
- :meth:`Waiter.wait` shows a progress bar (status, step/total, latest loss, ETA) in
  terminals and notebooks (off when output is not interactive, unless asked), raises
  :class:`JobFailedError` / :class:`WaitTimeout`, and on Ctrl-C leaves the job running
  and prints how to re-attach. A status the provider does not know is shown with its raw
  value.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import JobFailedError, WaitTimeout
from .polling import Outage, PollSchedule
from .providers.base import Capability, Provider
from .types import Event, Job, JobStatus

__all__ = ["PollSchedule", "Waiter", "progress_enabled", "describe_status"]


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


def describe_status(job: Job) -> str:
    """``running``, or ``unknown (raw 'x')`` for a status the provider does not know."""
    if job.status is JobStatus.UNKNOWN:
        return f"unknown (raw {job.raw_status!r})"
    return job.status.value


@dataclass
class _Rate:
    """Step rate from metrics events: (step, time) of the first and latest seen."""

    first: tuple[int, float] | None = None
    last: tuple[int, float] | None = None
    total: int | None = None

    def add(self, events: list[Event]) -> None:
        for e in events:
            step, total = e.data.get("step"), e.data.get("total_steps")
            if e.kind != "metrics" or not isinstance(step, int):
                continue
            point = (step, e.created_at.timestamp())
            self.first = self.first or point
            self.last = point
            self.total = int(total) if isinstance(total, int) else self.total

    def finish_at(self) -> float | None:
        if not (self.first and self.last and self.total) or self.last[0] <= self.first[0]:
            return None
        per_step = (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])
        return self.last[1] + per_step * (self.total - self.last[0])


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

    def update(self, job: Job | None, events: list[Event], eta: float | None, trouble: str | None) -> None:
        for e in events:
            if e.kind == "metrics":
                self.step = int(e.data.get("step", self.step or 0))
                self.total = int(e.data["total_steps"]) if e.data.get("total_steps") else self.total
                loss = e.data.get("train_loss")
                self.loss = float(loss) if isinstance(loss, (int, float)) else self.loss
        parts = [describe_status(job)] if job is not None else []
        if self.step is not None:
            parts.append(f"step {self.step}/{self.total or '?'}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if eta is not None and eta > 0:
            parts.append(f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")
        if trouble:
            parts.append(trouble)
        if self.bar is not None:
            self.bar.update(self.task, total=self.total, completed=self.step or 0, detail=" · ".join(parts))

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@dataclass
class Waiter:
    """Polling, following and waiting over one provider."""

    provider: Provider[Any]
    schedule: PollSchedule = field(default_factory=PollSchedule)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    reattach_hint: str = "finetune jobs wait {job_id}"

    def _outage(self, what: str) -> Outage:
        return Outage(self.schedule.outage, self.clock, what)

    def _interval(self, interval: float, eta: float | None,
                  past_eta: float | None) -> tuple[float, float, float | None]:
        """(seconds to sleep now, next base interval, next past-ETA interval)."""
        s = self.schedule
        grown = s.grow(interval)
        if eta is None:
            return interval, grown, None
        if eta > 0:
            return min(interval, max(s.near_end, eta)), grown, None
        # The estimate has passed: poll at near_end, backing off again if it was badly wrong.
        current = past_eta if past_eta is not None else s.near_end
        return current, grown, s.grow(current)

    def follow(self, job_id: str, *, after: str | None = None) -> Iterator[Event]:
        """Yield each event of the job exactly once, oldest first, until the job is terminal."""
        self.provider.require(Capability.EVENTS)
        outage = self._outage(f"following {job_id}")
        last = after
        seen: set[str] = set()
        interval = self.schedule.initial
        ended = False
        while True:
            ok, events = outage.poll(lambda: self.provider.list_events(job_id, after=last))  # noqa: B023 (called now)
            fresh = False
            if ok:
                for event in events or []:
                    if event.id not in seen:
                        seen.add(event.id)
                        last = event.id
                        fresh = True
                        yield event
                if ended:  # the events after the end have been read: nothing more will come
                    return
                ok, job = outage.poll(lambda: self.provider.get_job(job_id))
                if ok and job is not None and job.is_terminal:
                    ended = True
                    continue
            interval = self.schedule.initial if fresh else self.schedule.grow(interval)
            self.sleep(outage.pause(interval))

    def wait(self, job_id: str, *, timeout: float | None = None, progress: bool | None = None,
             on_event: Callable[[Event], None] | None = None) -> Job:
        """Block until the job is terminal; return it if it succeeded.

        Raises:
            JobFailedError: the job failed or was cancelled (``.job`` holds it).
            WaitTimeout: ``timeout`` seconds passed; the job keeps running.
            ProviderError: a permanent error, or the service failed for longer than the
                outage budget (the job keeps running).
            KeyboardInterrupt: after printing how to re-attach; the job keeps running.
        """
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None to wait indefinitely)")
        show = progress_enabled(progress)
        want_events = (show or on_event is not None) and Capability.EVENTS in self.provider.capabilities
        bar = _Progress(job_id)
        outage = self._outage(f"waiting for {job_id}, which keeps running (re-attach with: "
                              f"{self.reattach_hint.format(job_id=job_id)})")
        deadline = self.clock() + timeout if timeout is not None else None
        interval, past_eta = self.schedule.initial, None
        last_event: str | None = None
        rate = _Rate()
        job: Job | None = None
        if show:
            bar.start()
        try:
            while True:
                ok, polled = outage.poll(lambda: self.provider.get_job(job_id))
                new: list[Event] = []
                if ok and polled is not None:
                    job = polled
                    if want_events:
                        _, listed = outage.poll(
                            lambda: self.provider.list_events(job_id, after=last_event))  # noqa: B023 (called now)
                        new = listed or []
                        if new:
                            last_event = new[-1].id
                            rate.add(new)
                        for e in new:
                            if on_event is not None:
                                on_event(e)
                finish = job.estimated_finish.timestamp() if job and job.estimated_finish else rate.finish_at()
                eta = finish - self.clock() if finish is not None else None
                if show:
                    trouble = f"service unavailable, polling on ({outage.last})" if outage.failing else None
                    bar.update(job, new, eta, trouble)
                if ok and job is not None and job.is_terminal:
                    break
                now = self.clock()
                if deadline is not None and now >= deadline:
                    state = describe_status(job) if job else "unknown"
                    raise WaitTimeout(f"Job {job_id} is still {state} after {timeout:g} s; it keeps running. "
                                      f"Re-attach with: {self.reattach_hint.format(job_id=job_id)}",
                                      job=job, timeout=timeout)
                pause, interval, past_eta = self._interval(interval, eta, past_eta)
                pause = outage.pause(pause)
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
        if job.status is JobStatus.SUCCEEDED:
            return job
        detail = f": {job.error.message}" + (f" (code {job.error.code})" if job.error.code else "") if job.error else ""
        raise JobFailedError(f"Job {job_id} {job.status.value}{detail}", job=job)
