"""The one retry layer: every request the SDK sends goes through :meth:`RetryPolicy.call`.

- Retried: 408, 409, 429, 5xx and connection failures, with jittered exponential backoff
  that honours ``Retry-After`` / ``retry-after-ms``. Never retried: other 4xx, and a 429
  whose code says retrying cannot help (``daily_rate_limit_exceeded``, exhausted quota).
- Nothing retries around it. Code that polls (waiting for a job, a file, a deployment)
  makes each poll a single attempt with :func:`no_retry` and tolerates outages by its own
  schedule (:mod:`finetune_sdk.polling`), so a retry never runs inside a retry.
- Creating a job is not blindly retried: :func:`create_exactly_once` looks for the job a
  failed attempt may have created before it tries again.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from ._secrets import get_logger
from .errors import ProviderConnectionError, ProviderError, RateLimitError, ServerError

__all__ = ["RetryPolicy", "is_retryable", "may_have_executed", "no_retry", "create_exactly_once",
           "NON_RETRYABLE_CODES"]

_log = get_logger(__name__)
T = TypeVar("T")

#: Error codes that are never worth retrying, whatever the status. gRPC's ALREADY_EXISTS
#: comes as a 409 (retryable for other causes) but sending the same create again cannot help.
NON_RETRYABLE_CODES = frozenset({"daily_rate_limit_exceeded", "insufficient_quota", "billing_hard_limit_reached",
                                 "ALREADY_EXISTS"})

_single_attempt: contextvars.ContextVar[bool] = contextvars.ContextVar("finetune_single_attempt", default=False)


def is_retryable(exc: BaseException) -> bool:
    """Whether sending the same request again may succeed."""
    if not isinstance(exc, ProviderError):
        return False
    if exc.code in NON_RETRYABLE_CODES:
        return False
    return exc.retryable


def may_have_executed(exc: BaseException) -> bool:
    """Whether a failed request may nonetheless have been carried out by the service.

    True for a timeout, a dropped connection or a lost response, and for a 5xx (the
    service may fail after doing the work). False for 4xx and 429: the service refused
    the request, so nothing was done.
    """
    return isinstance(exc, (ProviderConnectionError, ServerError))


@contextlib.contextmanager
def no_retry() -> Iterator[None]:
    """Within this block every request is sent once: its caller handles failures itself."""
    token = _single_attempt.set(True)
    try:
        yield
    finally:
        _single_attempt.reset(token)


def retry_after(exc: BaseException) -> float | None:
    """The seconds a rate-limited response asked us to wait, if it said."""
    return exc.retry_after if isinstance(exc, RateLimitError) else None


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and backoff. ``attempts=1`` disables retrying.

    ``sleep`` is how the policy waits; tests and benchmarks pass a simulated clock's
    ``advance`` so that retries cost no real time.
    """

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 20.0
    multiplier: float = 2.0
    jitter: float = 0.25
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if not (0 <= self.initial <= self.maximum) or self.multiplier < 1 or not (0 <= self.jitter < 1):
            raise ValueError("need 0 <= initial <= maximum, multiplier >= 1 and 0 <= jitter < 1")

    @property
    def effective_attempts(self) -> int:
        """The attempts a call makes here and now (1 inside :func:`no_retry`)."""
        return 1 if _single_attempt.get() else self.attempts

    def delay(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (counting from 1)."""
        base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        base *= 1 + random.uniform(-self.jitter, self.jitter)
        asked = retry_after(exc) if exc is not None else None
        return max(base, asked) if asked is not None else max(0.0, base)

    def call(self, fn: Callable[[], T], *, describe: str = "request") -> T:
        """Run ``fn`` under the policy; the last error propagates unchanged."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            _log.info("%s failed (%s); retrying (attempt %d of %d)", describe, exc, state.attempt_number + 1,
                      self.attempts)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.delay(state.attempt_number, exc)

        retrying = Retrying(stop=stop_after_attempt(self.effective_attempts), wait=wait,
                            retry=retry_if_exception(is_retryable), sleep=self.sleep, reraise=True,
                            before_sleep=before_sleep)
        return retrying(fn)


def create_exactly_once(create: Callable[[], T], find: Callable[[], T | None], policy: RetryPolicy, *,
                        settle: Callable[[BaseException], float] = lambda exc: 0.0,
                        clock: Callable[[], float] = time.monotonic, describe: str = "create") -> T:
    """Create something at most once, retrying under ``policy``.

    ``create`` sends one non-idempotent request (it must not retry by itself); ``find``
    looks for what an earlier attempt may have created (one lookup, ``None`` if absent).
    After a failure that may have been carried out (:func:`may_have_executed`) nothing is
    created again until ``find`` has answered "absent" — for ``settle(exc)`` seconds
    after a timeout, since a service may execute a request after the client gave up.
    After a failure that proves nothing was done (4xx, 429) the next attempt creates at
    once. Every create and every lookup is one attempt of the policy's budget.
    """
    uncertain: BaseException | None = None

    def attempt() -> T:
        nonlocal uncertain
        if uncertain is not None:
            deadline = clock() + settle(uncertain)
            while True:
                with no_retry():
                    found = find()
                if found is not None:
                    _log.info("%s: found what an earlier attempt created", describe)
                    return found
                if clock() >= deadline:
                    break
                policy.sleep(min(2.0, max(0.1, deadline - clock())))
            uncertain = None
        try:
            with no_retry():
                return create()
        except BaseException as exc:
            if may_have_executed(exc):
                uncertain = exc
            raise

    return policy.call(attempt, describe=describe)
