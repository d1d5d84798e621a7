"""Wire conformance of the emulator's Together dialect (a helper module, not a test module).

Every JSON body under ``/together/v1`` is validated with jsonschema against the schema that
Together's public OpenAPI description (``../shared/specs/together-openapi.yaml``) gives for
the route, each chunk of a chat stream against ``ChatCompletionChunk``, and errors against
``ErrorData``; the machinery is :class:`spec_check.OpenAPISpec`. Use ``together_wire`` (a
fixture) or ``WireRecorder(dialects=(TOGETHER_DIALECT,))``.

Routes the description lacks but Together's SDKs call are mapped to what those SDKs parse:
``POST /files`` (302, no body) and ``POST /files/{id}/preprocess`` (a ``FileResponse``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from spec_check import SPECS, Dialect, OpenAPISpec, WireRecorder

__all__ = ["TOGETHER", "TOGETHER_DIALECT", "together_wire", "schema_for"]


def _patch(schemas: dict[str, Any]) -> None:
    # PATCH 1: LRScheduler.lr_scheduler_args is oneOf [LinearLRSchedulerArgs,
    # CosineLRSchedulerArgs], but the linear schema's one property is optional and it allows
    # others, so every cosine argument object matches both and oneOf can never hold for it
    # (the SDKs send cosine by default). The intent is "either": anyOf.
    args = schemas["LRScheduler"]["properties"]["lr_scheduler_args"]
    args["anyOf"] = args.pop("oneOf")


TOGETHER = OpenAPISpec(SPECS / "together-openapi.yaml", _patch)


def _inline(path: str, method: str, status: str = "200") -> str:
    escaped = path.replace("~", "~0").replace("/", "~1")
    return f"#/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema"


_ID = r"[^/]+"
# (method, path below /together/v1) -> response schema; None: no JSON body.
ROUTES: list[tuple[str, re.Pattern[str], str | None]] = [(m, re.compile(p), s) for m, p, s in [
    ("POST", r"/files", None),  # 302 to the upload URL
    ("POST", rf"/files/{_ID}/preprocess", "FileResponse"),
    ("POST", r"/files/upload", "FileResponse"),
    ("GET", r"/files", "FileList"),
    ("GET", rf"/files/{_ID}", "FileResponse"),
    ("DELETE", rf"/files/{_ID}", "FileDeleteResponse"),
    ("GET", rf"/files/{_ID}/content", None),
    ("GET", r"/fine-tunes/models/supported", _inline("/fine-tunes/models/supported", "get")),
    ("GET", r"/fine-tunes/models/limits", "FineTuneModelLimits"),
    ("POST", r"/fine-tunes/estimate-price", _inline("/fine-tunes/estimate-price", "post")),
    ("POST", r"/fine-tunes", "FinetuneResponseTruncated"),
    ("GET", r"/fine-tunes", "FinetuneTruncatedList"),
    ("GET", rf"/fine-tunes/{_ID}", "FinetuneResponse"),
    ("POST", rf"/fine-tunes/{_ID}/cancel", "FinetuneResponseTruncated"),
    ("GET", rf"/fine-tunes/{_ID}/events", "FinetuneListEvents"),
    ("GET", rf"/fine-tunes/{_ID}/checkpoints", "FinetuneListCheckpoints"),
    ("GET", rf"/fine-tunes/{_ID}/metrics", _inline("/fine-tunes/{id}/metrics", "get")),
    ("GET", r"/models", "ModelInfoList"),
    ("POST", r"/chat/completions", "ChatCompletionResponse"),
    ("GET", r"/hardware", _inline("/hardware", "get")),
    ("GET", r"/endpoints", _inline("/endpoints", "get")),
    ("POST", r"/endpoints", "DedicatedEndpoint"),
    ("GET", rf"/endpoints/{_ID}", "DedicatedEndpoint"),
    ("PATCH", rf"/endpoints/{_ID}", "DedicatedEndpoint"),
    ("DELETE", rf"/endpoints/{_ID}", None),  # 204
]]
# Error answers that are not ErrorData: the limits route's 404 is a bare message.
ERRORS = {("GET", "/fine-tunes/models/limits", 404): _inline("/fine-tunes/models/limits", "get", "404")}


def schema_for(method: str, path: str) -> tuple[bool, str | None]:
    """(known route?, schema or None for a body that is not JSON) for a path below /together/v1."""
    for m, pattern, name in ROUTES:
        if m == method and pattern.fullmatch(path):
            return True, name
    return False, None


def _json(method: str, path: str, status: int, body: Any) -> tuple[str, list[str]]:
    if status >= 400:
        name = ERRORS.get((method, path, status), "ErrorData")
        return name, TOGETHER.problems(name, body)
    known, name = schema_for(method, path)
    if not known:
        return "?", ["no response schema is mapped for this route (add it to together_spec.ROUTES)"]
    if name is None:
        return "-", [f"expected no JSON body, got {str(body)[:120]}"]
    return name, TOGETHER.problems(name, body)


def _chunk(chunk: Any) -> tuple[str, list[str]]:
    name = "ErrorData" if isinstance(chunk, dict) and "error" in chunk else "ChatCompletionChunk"
    return name, TOGETHER.problems(name, chunk)


def _empty_ok(method: str, path: str, status: int) -> bool:
    return (method, path, status) == ("POST", "/files", 302) or (method == "DELETE" and status == 204)


def _binary_ok(method: str, path: str, status: int) -> bool:
    return method == "GET" and status < 400 and path.endswith("/content")


TOGETHER_DIALECT = Dialect("/together/v1", _json, _chunk, _empty_ok, _binary_ok)


@pytest.fixture
def together_wire() -> Iterator[WireRecorder]:
    """A recorder that checks Together's answers too; the test fails at teardown if any did not conform."""
    TOGETHER.components()  # skip early without the description
    recorder = WireRecorder(dialects=(TOGETHER_DIALECT,))
    yield recorder
    recorder.assert_clean()
