"""Polling, written once: how the SDK waits for anything that takes time (a job, a file being
processed, a deployment being provisioned).

Each poll is one request (:func:`~finetune_sdk.retry.no_retry`): a poll that fails with a
transient error (429, 5xx, a dropped connection) is simply followed by the next poll, at
the schedule's interval or the ``Retry-After`` the service asked for, whichever is longer.
Only when no poll has succeeded for :attr:`PollSchedule.outage` seconds (5 minutes by
default) does polling give up and raise the last error; permanent errors (4xx) raise at
once. So an outage costs a bounded, documented number of requests — never the product of
two retry loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import ProviderError, WaitTimeout
from .retry import is_retryable, no_retry, retry_after

__all__ = ["PollSchedule", "Outage", "Poller"]

T = TypeVar("T")


@dataclass(frozen=True)
class PollSchedule:
    """Seconds between polls: ``initial``, growing by ``growth`` up to ``maximum``;
    ``near_end`` is the interval used once a job's estimated finish has passed; ``outage``
    is how long polling keeps going through transient failures before it raises."""

    initial: float = 2.0
    maximum: float = 60.0
    growth: float = 1.6
    near_end: float = 2.0
    outage: float = 300.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.growth >= 1 and self.near_end > 0):
            raise ValueError("need 0 < initial <= maximum, growth >= 1 and near_end > 0")
        if self.outage < 0:
            raise ValueError("outage must be zero or more seconds")

    def grow(self, interval: float) -> float:
        return min(self.maximum, interval * self.growth)


@dataclass
class Outage:
    """Tracks consecutive failed polls against the outage budget."""

    budget: float
    clock: Callable[[], float]
    what: str = "polling"
    since: float | None = None
    failures: int = 0
    last: ProviderError | None = None

    def poll(self, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """One attempt of ``fn``: ``(True, value)``, or ``(False, None)`` after a transient
        failure within the budget. Permanent errors, and a failure past the budget, raise."""
        try:
            with no_retry():
                value = fn()
        except ProviderError as exc:
            if not is_retryable(exc):
                raise
            now = self.clock()
            if self.since is None:
                self.since = now
            self.failures += 1
            self.last = exc
            if now - self.since >= self.budget:
                raise exc.with_context(
                    f"{self.what}: the service failed {self.failures} time(s) in a row for {now - self.since:.0f} s, "
                    f"past the outage budget of {self.budget:g} s (PollSchedule.outage)") from None
            return False, None
        self.since, self.failures, self.last = None, 0, None
        return True, value

    @property
    def failing(self) -> bool:
        return self.since is not None

    def pause(self, pause: float) -> float:
        """The pause before the next poll: at least what a rate limit asked for, and never
        past the end of the budget (the last poll lands on it)."""
        if self.since is None or self.last is None:
            return pause
        asked = retry_after(self.last)
        if asked is not None:
            pause = max(pause, asked)
        return max(0.0, min(pause, self.since + self.budget - self.clock()))


@dataclass
class Poller(Generic[T]):
    """Poll ``fetch`` until ``done(value)``, on a schedule, through outages."""

    schedule: PollSchedule = field(default_factory=PollSchedule)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def until(self, fetch: Callable[[], T], done: Callable[[T], bool], *, what: str,
              timeout: float | None = None, on_timeout: Callable[[T | None], str] | None = None,
              ride_outages: bool = True) -> T:
        """The first value for which ``done`` is true.

        With ``ride_outages`` (the default) each poll is one request and transient failures
        are ridden out within the outage budget. Without it, each poll is a normal call
        (under the retry policy) and any error it raises propagates: for polling a state
        (``done``) rather than a service's health.

        Raises:
            WaitTimeout: ``timeout`` seconds passed (the message from ``on_timeout``).
            ProviderError: a permanent error, or transient ones for longer than the outage budget.
        """
        outage = Outage(self.schedule.outage, self.clock, what)
        deadline = None if timeout is None else self.clock() + timeout
        interval = self.schedule.initial
        last: T | None = None
        while True:
            ok, value = outage.poll(fetch) if ride_outages else (True, fetch())
            if ok:
                last = value
                if done(value):  # type: ignore[arg-type]
                    return value  # type: ignore[return-value]
            now = self.clock()
            if deadline is not None and now >= deadline:
                message = on_timeout(last) if on_timeout else f"{what}: still not done after {timeout:g} s."
                raise WaitTimeout(message, timeout=timeout)
            pause = outage.pause(interval)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - now))
            self.sleep(pause)
            interval = self.schedule.grow(interval)
