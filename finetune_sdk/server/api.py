"""The OpenAI-compatible data plane — files, uploads, fine-tuning jobs, models, chat — over
any :class:`~finetune_sdk.providers.Provider`, in the OpenAI or the Azure dialect.

One router factory serves both: OpenAI mounts it at ``/v1``, Azure at ``/openai`` (with a
required ``api-version`` and Azure's status codes and shapes; see wire.py).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi import File as FormFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..errors import FineTuneError, NotFoundError, ProviderError, UnsupportedOperation
from ..providers.base import Provider
from ..types import Hyperparameters, JobSpec
from .errors import ApiError, envelope, from_provider_error
from .schemas import ChatCompletionRequest, CompleteUploadRequest, CreateFineTuningJobRequest, CreateUploadRequest
from .uploads import UploadStore, safe_filename
from .wire import Wire, page

__all__ = ["Backend", "data_plane_router"]

_MAX_PART = 64 * 1024 * 1024
_DEPLOYMENT_NOT_FOUND = ("The API deployment for this resource does not exist. If you created the deployment "
                         "within the last 5 minutes, please wait a moment and try again.")


@dataclass
class Backend:
    """One provider served in one dialect."""

    provider: Provider
    dialect: str  # "openai" | "azure"
    organization: str = "org-emulator"
    require_training_type: bool = True
    wire: Wire = field(init=False)
    uploads: UploadStore = field(init=False)
    file_expiry: dict[str, int] = field(init=False, default_factory=dict)  # file id -> expires_at (expires_after)

    def __post_init__(self) -> None:
        self.wire = Wire(self.dialect, self.organization)  # type: ignore[arg-type]
        clock = getattr(self.provider, "clock", None)
        self.uploads = UploadStore(now=clock.now if clock is not None else time.time)

    def now(self) -> int:
        clock = getattr(self.provider, "clock", None)
        return int(clock.now() if clock is not None else time.time())

    def file(self, f: Any) -> dict[str, Any]:
        return self.wire.file(f, expires_at=self.file_expiry.get(f.id))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ProviderError as exc:
        raise from_provider_error(exc) from None
    except UnsupportedOperation as exc:
        raise ApiError(400, str(exc), code="unsupported_operation") from None
    except FineTuneError as exc:  # e.g. a base model that cannot be resolved: the request's fault
        raise ApiError(400, str(exc), code=getattr(exc, "code", None)) from None


def _slice(items: list[dict[str, Any]], after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise ApiError(400, f"invalid after: {after!r}, no such object in this list", param="after")
        start = ids.index(after) + 1
    chunk = items[start:start + limit]
    return chunk, start + limit < len(items)


def _unsupported(what: str) -> ApiError:
    return ApiError(400, f"{what} is not supported by this server.", code="unsupported_operation")


def data_plane_router(b: Backend, *, auth: Callable[..., Any], api_version: Callable[..., Any] | None = None,
                      pause_version: Callable[..., Any] | None = None) -> APIRouter:
    deps = [Depends(api_version)] if api_version else []
    router = APIRouter(dependencies=deps + [Depends(auth)])
    azure = b.dialect == "azure"
    created = 201 if azure else 200

    # ------------------------------------------------------------------ files
    # expires_after.seconds: 3600..2592000 on OpenAI, 1209600..2592000 on Azure (hosted-apis.md §1.2, §3.3).
    min_expiry = 1209600 if azure else 3600

    @router.post("/files", summary="Upload a file")
    def upload_file(file: UploadFile = FormFile(...), purpose: str = Form(...),
                    expires_anchor: str | None = Form(None, alias="expires_after[anchor]"),
                    expires_seconds: str | None = Form(None, alias="expires_after[seconds]")) -> JSONResponse:
        if purpose not in ("assistants", "batch", "fine-tune", "vision", "user_data", "evals"):
            raise ApiError(400, f"invalid purpose: {purpose!r}, expected one of assistants, batch, fine-tune, vision, "
                                f"user_data, evals", param="purpose")
        seconds = None
        if expires_anchor is not None or expires_seconds is not None:
            if expires_anchor != "created_at":
                raise ApiError(400, f"invalid expires_after.anchor: {expires_anchor!r}, expected 'created_at'",
                               param="expires_after.anchor", code="invalidPayload" if azure else None)
            try:
                seconds = int(expires_seconds or "")
            except ValueError:
                seconds = -1
            if not min_expiry <= seconds <= 2592000:
                raise ApiError(400, f"invalid expires_after.seconds: {expires_seconds!r}, expected an integer between "
                                    f"{min_expiry} and 2592000", param="expires_after.seconds",
                               code="invalidPayload" if azure else None)
        name = safe_filename(file.filename)
        with tempfile.TemporaryDirectory(prefix="finetune-upload-") as tmp:
            path = Path(tmp) / name
            with open(path, "wb") as out:
                while chunk := file.file.read(1 << 20):
                    out.write(chunk)
            f = _call(b.provider.upload, path, purpose=purpose)
        if seconds is not None:
            b.file_expiry[f.id] = int(f.created_at.timestamp()) + seconds if f.created_at else b.now() + seconds
        return _json(b.file(f), created)

    @router.get("/files", summary="List files")
    def list_files(after: str | None = None, limit: int = Query(10000, ge=1, le=10000),
                   order: str = Query("desc", pattern="^(asc|desc)$"), purpose: str | None = None) -> JSONResponse:
        items = [b.file(f) for f in _call(b.provider.list_files, purpose=purpose)]
        if order == "desc":
            items.reverse()
        chunk, more = _slice(items, after, limit)
        return _json(page(chunk, more, with_ids=True))

    @router.get("/files/{file_id}", summary="Retrieve a file")
    def get_file(file_id: str) -> JSONResponse:
        return _json(b.file(_call(b.provider.get_file, file_id)))

    @router.delete("/files/{file_id}", summary="Delete a file")
    def delete_file(file_id: str) -> JSONResponse:
        _call(b.provider.delete_file, file_id)
        b.file_expiry.pop(file_id, None)
        return _json({"id": file_id, "object": "file", "deleted": True})

    @router.get("/files/{file_id}/content", summary="Download a file's content")
    def file_content(file_id: str) -> Response:
        return Response(_call(b.provider.file_content, file_id), media_type="application/octet-stream")

    # ------------------------------------------------------------------ uploads (large files, in parts)
    @router.post("/uploads", summary="Create an upload")
    def create_upload(body: CreateUploadRequest) -> JSONResponse:
        return _json(b.uploads.create(body), created)

    @router.post("/uploads/{upload_id}/parts", summary="Add a part to an upload")
    def add_part(upload_id: str, data: UploadFile = FormFile(...)) -> JSONResponse:
        return _json(b.uploads.add_part(upload_id, data.file, _MAX_PART), created)

    @router.post("/uploads/{upload_id}/complete", summary="Complete an upload")
    def complete_upload(upload_id: str, body: CompleteUploadRequest) -> JSONResponse:
        def store(path: Path, purpose: str) -> dict[str, Any]:
            f = _call(b.provider.upload, path, purpose=purpose)
            seconds = b.uploads.file_expires_after(upload_id)
            if seconds is not None:
                b.file_expiry[f.id] = (int(f.created_at.timestamp()) if f.created_at else b.now()) + seconds
            return b.file(f)

        return _json(b.uploads.complete(upload_id, body, store))

    @router.post("/uploads/{upload_id}/cancel", summary="Cancel an upload")
    def cancel_upload(upload_id: str) -> JSONResponse:
        return _json(b.uploads.cancel(upload_id))

    # ------------------------------------------------------------------ fine-tuning jobs
    @router.post("/fine_tuning/jobs", summary="Create a fine-tuning job")
    def create_job(body: CreateFineTuningJobRequest, request: Request) -> JSONResponse:
        if azure and b.require_training_type and body.trainingType is None:
            # What Azure answers when trainingType is missing (BerriAI/litellm#24687).
            raise ApiError(400, "The specified base model does not support fine-tuning.", code="invalidPayload",
                           param="model")
        if not azure and body.trainingType is not None:
            raise ApiError(400, f"invalid trainingType: {body.trainingType!r}, extra inputs are not permitted",
                           param="trainingType")
        for key in ("training_file", "validation_file"):
            fid = getattr(body, key)
            if fid is None:
                continue
            try:
                f = b.provider.get_file(fid)
            except NotFoundError:
                raise ApiError(400, f"invalid {key}: {fid}", param=key,
                               code="invalidPayload" if azure else None) from None
            except ProviderError as exc:
                raise from_provider_error(exc) from None
            if f.purpose != "fine-tune":
                raise ApiError(400, f"invalid {key}: {fid} has purpose {f.purpose!r}; upload it with purpose "
                                    f"'fine-tune'", param=key, code="invalidPayload" if azure else None)
        method = body.method.type if body.method else "supervised"
        hyper = body.hyperparameters.model_dump(exclude_none=True) if body.hyperparameters else {}
        if body.method is not None:
            hyper.update(body.method.hyperparameters())
        extra: dict[str, Any] = {}
        if body.trainingType is not None:
            extra["trainingType"] = body.trainingType
        if body.method is not None and body.method.type == "reinforcement" and body.method.reinforcement:
            extra["grader"] = body.method.reinforcement.grader
        spec = JobSpec(model=body.model, training_file=body.training_file, validation_file=body.validation_file,
                       method=method, hyperparameters=Hyperparameters(**hyper), suffix=body.suffix, seed=body.seed,
                       metadata=body.metadata or {},
                       integrations=[i.model_dump(exclude_none=True) for i in body.integrations or []], extra=extra)
        job = _call(b.provider.create_job, spec)
        # Location: the job's own URL in this dialect (url_for("get_job") would name the first router
        # mounted, i.e. /v1/..., when both dialects are served).
        location = f"{str(request.base_url).rstrip('/')}{request.url.path.rstrip('/')}/{job.id}"
        headers = {"location": location} if azure else None
        return _json(b.wire.job(job), created, headers)

    @router.get("/fine_tuning/jobs", summary="List fine-tuning jobs")
    def list_jobs(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> JSONResponse:
        metadata: dict[str, str] = {}
        only_without = False
        for key, value in request.query_params.multi_items():
            if key.startswith("metadata[") and key.endswith("]"):
                metadata[key[9:-1]] = value
            elif key == "metadata" and value == "null":
                only_without = True
        jobs = _call(b.provider.list_jobs, metadata=metadata or None)
        if only_without:
            jobs = [j for j in jobs if not j.metadata]
        chunk, more = _slice([b.wire.job(j) for j in jobs], after, limit)
        return _json(page(chunk, more))

    @router.get("/fine_tuning/jobs/{job_id}", summary="Retrieve a fine-tuning job", name="get_job")
    def get_job(job_id: str) -> JSONResponse:
        return _json(b.wire.job(_call(b.provider.get_job, job_id)))

    @router.post("/fine_tuning/jobs/{job_id}/cancel", summary="Cancel a fine-tuning job")
    def cancel_job(job_id: str) -> JSONResponse:
        return _json(b.wire.job(_call(b.provider.cancel_job, job_id)))

    pause_deps = [Depends(pause_version)] if pause_version else []

    @router.post("/fine_tuning/jobs/{job_id}/pause", summary="Pause a fine-tuning job", dependencies=pause_deps)
    def pause_job(job_id: str) -> JSONResponse:
        return _json(b.wire.job(_call(b.provider.pause_job, job_id)))

    @router.post("/fine_tuning/jobs/{job_id}/resume", summary="Resume a fine-tuning job", dependencies=pause_deps)
    def resume_job(job_id: str) -> JSONResponse:
        return _json(b.wire.job(_call(b.provider.resume_job, job_id)))

    @router.get("/fine_tuning/jobs/{job_id}/events", summary="List a job's events, newest first")
    def list_events(job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> JSONResponse:
        events = [b.wire.event(e) for e in reversed(_call(b.provider.list_events, job_id))]
        chunk, more = _slice(events, after, limit)
        return _json(page(chunk, more))

    @router.get("/fine_tuning/jobs/{job_id}/checkpoints", summary="List a job's checkpoints, newest first")
    def list_checkpoints(job_id: str, after: str | None = None,
                         limit: int = Query(10, ge=1, le=100)) -> JSONResponse:
        ckpts = [b.wire.checkpoint(c, job_id) for c in reversed(_call(b.provider.list_checkpoints, job_id))]
        chunk, more = _slice(ckpts, after, limit)
        return _json(page(chunk, more, with_ids=True))

    @router.get("/fine_tuning/checkpoints/{checkpoint}/permissions", summary="List checkpoint permissions "
                "(not supported)")
    def list_checkpoint_permissions(checkpoint: str) -> JSONResponse:
        raise _unsupported("Sharing checkpoints across projects (checkpoint permissions)")

    @router.post("/fine_tuning/checkpoints/{checkpoint}/permissions", summary="Create checkpoint permissions "
                 "(not supported)")
    def create_checkpoint_permissions(checkpoint: str) -> JSONResponse:
        raise _unsupported("Sharing checkpoints across projects (checkpoint permissions)")

    @router.delete("/fine_tuning/checkpoints/{checkpoint}/permissions/{permission_id}",
                   summary="Delete a checkpoint permission (not supported)")
    def delete_checkpoint_permission(checkpoint: str, permission_id: str) -> JSONResponse:
        raise _unsupported("Sharing checkpoints across projects (checkpoint permissions)")

    @router.post("/fine_tuning/alpha/graders/{action}", summary="Graders (not supported)")
    def graders(action: str) -> JSONResponse:
        raise _unsupported("Running and validating graders")

    # ------------------------------------------------------------------ models
    @router.get("/models", summary="List models")
    def list_models() -> JSONResponse:
        return _json({"object": "list", "data": [b.wire.model(m) for m in _call(b.provider.list_models)]})

    @router.get("/models/{model:path}", summary="Retrieve a model")
    def get_model(model: str) -> JSONResponse:
        for m in _call(b.provider.list_models):
            if m.id == model:
                return _json(b.wire.model(m))
        raise ApiError(404, f"The model '{model}' does not exist", code="model_not_found", param="model")

    @router.delete("/models/{model:path}", summary="Delete a fine-tuned model")
    def delete_model(model: str) -> JSONResponse:
        _call(b.provider.delete_model, model)
        return _json({"id": model, "object": "model", "deleted": True})

    # ------------------------------------------------------------------ chat
    def chat(body: ChatCompletionRequest, model: str) -> Response:
        if body.n is not None and body.n > 1:
            raise ApiError(400, f"invalid n: {body.n}, only n=1 is supported by this server", param="n")
        if body.stream_options is not None and not body.stream:
            raise ApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                           param="stream_options")
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        params = body.model_dump(exclude_none=True, exclude={"messages", "model", "stream", "stream_options"})
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = b.now()
        if not body.stream:
            resp = _call(b.provider.chat, model, messages, **params)
            return _json(b.wire.completion(resp, completion_id=completion_id, created=created, model=model))
        stream = _call(b.provider.chat_stream, model, messages, **params)
        try:
            first = _call(next, stream)
        except StopIteration:
            first = None
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def deltas() -> Iterator[Any]:
            if first is not None:
                yield first
            yield from stream

        def sse() -> Iterator[bytes]:
            try:
                for chunk in b.wire.chunks(deltas(), completion_id=completion_id, created=created, model=model,
                                           include_usage=include_usage):
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
            except ProviderError as exc:  # after the headers: report in-band, as the API does
                yield f"data: {json.dumps(envelope(from_provider_error(exc), b.dialect))}\n\n".encode()
            except Exception as exc:
                failure = ApiError(500, f"The server failed while generating: {type(exc).__name__}.")
                yield f"data: {json.dumps(envelope(failure, b.dialect))}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    if azure:
        @router.post("/deployments/{deployment}/chat/completions", summary="Chat with a deployment")
        def deployment_chat(body: ChatCompletionRequest, deployment: str = PathParam(...)) -> Response:
            try:
                dep = b.provider.get_deployment(deployment)
            except NotFoundError:
                dep = None
            except ProviderError as exc:
                raise from_provider_error(exc) from None
            if dep is None or not dep.ready:
                raise ApiError(404, _DEPLOYMENT_NOT_FOUND, code="DeploymentNotFound")
            return chat(body, dep.model)
    else:
        @router.post("/chat/completions", summary="Create a chat completion")
        def chat_completions(body: ChatCompletionRequest) -> Response:
            if not body.model:
                raise ApiError(400, "you must provide a model parameter", param="model")
            return chat(body, body.model)

    return router
