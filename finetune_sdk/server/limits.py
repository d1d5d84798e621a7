"""Bounded request bodies: answer 413 in the service's envelope before reading too much."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .errors import ApiError, envelope

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """Rejects bodies over the limit (uploads, multipart or PUT, get a larger one).

    With a ``content-length`` the check happens before reading anything; chunked bodies
    are counted as they arrive and cut off at the limit.
    """

    def __init__(self, app: Any, *, max_json_bytes: int, max_upload_bytes: int,
                 dialect_of: Callable[[str], str]) -> None:
        self.app = app
        self.max_json = max_json_bytes
        self.max_upload = max_upload_bytes
        self.dialect_of = dialect_of

    async def _reject(self, send: Any, path: str, size: int | None, limit: int) -> None:
        message = (f"Request body too large: {size:,} bytes; the limit is {limit:,} bytes." if size is not None
                   else f"Request body too large; the limit is {limit:,} bytes.")
        body: dict[str, Any]
        dialect = self.dialect_of(path)
        if dialect == "azure":
            body = {"error": {"code": "requestTooLarge", "message": message}}
        elif dialect != "openai":  # a module dialect: its registered envelope
            body = envelope(ApiError(413, message, code="request_too_large"), dialect)
        else:
            body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                              "code": "request_too_large"}}
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        # Raw bytes PUT to an upload URL (Together's two-step upload) are an upload too.
        upload = content_type.startswith("multipart/") or (scope["method"] == "PUT" and
                                                           not content_type.startswith("application/json"))
        limit = self.max_upload if upload else self.max_json
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0 or size > limit:
                await self._reject(send, scope.get("path", ""), size if size >= 0 else None, limit)
                return
            await self.app(scope, receive, send)
            return
        # No length given: buffer up to the limit, then replay the body to the application.
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await self._reject(send, scope.get("path", ""), None, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
