"""Fireworks' wire format: error envelopes, resource names, timestamps, int64s, page tokens.

- Control-plane errors are gRPC-gateway statuses ``{"code": <int>, "message", "details": []}``
  (github.com/Kiln-AI/Kiln/issues/207 shows ``{"code":7,"details":[],"message":""}``).
- Inference errors are flat: ``{"message", "param", "code": "NOT_FOUND", "type": "error"}``
  (the 2026 form quoted in warpdotdev/warp#15107); the wording of other inference errors
  is unverified.
- Timestamps are RFC 3339 in UTC, int64 fields are JSON strings (proto3 JSON), empty fields
  are left out, and lists page with ``pageSize`` / ``pageToken`` / ``nextPageToken``.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone
from typing import Any

from ...providers.http import GRPC_CODES
from ..errors import ApiError

__all__ = ["control_envelope", "inference_envelope", "grpc_name", "rfc3339", "page", "valid_id", "short_id",
           "ID_RULE"]

_BY_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              405: "UNIMPLEMENTED", 409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
              500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
              504: "DEADLINE_EXCEEDED"}

#: Resource ids: lower-case letters, digits and hyphens, starting with a letter (a dataset id
#: "may not start with a digit", Kiln's adapter notes), at most 63 characters (AIP-122).
ID_RULE = "lower-case letters, digits and hyphens, starting with a letter, at most 63 characters"
_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def grpc_name(err: ApiError) -> str:
    """The gRPC status name of an error: its code when it is one, else what its HTTP status means."""
    if err.code in GRPC_CODES:
        return str(err.code)
    return _BY_STATUS.get(err.status, "INTERNAL" if err.status >= 500 else "INVALID_ARGUMENT")


def control_envelope(err: ApiError) -> dict[str, Any]:
    return {"code": GRPC_CODES.index(grpc_name(err)), "message": err.message, "details": []}


def inference_envelope(err: ApiError) -> dict[str, Any]:
    return {"message": err.message, "param": err.param, "code": grpc_name(err), "type": "error"}


def rfc3339(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromtimestamp(value, timezone.utc)
    when = when.astimezone(timezone.utc)
    fraction = f".{when.microsecond:06d}".rstrip("0") if when.microsecond else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def short_id(name: str, account: str, collection: str) -> str | None:
    """The id in ``accounts/{account}/{collection}/{id}``; None for another account or collection."""
    parts = name.split("/")
    if len(parts) == 4 and parts[0] == "accounts" and parts[1] == account and parts[2] == collection and parts[3]:
        return parts[3]
    return None


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)).decode()
        kind, _, number = text.partition(":")
        if kind == "offset" and number.isdigit():
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ApiError(400, f"invalid page token {token!r}: pass back the nextPageToken of the previous page",
                   code="INVALID_ARGUMENT", param="pageToken")


def page(items: list[dict[str, Any]], key: str, page_size: int | None, page_token: str | None) -> dict[str, Any]:
    """One page: at most ``pageSize`` items (default 50; above 200 is coerced to 200, as the
    SDK documents), ``nextPageToken`` while more remain, and ``totalSize``."""
    if page_size is not None and page_size < 0:
        raise ApiError(400, f"invalid pageSize {page_size}: it must not be negative", code="INVALID_ARGUMENT",
                       param="pageSize")
    size = min(200, page_size or 50)
    start = _offset(page_token)
    if start > len(items):
        raise ApiError(400, f"invalid page token {page_token!r}: past the end of the list", code="INVALID_ARGUMENT",
                       param="pageToken")
    body: dict[str, Any] = {key: items[start:start + size], "totalSize": len(items)}
    if start + size < len(items):
        body["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode().rstrip("=")
    return body


def drop_empty(body: dict[str, Any]) -> dict[str, Any]:
    """proto3 JSON leaves out unset fields."""
    return {k: v for k, v in body.items() if v is not None and v != {} and v != []}
