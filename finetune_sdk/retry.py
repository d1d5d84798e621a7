"""One retry policy for every network call the SDK makes.

Retry 408/409/429/5xx and connection failures with jittered exponential backoff,
honouring ``Retry-After``; never retry other 4xx, nor a 429 whose code says retrying
cannot help (``daily_rate_limit_exceeded``): those surface at once with the provider's
message. The ``openai`` client's own retries are switched off where we use it, so there
is exactly one policy.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from ._secrets import get_logger
from .errors import ProviderError, RateLimitError

__all__ = ["RetryPolicy", "is_retryable", "NON_RETRYABLE_CODES"]

_log = get_logger(__name__)
T = TypeVar("T")

#: Error codes that are never worth retrying, whatever the status.
NON_RETRYABLE_CODES = frozenset({"daily_rate_limit_exceeded", "insufficient_quota", "billing_hard_limit_reached"})


def is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, ProviderError):
        return False
    if exc.code in NON_RETRYABLE_CODES:
        return False
    return exc.retryable


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and backoff. ``attempts=1`` disables retrying."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 20.0
    multiplier: float = 2.0
    jitter: float = 0.25
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        base *= 1 + random.uniform(-self.jitter, self.jitter)
        retry_after = exc.retry_after if isinstance(exc, RateLimitError) else None
        if retry_after is not None:
            return max(base, retry_after)
        return max(0.0, base)

    def call(self, fn: Callable[[], T], *, describe: str = "request",
             on_retry: Callable[[BaseException], None] | None = None) -> T:
        """Run ``fn`` under the policy; the last error propagates unchanged."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            _log.info("%s failed (%s); retrying (attempt %d of %d)", describe, exc, state.attempt_number + 1,
                      self.attempts)
            if on_retry is not None and exc is not None:
                on_retry(exc)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.delay(state.attempt_number, exc)

        retrying = Retrying(stop=stop_after_attempt(max(1, self.attempts)), wait=wait,
                            retry=retry_if_exception(is_retryable), sleep=self.sleep, reraise=True,
                            before_sleep=before_sleep)
        return retrying(fn)
