"""Wire-conformance checking for the emulator tests (a helper module, not a test module).

Every response the emulator sends during a test passes through :class:`WireRecorder`, an
httpx ``event_hooks={"response": [...]}`` hook that you attach to the official clients with
``openai.OpenAI(..., http_client=recorder.http_client())``:

- OpenAI dialect (``/v1/...``): each JSON body, and each SSE chunk of a chat stream, is
  validated with jsonschema (Draft 2020-12) against the component schema of the public
  OpenAI OpenAPI description that the route returns; 4xx/5xx bodies against ``ErrorResponse``.
- Azure dialect (``/openai/...``) and Azure Resource Manager (``/subscriptions/...``): bodies
  are compared with the SHAPES of the Azure example files: every key present in the example
  body must be present in ours with a compatible JSON type (``null`` only where the
  reference documents it), and a few enums are checked.

Failures are collected, and the :func:`wire` fixture asserts that there are none when the
test ends. The specs live outside the repository, in ``../shared/specs``; without them the
tests that use this module are skipped.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

__all__ = ["SPECS", "WireRecorder", "wire", "openapi", "validator", "azure_example", "schema_for", "shape_problems",
           "OpenAPISpec", "Dialect", "OPENAI"]

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs"
OPENAPI_FILE = SPECS / "openai-openapi.yaml"
AZURE_AUTHORING = SPECS / "azure-authoring-2025-04-01-preview-examples"
AZURE_MGMT = SPECS / "azure-mgmt-2024-10-01-examples"


def _require_specs(*paths: Path) -> None:
    missing = [p for p in (paths or (OPENAPI_FILE, AZURE_AUTHORING, AZURE_MGMT)) if not p.exists()]
    if missing:
        pytest.skip(f"../shared/specs is absent: wire-conformance tests need {', '.join(str(p) for p in missing)} "
                    f"(the public OpenAPI descriptions and the Azure example files; see "
                    f"../shared/specs/README.md)")


def _as_json_schema(node: Any) -> Any:
    """Turn the OpenAPI 3.0 leftovers in this 3.1 document into their JSON Schema meaning.

    - ``nullable: true`` (3.0) means "or null"; a 2020-12 validator ignores the keyword, so
      it becomes ``anyOf: [schema, {type: null}]``. Inside ``allOf`` (``Upload.file``) it
      makes the whole ``allOf`` nullable.
    - ``exclusiveMinimum: true`` with ``minimum: x`` (3.0) is ``exclusiveMinimum: x`` in
      2020-12; a validator would otherwise compare numbers with ``True`` (== 1).
    """
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_json_schema(v) for k, v in node.items()}
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool):
            if out[bound] and limit in out:
                out[bound] = out.pop(limit)
            else:
                del out[bound]
    nullable = out.pop("nullable", False) is True
    if isinstance(out.get("allOf"), list):
        members = []
        for member in out["allOf"]:
            if isinstance(member, dict) and "anyOf" in member and {"type": "null"} in member["anyOf"] \
                    and len(member) == 1 + ("description" in member):
                nullable = True  # an allOf member that only said "nullable: true"
                rest = [m for m in member["anyOf"] if m != {"type": "null"}]
                members.extend(rest)
            else:
                members.append(member)
        out["allOf"] = members
    if nullable:
        return {"anyOf": [out, {"type": "null"}]}
    return out


class OpenAPISpec:
    """One OpenAPI description: parsed once, its components turned into JSON Schema with the
    documented ``patch`` applied, and a cached Draft 2020-12 validator per schema."""

    def __init__(self, path: Path, patch: Callable[[dict[str, Any]], None] = lambda schemas: None) -> None:
        self.path = path
        self.patch = patch
        self._document: dict[str, Any] | None = None
        self._components: dict[str, Any] | None = None
        self._validators: dict[str, Any] = {}

    def document(self) -> dict[str, Any]:
        _require_specs(self.path)
        if self._document is None:
            import yaml

            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            with open(self.path, "rb") as fh:
                self._document = yaml.load(fh, Loader=loader)
        return self._document

    def components(self) -> dict[str, Any]:
        if self._components is None:
            comps = _as_json_schema(copy.deepcopy(self.document()["components"]))
            self.patch(comps["schemas"])
            self._components = comps
        return self._components

    def validator(self, name: str) -> Any:
        """A validator for ``#/components/schemas/{name}``, or for an inline schema named by a
        JSON pointer into the document (``#/paths/...``)."""
        from jsonschema import Draft202012Validator

        if name not in self._validators:
            if name.startswith("#/"):
                node: Any = self.document()
                for part in name[2:].split("/"):
                    node = node[part.replace("~1", "/").replace("~0", "~")]
                schema = {**_as_json_schema(copy.deepcopy(node)), "components": self.components()}
            else:
                schema = {"$ref": f"#/components/schemas/{name}", "components": self.components()}
            self._validators[name] = Draft202012Validator(schema)
        return self._validators[name]

    def problems(self, name: str, body: Any) -> list[str]:
        out = []
        for err in sorted(self.validator(name).iter_errors(body), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in err.absolute_path) or "(root)"
            out.append(f"{name.rsplit('/', 1)[-1] if name.startswith('#/') else name} at {where}: "
                       f"{err.message[:300]}")
        return out


def _patch_openai(schemas: dict[str, Any]) -> None:
    """The documented patches of the OpenAI description."""
    # PATCH 1: FineTuningJob.status lacks "paused", yet the spec's own pause example
    # (POST /fine_tuning/jobs/{id}/pause) returns "status": "paused", and the service does
    # pause jobs (hosted-apis.md §1.4). Treat it as a documented state.
    status = schemas["FineTuningJob"]["properties"]["status"]
    if "paused" not in status["enum"]:
        status["enum"] = [*status["enum"], "paused"]
    # PATCH 2: ListFilesResponse requires first_id/last_id as strings, which an empty page
    # cannot have; the service answers null there, and the SDK's cursor page types them
    # Optional (openai/pagination.py). Allow null.
    for key in ("first_id", "last_id"):
        prop = schemas["ListFilesResponse"]["properties"][key]
        schemas["ListFilesResponse"]["properties"][key] = {"anyOf": [prop, {"type": "null"}]}


#: The OpenAI description (the module-level helpers below are its methods).
OPENAI = OpenAPISpec(OPENAPI_FILE, _patch_openai)


def openapi() -> dict[str, Any]:
    """The OpenAI OpenAPI description, parsed once per test session."""
    _require_specs()
    return OPENAI.document()


def components() -> dict[str, Any]:
    """``components`` of the OpenAI description, as JSON Schema, with the documented patches applied."""
    return OPENAI.components()


def validator(name: str) -> Any:
    """A Draft 2020-12 validator for ``#/components/schemas/{name}`` of the OpenAI description (cached)."""
    return OPENAI.validator(name)


def schema_problems(name: str, body: Any) -> list[str]:
    return OPENAI.problems(name, body)


# (method, path below /v1) -> response schema. Streams use CreateChatCompletionStreamResponse per chunk.
_ID = r"[^/]+"
OPENAI_ROUTES: list[tuple[str, re.Pattern[str], str | None]] = [(m, re.compile(p), s) for m, p, s in [
    ("POST", r"/files", "OpenAIFile"),
    ("GET", r"/files", "ListFilesResponse"),
    ("GET", rf"/files/{_ID}", "OpenAIFile"),
    ("DELETE", rf"/files/{_ID}", "DeleteFileResponse"),
    ("GET", rf"/files/{_ID}/content", None),  # the file's bytes
    ("POST", r"/uploads", "Upload"),
    ("POST", rf"/uploads/{_ID}/parts", "UploadPart"),
    ("POST", rf"/uploads/{_ID}/(complete|cancel)", "Upload"),
    ("POST", r"/fine_tuning/jobs", "FineTuningJob"),
    ("GET", r"/fine_tuning/jobs", "ListPaginatedFineTuningJobsResponse"),
    ("GET", rf"/fine_tuning/jobs/{_ID}", "FineTuningJob"),
    ("POST", rf"/fine_tuning/jobs/{_ID}/(cancel|pause|resume)", "FineTuningJob"),
    ("GET", rf"/fine_tuning/jobs/{_ID}/events", "ListFineTuningJobEventsResponse"),
    ("GET", rf"/fine_tuning/jobs/{_ID}/checkpoints", "ListFineTuningJobCheckpointsResponse"),
    ("GET", r"/models", "ListModelsResponse"),
    ("GET", r"/models/.+", "Model"),
    ("DELETE", r"/models/.+", "DeleteModelResponse"),
    ("POST", r"/chat/completions", "CreateChatCompletionResponse"),
]]
STREAM_CHUNK_SCHEMA = "CreateChatCompletionStreamResponse"
ERROR_SCHEMA = "ErrorResponse"


def schema_for(method: str, path: str) -> tuple[bool, str | None]:
    """(known route?, schema name or None for a non-JSON answer) for an OpenAI path below /v1."""
    for m, pattern, name in OPENAI_ROUTES:
        if m == method and pattern.fullmatch(path):
            return True, name
    return False, None


# ---------------------------------------------------------------------------- Azure shapes
_EXAMPLES: dict[str, Any] = {}


def azure_example(name: str, status: str = "200") -> Any:
    """The response body of an Azure example file (``get_finetuning_job`` or ``mgmt/PutDeployment``)."""
    _require_specs()
    key = f"{name}:{status}"
    if key not in _EXAMPLES:
        folder, _, stem = name.rpartition("/")
        path = (AZURE_MGMT if folder == "mgmt" else AZURE_AUTHORING) / f"{stem}.json"
        _EXAMPLES[key] = json.loads(path.read_text(encoding="utf-8"))["responses"][status]["body"]
    return _EXAMPLES[key]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _compatible(expected: str, got: str) -> bool:
    return expected == got or (expected == "number" and got == "integer")


def shape_problems(example: Any, ours: Any, *, nullable: frozenset[str] = frozenset(),
                   optional: frozenset[str] = frozenset(), path: str = "") -> list[str]:
    """Keys of ``example`` missing from ``ours`` or of an incompatible JSON type.

    Paths are dotted, with ``[]`` for array items (``data[].metrics.valid_loss``); a path in
    ``nullable`` may be null in ours, one in ``optional`` may be absent. Array items of ours
    are each compared with the first example item.
    """
    where = path or "(root)"
    want, got = _kind(example), _kind(ours)
    if got == "null" and path in nullable:
        return []
    if not _compatible(want, got):
        return [f"{where}: expected {want} like the Azure example, got {got} ({json.dumps(ours)[:120]})"]
    problems: list[str] = []
    if want == "object":
        for key, value in example.items():
            sub = f"{path}.{key}" if path else key
            if key not in ours:
                if sub not in optional:
                    problems.append(f"{sub}: missing (the Azure example has it)")
                continue
            problems += shape_problems(value, ours[key], nullable=nullable, optional=optional, path=sub)
    elif want == "array" and example:
        for item in ours:
            problems += shape_problems(example[0], item, nullable=nullable, optional=optional, path=f"{path}[]")
    return problems


# Where null is allowed in an Azure job, and why.
_AZURE_JOB_NULLABLE = frozenset({
    "fine_tuned_model",   # null until the job succeeds (same as OpenAI; FineTuningJob.fine_tuned_model)
    "finished_at",        # null until the job ends
    "trained_tokens",     # null while running (openai/openai-openapi#81)
    "result_files",       # null while running (Azure tutorial output; BerriAI/litellm#24687)
    "integrations",       # the examples show it only for a job created with W&B; null when none were asked for
})
# Checkpoint metrics of the validation split exist only when a validation file was given (hosted-apis.md §1.5).
_AZURE_CKPT_OPTIONAL = frozenset(f"data[].metrics.{k}" for k in (
    "valid_loss", "valid_mean_token_accuracy", "full_valid_loss", "full_valid_mean_token_accuracy"))

AZURE_JOB_STATES = {"created", "pending", "running", "pausing", "paused", "resuming", "succeeded", "cancelled",
                    "failed"}  # FineTuningState, 2025-04-01-preview
AZURE_FILE_STATES = {"uploaded", "pending", "running", "processed", "error", "deleting", "deleted"}  # FileState
AZURE_EVENT_LEVELS = {"info", "warning", "error"}  # LogLevel
ARM_PROVISIONING = {"Accepted", "Creating", "Deleting", "Moving", "Failed", "Succeeded", "Disabled", "Canceled"}


def _enum(value: Any, allowed: set[str], where: str) -> list[str]:
    return [] if value in allowed else [f"{where}: {value!r} is not one of {sorted(allowed)}"]


def _azure_job(body: Any, example: str, status: str = "200") -> list[str]:
    problems = shape_problems(azure_example(example, status), body, nullable=_AZURE_JOB_NULLABLE)
    return problems + _enum(body.get("status"), AZURE_JOB_STATES, "status")


def _azure_file(body: Any) -> list[str]:
    return shape_problems(azure_example("get_file"), body) + _enum(body.get("status"), AZURE_FILE_STATES, "status")


def _azure_upload(body: Any) -> list[str]:
    # OpenAI's Upload object; the File inside it is rendered the Azure way (status "pending" etc.).
    rest = {k: v for k, v in body.items() if k != "file"} if isinstance(body, dict) else body
    problems = schema_problems("Upload", rest)
    if isinstance(body, dict) and body.get("file") is not None:
        problems += [f"file.{p}" for p in _azure_file(body["file"])]
    return problems


def _azure_list(body: Any, item_check: Callable[[Any], list[str]]) -> list[str]:
    problems = shape_problems({"object": "list", "data": [], "has_more": False}, body)
    for i, item in enumerate(body.get("data") or []):
        problems += [f"data[{i}].{p}" for p in item_check(item)]
    return problems


def _azure_events(body: Any) -> list[str]:
    problems = shape_problems(azure_example("get_finetuning_job_events"), body)
    for event in body.get("data") or []:
        problems += _enum(event.get("level"), AZURE_EVENT_LEVELS, f"event {event.get('id')} level")
    return problems


def _azure_checkpoints(body: Any) -> list[str]:
    return shape_problems(azure_example("get_finetuning_job_checkpoints"), body, optional=_AZURE_CKPT_OPTIONAL)


def _arm_deployment(body: Any, example: str, status: str = "200") -> list[str]:
    problems = shape_problems(azure_example(example, status), body)
    return problems + _enum((body.get("properties") or {}).get("provisioningState"), ARM_PROVISIONING,
                            "properties.provisioningState")


def _azure_error(body: Any) -> list[str]:
    return shape_problems({"error": {"code": "notFound", "message": "..."}}, body)


def _openai_schema(name: str) -> Callable[[Any], list[str]]:
    return lambda body: schema_problems(name, body)


_ARM_ACCOUNT = r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/accounts/[^/]+"
# (method, full path, status or None for any 2xx) -> check. Chat answers have OpenAI's shape on Azure too.
AZURE_ROUTES: list[tuple[str, re.Pattern[str], Callable[[Any], list[str]] | None]] = [
    (m, re.compile(p), c) for m, p, c in [
        ("POST", r"/openai/files", _azure_file),
        ("GET", r"/openai/files", lambda b: _azure_list(b, _azure_file)),
        ("GET", rf"/openai/files/{_ID}", _azure_file),
        ("DELETE", rf"/openai/files/{_ID}", lambda b: shape_problems({"id": "", "object": "file", "deleted": True}, b)),
        ("GET", rf"/openai/files/{_ID}/content", None),
        ("POST", r"/openai/uploads", _azure_upload),
        ("POST", rf"/openai/uploads/{_ID}/parts", _openai_schema("UploadPart")),
        ("POST", rf"/openai/uploads/{_ID}/(complete|cancel)", _azure_upload),
        ("POST", r"/openai/fine_tuning/jobs", lambda b: _azure_job(b, "post_finetuning_job", "201")),
        ("GET", r"/openai/fine_tuning/jobs", lambda b: _azure_list(b, lambda j: _azure_job(j, "get_finetuning_job"))),
        ("GET", rf"/openai/fine_tuning/jobs/{_ID}", lambda b: _azure_job(b, "get_finetuning_job")),
        ("POST", rf"/openai/fine_tuning/jobs/{_ID}/pause", lambda b: _azure_job(b, "pause_finetuning_job")),
        ("POST", rf"/openai/fine_tuning/jobs/{_ID}/(cancel|resume)", lambda b: _azure_job(b, "get_finetuning_job")),
        ("GET", rf"/openai/fine_tuning/jobs/{_ID}/events", _azure_events),
        ("GET", rf"/openai/fine_tuning/jobs/{_ID}/checkpoints", _azure_checkpoints),
        ("GET", r"/openai/models", _openai_schema("ListModelsResponse")),
        ("GET", r"/openai/models/.+", _openai_schema("Model")),
        ("DELETE", r"/openai/models/.+", _openai_schema("DeleteModelResponse")),
        ("POST", rf"/openai/deployments/{_ID}/chat/completions", _openai_schema("CreateChatCompletionResponse")),
        ("PUT", rf"{_ARM_ACCOUNT}/deployments/{_ID}", None),  # by status code, below
        ("GET", rf"{_ARM_ACCOUNT}/deployments/{_ID}", lambda b: _arm_deployment(b, "mgmt/GetDeployment")),
        ("GET", rf"{_ARM_ACCOUNT}/deployments",
         lambda b: [p for i, d in enumerate(b.get("value", [None])) for p in
                    ([f"value[{i}].{q}" for q in _arm_deployment(d, "mgmt/GetDeployment")] if isinstance(d, dict)
                     else [f"value: expected a list of deployments, got {json.dumps(b)[:120]}"])]),
        ("DELETE", rf"{_ARM_ACCOUNT}/deployments/{_ID}", None),  # 200/204, no body
        ("GET", r"/subscriptions/[^/]+/providers/Microsoft\.CognitiveServices/locations/[^/]+/operationResults/[^/]+",
         lambda b: shape_problems({"id": "", "name": "", "status": ""}, b)
         + _enum(b.get("status"), {"InProgress", "Succeeded", "Failed", "Canceled"}, "status")),
    ]]


# ---------------------------------------------------------------------------- the recorder
class _TeeStream(httpx.SyncByteStream):
    """Passes an SSE body through to the client and checks its chunks when it is closed."""

    def __init__(self, inner: Any, on_close: Callable[[bytes], None]) -> None:
        self._inner = inner
        self._buffer = bytearray()
        self._on_close = on_close
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._buffer += chunk
            yield chunk

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            if not self._done:
                self._done = True
                self._on_close(bytes(self._buffer))


@dataclass(frozen=True)
class Dialect:
    """Another API the recorder checks: responses whose path starts with ``prefix`` (its
    paths are given below the prefix to each check)."""

    prefix: str
    json: Callable[[str, str, int, Any], tuple[str, list[str]]]  # (method, path, status, body) -> (schema, problems)
    chunk: Callable[[Any], tuple[str, list[str]]]  # one chunk of a stream -> (schema, problems)
    empty_ok: Callable[[str, str, int], bool]  # an empty body is the answer (a 302, a 204)
    binary_ok: Callable[[str, str, int], bool]  # a non-JSON body is the answer (file content)


class WireRecorder:
    """Checks every emulator response an httpx client receives; see the module docstring.
    ``dialects`` adds APIs beyond OpenAI's and Azure's."""

    def __init__(self, dialects: tuple[Dialect, ...] = ()) -> None:
        _require_specs()
        components()  # load and patch once, up front
        self.dialects = dialects
        self.failures: list[str] = []
        self.checked: list[str] = []  # "METHOD /path -> STATUS schema" of everything validated

    def _dialect(self, path: str) -> tuple[Dialect, str] | None:
        for d in self.dialects:
            if path.startswith(d.prefix):
                return d, path[len(d.prefix):]
        return None

    # -- wiring
    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for ``openai.OpenAI(http_client=...)`` (or for direct calls)."""
        hooks = kwargs.pop("event_hooks", {}) or {}
        hooks = {**hooks, "response": [*hooks.get("response", []), self.hook]}
        return httpx.Client(event_hooks=hooks, **kwargs)

    def hook(self, response: httpx.Response) -> None:
        request = response.request
        path = request.url.path
        label = f"{request.method} {path} -> {response.status_code}"
        ctype = response.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            response.stream = _TeeStream(response.stream, lambda raw: self._check_sse(label, path, raw))
            return
        response.read()
        if not response.content:
            self._check_empty(label, request.method, path, response.status_code)
            return
        if not ctype.startswith("application/json"):
            self._check_binary(label, request.method, path, response.status_code)
            return
        try:
            body = response.json()
        except ValueError as exc:
            self.failures.append(f"{label}: body is not valid JSON ({exc})")
            return
        self.check(request.method, path, response.status_code, body, label=label)

    # -- checks
    def check(self, method: str, path: str, status: int, body: Any, *, label: str | None = None) -> None:
        label = label or f"{method} {path} -> {status}"
        found = self._dialect(path)
        if found is not None:
            name, problems = found[0].json(method, found[1], status, body)
            self.checked.append(f"{label} {name}")
            self.failures += [f"{label}: {p}" for p in problems]
            return
        if path.startswith("/v1/") or path == "/v1":
            problems = self._check_openai(method, path[3:], status, body, label)
        elif path.startswith(("/openai/", "/subscriptions/")):
            problems = self._check_azure(method, path, status, body, label)
        else:
            return  # /health, /_emulator: not part of either API
        self.failures += [f"{label}: {p}" for p in problems]

    def _check_openai(self, method: str, path: str, status: int, body: Any, label: str) -> list[str]:
        if status >= 400:
            self.checked.append(f"{label} {ERROR_SCHEMA}")
            return schema_problems(ERROR_SCHEMA, body)
        known, name = schema_for(method, path)
        if not known:
            return ["no response schema is mapped for this route (add it to OPENAI_ROUTES)"]
        if name is None:
            return [f"expected a non-JSON body, got JSON {json.dumps(body)[:120]}"]
        self.checked.append(f"{label} {name}")
        return schema_problems(name, body)

    def _check_azure(self, method: str, path: str, status: int, body: Any, label: str) -> list[str]:
        if status >= 400:
            self.checked.append(f"{label} azure-error")
            return _azure_error(body)
        for m, pattern, check in AZURE_ROUTES:
            if m == method and pattern.fullmatch(path):
                if method == "PUT" and check is None:
                    self.checked.append(f"{label} mgmt/PutDeployment:{status}")
                    return _arm_deployment(body, "mgmt/PutDeployment", str(status))
                if check is None:
                    return [f"expected no JSON body, got {json.dumps(body)[:120]}"]
                self.checked.append(f"{label} azure-shape")
                return check(body)
        return ["no Azure shape is mapped for this route (add it to AZURE_ROUTES)"]

    def _check_empty(self, label: str, method: str, path: str, status: int) -> None:
        found = self._dialect(path)
        if found is not None:
            if not found[0].empty_ok(method, found[1], status):
                self.failures.append(f"{label}: empty body")
            return
        if status in (204, 304) or (method == "DELETE" and path.startswith("/subscriptions/") and status == 200):
            return
        if path.startswith(("/v1/", "/openai/", "/subscriptions/")):
            self.failures.append(f"{label}: empty body")

    def _check_binary(self, label: str, method: str, path: str, status: int) -> None:
        found = self._dialect(path)
        if found is not None:
            if not found[0].binary_ok(method, found[1], status):
                self.failures.append(f"{label}: a non-JSON body where JSON was expected")
            return
        if status < 400 and path.endswith("/content") and method == "GET":
            return
        if path.startswith(("/v1/", "/openai/", "/subscriptions/")):
            self.failures.append(f"{label}: a non-JSON body where JSON was expected")

    def _check_sse(self, label: str, path: str, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        datas = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        if not datas or datas[-1] != "[DONE]":
            self.failures.append(f"{label}: the stream does not end with 'data: [DONE]'")
        for i, data in enumerate(d for d in datas if d != "[DONE]"):
            try:
                chunk = json.loads(data)
            except ValueError as exc:
                self.failures.append(f"{label}: SSE chunk {i} is not JSON ({exc})")
                continue
            found = self._dialect(path)
            if found is not None:
                name, problems = found[0].chunk(chunk)
            else:
                name = ERROR_SCHEMA if isinstance(chunk, dict) and "error" in chunk else STREAM_CHUNK_SCHEMA
                problems = schema_problems(name, chunk)
            self.checked.append(f"{label} chunk {i} {name}")
            self.failures += [f"{label}: chunk {i}: {p}" for p in problems]

    def assert_clean(self) -> None:
        if self.failures:
            shown = "\n  ".join(self.failures[:40])
            more = f"\n  ... and {len(self.failures) - 40} more" if len(self.failures) > 40 else ""
            raise AssertionError(f"{len(self.failures)} emulator response(s) do not conform:\n  {shown}{more}")


@pytest.fixture
def wire() -> Iterator[WireRecorder]:
    """A :class:`WireRecorder`; the test fails at teardown if any response did not conform."""
    recorder = WireRecorder()
    yield recorder
    recorder.assert_clean()
