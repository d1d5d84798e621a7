"""Errors on the wire: one exception type, rendered in each dialect's envelope.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
Azure data plane and ARM: ``{"error": {"code", "message", "target"?}}`` (the ``openai``
client reads ``message`` and ``code`` from either).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ProviderError, error_for_status

__all__ = ["ApiError", "from_provider_error", "envelope", "ENVELOPES", "TYPE_BY_STATUS"]

TYPE_BY_STATUS = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                  404: "invalid_request_error", 405: "invalid_request_error", 409: "invalid_request_error",
                  413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
                  429: "requests"}


class ApiError(Exception):
    """An HTTP error answer. ``code`` and ``param`` follow the service being spoken."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}


def from_provider_error(exc: ProviderError) -> ApiError:
    status = exc.status_code
    if status is None:
        # Map the error class back to its status (a provider may raise without one).
        for code, cls in ((400, "BadRequestError"), (401, "AuthenticationError"), (403, "PermissionDeniedError"),
                          (404, "NotFoundError"), (409, "ConflictError"), (429, "RateLimitError")):
            if type(exc).__name__ == cls:
                status = code
                break
        else:
            status = 500 if error_for_status(500) is type(exc) else 502
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(0, int(round(retry_after))))
    return ApiError(status, exc.detail, code=exc.code, param=exc.param, headers=headers)


def _openai(err: ApiError) -> dict[str, Any]:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


def _azure(err: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": err.code or str(err.status), "message": err.message}
    if err.param:
        body["target"] = err.param
    return {"error": body}


#: dialect -> how it wraps an error; a dialect module registers its own when it is mounted.
ENVELOPES: dict[str, Callable[[ApiError], dict[str, Any]]] = {"openai": _openai, "azure": _azure}


def envelope(err: ApiError, dialect: str) -> dict[str, Any]:
    return ENVELOPES.get(dialect, _openai)(err)
