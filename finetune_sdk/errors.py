"""The exception tree of finetune-sdk.

Every error says what went wrong and what to do about it. No secret ever appears in a
message, a repr, a log line or a pickled error: messages and attributes are scrubbed
when the error is created (see :mod:`finetune_sdk._secrets`).

::

    FineTuneError
    ├── ConfigurationError
    ├── DatasetError                  (.report)
    ├── ProviderError                 (.provider, .status_code, .request_id, .code, .param)
    │   ├── BadRequestError           400 / 422
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── ConflictError             409
    │   ├── RateLimitError            429 (.retry_after, .retryable)
    │   ├── ServerError               5xx
    │   └── ProviderConnectionError   network failure or timeout (no response)
    ├── IdempotencyError              (.job: the job the key was used for)
    ├── JobFailedError                (.job)
    ├── WaitTimeout                   (.job, .timeout)
    └── UnsupportedOperation          (.capability, .provider)
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ._secrets import scrub, scrub_obj

if TYPE_CHECKING:  # pragma: no cover
    from .types import DatasetReport, Job

__all__ = [
    "FineTuneError",
    "ConfigurationError",
    "DatasetError",
    "ProviderError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "ServerError",
    "ProviderConnectionError",
    "IdempotencyError",
    "JobFailedError",
    "WaitTimeout",
    "UnsupportedOperation",
    "error_for_status",
]


def _rebuild(cls: type[FineTuneError], message: str, attrs: dict[str, Any]) -> FineTuneError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(attrs)
    return err


class FineTuneError(Exception):
    """Root of every error raised by finetune-sdk."""

    def __init__(self, message: str) -> None:
        super().__init__(scrub(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle only scrubbed state; never the original arguments.
        return (_rebuild, (type(self), self.message, scrub_obj(dict(self.__dict__))))


class ConfigurationError(FineTuneError):
    """A setting is missing or invalid (names the setting, where we looked, and an example)."""


class DatasetError(FineTuneError):
    """A dataset failed validation; ``report`` holds every problem found."""

    def __init__(self, message: str, *, report: DatasetReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class ProviderError(FineTuneError):
    """A backend answered with an error (or did not answer at all)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
        param: str | None = None,
        body: Any = None,
    ) -> None:
        prefix = f"[{provider}] " if provider else ""
        super().__init__(prefix + message)
        #: The message without the provider prefix (what a wire server sends back).
        self.detail = scrub(message)
        self.provider = provider
        self.status_code = status_code
        self.request_id = request_id
        self.code = code
        self.param = param
        self.body = scrub_obj(body)

    @property
    def retryable(self) -> bool:
        """Whether retrying the same request may succeed."""
        return False

    def with_context(self, context: str) -> ProviderError:
        """The same error (class, status, code, ...) with ``context`` put before its message."""
        clone = copy.copy(self)
        clone.detail = scrub(f"{context}. Last error: {self.detail}")
        prefix = f"[{self.provider}] " if self.provider else ""
        clone.args = (prefix + clone.detail,)
        return clone


class BadRequestError(ProviderError):
    """The request was rejected as invalid (400/422). Retrying will not help."""


class AuthenticationError(ProviderError):
    """The credentials were missing or wrong (401)."""


class PermissionDeniedError(ProviderError):
    """The credentials are valid but lack permission (403)."""


class NotFoundError(ProviderError):
    """The job, file, model or deployment does not exist (404)."""


class ConflictError(ProviderError):
    """The resource is in a state that does not allow this call (409)."""

    @property
    def retryable(self) -> bool:
        return True


class RateLimitError(ProviderError):
    """Too many requests (429). ``retryable`` is False for daily quotas."""

    def __init__(self, message: str, *, retry_after: float | None = None, retryable: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        return self._retryable


class ServerError(ProviderError):
    """The backend failed (5xx) or timed out the request (408). Usually transient."""

    @property
    def retryable(self) -> bool:
        return True


class ProviderConnectionError(ProviderError):
    """No response: connection refused or dropped, or a timeout (``timed_out``).

    After a timeout the request may still be executed later by the service.
    """

    def __init__(self, message: str, *, timed_out: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.timed_out = timed_out

    @property
    def retryable(self) -> bool:
        return True


class IdempotencyError(FineTuneError):
    """An idempotency key was reused for a different request; ``job`` is the job it made."""

    def __init__(self, message: str, *, job: Job | None = None) -> None:
        super().__init__(message)
        self.job = job


class JobFailedError(FineTuneError):
    """A job ended ``failed`` (or ``cancelled`` while being waited on); ``job`` holds it."""

    def __init__(self, message: str, *, job: Job | None = None) -> None:
        super().__init__(message)
        self.job = job


class WaitTimeout(FineTuneError):
    """A wait ran out of time. The job keeps running; ``job`` is its last known state."""

    def __init__(self, message: str, *, job: Job | None = None, timeout: float | None = None) -> None:
        super().__init__(message)
        self.job = job
        self.timeout = timeout


class UnsupportedOperation(FineTuneError):
    """The provider cannot do this; ``capability`` names what is missing."""

    def __init__(self, capability: str, provider: str, hint: str | None = None) -> None:
        message = f"The {provider!r} provider does not support {capability}."
        if hint:
            message += " " + hint
        super().__init__(message)
        self.capability = capability
        self.provider = provider


_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_for_status(status_code: int | None) -> type[ProviderError]:
    """The error class for an HTTP status code."""
    if status_code is None:
        return ProviderConnectionError
    if status_code in _STATUS_ERRORS:
        return _STATUS_ERRORS[status_code]
    if status_code == 408:
        return ServerError
    if status_code >= 500:
        return ServerError
    return ProviderError
