"""The shared machinery of providers that talk to an HTTP API.

:class:`Transport` owns, once for every such provider: the connection (httpx), the single
retry (:mod:`finetune_sdk.retry`), ``Retry-After`` / ``retry-after-ms``, translation of
responses and connection failures into the SDK's errors, cursor pagination, server-sent
event streams, and OpenAI-compatible chat completions (the lingua franca of every service
we wrap). :class:`HTTPProvider` puts a transport under a :class:`Provider`; a concrete
provider supplies only hooks — its base URL, auth headers, routes, request bodies, and
the parsing of its objects and statuses. Secrets never reach a message: errors are
scrubbed when they are made (:mod:`finetune_sdk._secrets`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from .._secrets import get_logger
from ..config import ProviderSettings, setting
from ..errors import ProviderConnectionError, ProviderError, RateLimitError, error_for_status
from ..retry import NON_RETRYABLE_CODES, RetryPolicy
from ..types import ChatDelta, ChatResponse, Usage
from .base import Provider, S

__all__ = ["HTTPSettings", "HTTPProvider", "Transport", "error_from_response", "retry_after_seconds", "GRPC_CODES"]

_log = get_logger(__name__)
T = TypeVar("T")
_REQUEST_ID_HEADERS = ("x-request-id", "apim-request-id", "x-ms-request-id", "request-id")


class HTTPSettings(ProviderSettings):
    """Settings shared by every HTTP provider."""

    timeout: float = setting(60.0, description="Seconds per request.")
    max_retries: int = setting(5, description="Attempts per request under the SDK's retry policy.")


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """What a response asks us to wait: ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date)."""
    if headers.get("retry-after-ms"):
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


#: The canonical gRPC status codes by number, as gRPC-gateway APIs put them in error bodies.
GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
              "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
              "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) from the error envelopes we meet: OpenAI and Azure
    ``{"error": {"message", "code", "param" | "target"}}``, ``{"error": "text"}``,
    ``{"message": ..., "code": ...}`` / ``{"detail": ...}``, and gRPC-gateway statuses
    ``{"code": 5, "message", "details": [...]}`` (the number becomes its name, ``NOT_FOUND``,
    so that codes read the same whichever way a service spells them)."""
    if not isinstance(body, dict):
        return None, None, None
    err = body.get("error", body)
    if isinstance(err, str):
        return err, None, None
    if not isinstance(err, dict):
        return None, None, None
    message = err.get("message") or body.get("message") or body.get("detail")
    code = err.get("code")
    if err is body and isinstance(code, int) and not isinstance(code, bool) and 0 <= code < len(GRPC_CODES) \
            and isinstance(body.get("details", []), list):
        code = GRPC_CODES[code]
    param = err.get("param") or err.get("target")
    return (str(message) if message is not None else None, str(code) if code is not None else None,
            str(param) if param is not None else None)


def error_from_response(response: httpx.Response, provider: str) -> ProviderError:
    """The SDK's error for an HTTP error response: class by status, the service's message,
    code and parameter, its request id, and for 429 when to retry."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:2000] or None
    message, code, param = _error_fields(body)
    message = message or f"HTTP {response.status_code} {response.reason_phrase}".strip()
    request_id = next((response.headers[h] for h in _REQUEST_ID_HEADERS if h in response.headers), None)
    kwargs: dict[str, Any] = {"provider": provider, "status_code": response.status_code, "request_id": request_id,
                                  "code": code, "param": param, "body": body}
    cls = error_for_status(response.status_code)
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=retry_after_seconds(response.headers),
                              retryable=code not in NON_RETRYABLE_CODES, **kwargs)
    return cls(message, **kwargs)


def error_from_exception(exc: httpx.HTTPError, provider: str, what: str) -> ProviderConnectionError:
    timed_out = isinstance(exc, httpx.TimeoutException)
    how = "timed out" if timed_out else "could not connect or lost the connection"
    return ProviderConnectionError(f"{what} {how} ({type(exc).__name__}: {exc})", provider=provider,
                                   timed_out=timed_out)


class Transport:
    """One HTTP API: base URL, auth, the single retry, errors, pagination, streams.

    ``headers`` and ``params`` are called for every attempt, so that short-lived tokens are
    refreshed and never cached in a request that is retried later.
    """

    def __init__(self, provider: str, base_url: str, *, policy: Callable[[], RetryPolicy],
                 headers: Callable[[], Mapping[str, str]] = dict, params: Callable[[], Mapping[str, str]] = dict,
                 timeout: float = 60.0, client: httpx.Client | None = None) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.headers = headers
        self.params = params
        self.timeout = timeout
        self._owns_client = client is None
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=True)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def _build(self, method: str, path: str, *, params: Mapping[str, Any] | None, presigned: bool = False,
               **kwargs: Any) -> httpx.Request:
        # A presigned URL carries its own authorisation: our credentials must not travel to it
        # (object stores also refuse a request that is authorised twice).
        merged = {**({} if presigned else self.params()), **(params or {})}
        headers = {**({} if presigned else dict(self.headers())), **(kwargs.pop("headers", None) or {})}
        return self.client.build_request(method, self.url(path), params=merged or None, headers=headers,
                                         timeout=self.timeout, **kwargs)

    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None, stream: bool,
              ok_statuses: tuple[int, ...], what: str, presigned: bool = False,
              follow_redirects: bool | None = None, **kwargs: Any) -> httpx.Response:
        request = self._build(method, path, params=params, presigned=presigned, **kwargs)
        _log.debug("%s: %s %s", self.provider, method, path if not presigned else path.split("?", 1)[0])
        options: dict[str, Any] = {} if follow_redirects is None else {"follow_redirects": follow_redirects}
        try:
            response = self.client.send(request, stream=stream, **options)
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, self.provider, what) from None
        if response.status_code >= 400 and response.status_code not in ok_statuses:
            if stream:
                response.read()
                response.close()
            raise error_from_response(response, self.provider)
        return response

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                ok_statuses: tuple[int, ...] = (), describe: str | None = None, **kwargs: Any) -> httpx.Response:
        """Send one request under the retry policy; raise the SDK's error for a failure.

        ``kwargs`` go to httpx (``json``, ``files``, ``data``, ``content``, ``headers``), and
        may say ``presigned=True`` (an absolute URL the service handed out, e.g. a pre-signed
        storage URL: sent without our auth headers and default parameters, which must never
        reach it) and ``follow_redirects=False`` (a redirect is the answer, e.g. an upload
        URL in ``Location``). Statuses in ``ok_statuses`` are returned instead of raised
        (e.g. a 404 on DELETE).
        """
        what = describe or f"{method} {path}"

        def attempt() -> httpx.Response:
            response = self._send(method, path, params=params, stream=False, ok_statuses=ok_statuses, what=what,
                                  **kwargs)
            try:
                response.read()
            except httpx.HTTPError as exc:  # the body never fully arrived
                raise error_from_exception(exc, self.provider, what) from None
            return response

        return self.policy().call(attempt, describe=f"{self.provider}: {what}")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{method} {path} answered {response.status_code} with a body that is not JSON: "
                                f"{response.text[:200]!r}", provider=self.provider,
                                status_code=response.status_code) from None

    def pages(self, path: str, params: Mapping[str, Any] | None = None, *, items: str = "data",
              cursor: str = "after", token: str | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list.

        By default a cursor list (``{"data": [...], "has_more": bool}``, the next page from
        ``after=<last id>``). With ``token`` (e.g. ``"nextPageToken"``), a page-token list
        (Google AIP-158): the next page is asked for with ``cursor=<the page's token>``
        until a page carries no token.
        """
        query = dict(params or {})
        seen: set[str] = set()
        while True:
            page = self.json("GET", path, params=query, describe=f"listing {path}")
            batch = list(page.get(items) or []) if isinstance(page, dict) else list(page or [])
            yield from batch
            if token is not None:
                following = page.get(token) if isinstance(page, dict) else None
                if not following:
                    return
                if following in seen:  # a service repeating a token would otherwise be listed forever
                    raise ProviderError(f"listing {path}: the service returned the page token {following!r} "
                                        f"twice", provider=self.provider)
                seen.add(following)
                query[cursor] = following
                continue
            if not (isinstance(page, dict) and page.get("has_more")) or not batch:
                return
            query[cursor] = batch[-1]["id"]

    def stream(self, method: str, path: str, *, json_body: Any, describe: str) -> Iterator[dict[str, Any]]:
        """The JSON payloads of a server-sent event stream. Opening the stream is retried
        under the policy; a stream that breaks midway raises (it cannot be resumed)."""
        response = self.policy().call(lambda: self._send(method, path, params=None, stream=True, ok_statuses=(),
                                                         what=describe, json=json_body),
                                      describe=f"{self.provider}: {describe}")
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    payload = json.loads(data)
                except ValueError:
                    continue
                if isinstance(payload, dict) and "error" in payload and not payload.get("choices"):
                    message, code, _ = _error_fields(payload)
                    raise ProviderError(message or "the stream reported an error", provider=self.provider, code=code,
                                        body=payload)
                yield payload
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, self.provider, describe) from None
        finally:
            response.close()

    # ------------------------------------------------------------------ OpenAI-compatible chat
    def chat(self, path: str, body: dict[str, Any], *, model: str) -> ChatResponse:
        """``POST`` a chat completion request and parse the answer."""
        raw = self.json("POST", path, json=body, describe=f"chatting with {model}")
        choice = (raw.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        return ChatResponse(content=message.get("content"), model=raw.get("model") or model,
                            finish_reason=choice.get("finish_reason"), usage=_usage(raw.get("usage")),
                            tool_calls=list(message.get("tool_calls") or []), raw=raw)

    def chat_stream(self, path: str, body: dict[str, Any], *, model: str,
                    ask_usage: bool = True) -> Iterator[ChatDelta]:
        """Stream a chat completion: content deltas, then one delta with the finish reason and usage.

        ``ask_usage``: send OpenAI's ``stream_options.include_usage`` (APIs that do not know
        it report usage in their last chunk unasked)."""
        finish, usage = None, None
        payload = {**body, "stream": True, **({"stream_options": {"include_usage": True}} if ask_usage else {})}
        for chunk in self.stream("POST", path, json_body=payload, describe=f"chatting with {model}"):
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield ChatDelta(content=content)
                finish = choice.get("finish_reason") or finish
        yield ChatDelta(finish_reason=finish or "stop", usage=usage)


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(prompt_tokens=raw.get("prompt_tokens") or 0, completion_tokens=raw.get("completion_tokens") or 0,
                 total_tokens=raw.get("total_tokens") or 0)


class HTTPProvider(Provider[S]):
    """A provider over one HTTP API. Subclasses supply :meth:`base_url` and, as needed,
    :meth:`auth_headers` and :meth:`default_params`; requests go through ``self.http``."""

    def __init__(self, settings: S | None = None, *, http_client: httpx.Client | None = None,
                 retry: RetryPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(settings, retry=retry, **kwargs)
        self.http = Transport(self.name, self.base_url(), policy=lambda: self.retry, headers=self.auth_headers,
                              params=self.default_params, timeout=float(getattr(self.settings, "timeout", 60.0)),
                              client=http_client)

    # -- hooks
    def base_url(self) -> str:
        raise NotImplementedError

    def auth_headers(self) -> Mapping[str, str]:
        return {}

    def default_params(self) -> Mapping[str, str]:
        return {}

    def close(self) -> None:
        self.http.close()
