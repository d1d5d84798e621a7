"""Datasets and fine-tuning jobs: ``/fireworks/v1/accounts/{account}/datasets``,
``.../supervisedFineTuningJobs`` and ``.../dpoJobs``, and the pre-signed URLs they hand out
(dataset upload and download, the metrics file).

Routes and shapes follow the official SDK's ``resources/`` and ``types/``. ``:cancel`` on
supervised jobs is in the fireworks-ai 1.2.30 SDK but absent from 1.2.3 and from the
public API reference: unverified; it answers ``{}`` here, as the SDK's ``object`` return
type allows. The metrics file is JSON lines ``{"step", "timestamp", "data": {"train/loss",
...}}``: a shape inferred from third-party code, unverified.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi import File as FormFile
from fastapi.responses import JSONResponse, Response

from ...types import Hyperparameters, Job, JobSpec
from ..api import _call
from ..errors import ApiError
from ..uploads import safe_filename
from .schemas import CreateDataset, CreateDpoJob, CreateSftJob, Empty, UploadEndpointRequest, _Training
from .state import DatasetRec, JobMeta, SignedUpload, State
from .wire import ID_RULE, page, rfc3339, short_id, valid_id

__all__ = ["training_router", "signed_router", "ACCOUNT"]

ACCOUNT = "/v1/accounts/{account}"
_MAX_DIRECT_UPLOAD = 150 * 1024 * 1024  # ":upload ... can handle file sizes up to 150Mb" (SDK docstring)
_ORDER = {"": "name", "name": "name", "createTime": "createTime", "create_time": "createTime"}


def check_id(value: str, what: str) -> str:
    if not valid_id(value):
        raise ApiError(400, f"invalid {what} {value!r}: use {ID_RULE}", code="INVALID_ARGUMENT", param=what)
    return value


def ordered(items: list[dict[str, Any]], order_by: str | None, filter: str | None) -> list[dict[str, Any]]:
    """AIP-132 ordering by name (the documented default) or createTime, ascending or ``desc``."""
    if filter:
        raise ApiError(400, "filter expressions are not supported by the emulator; list everything and filter "
                            "on the client", code="INVALID_ARGUMENT", param="filter")
    field, _, direction = (order_by or "").strip().partition(" ")
    if field not in _ORDER or direction.strip() not in ("", "desc", "asc"):
        raise ApiError(400, f"invalid orderBy {order_by!r}: use name or createTime, optionally with ' desc'",
                       code="INVALID_ARGUMENT", param="orderBy")
    key = _ORDER[field]
    return sorted(items, key=lambda item: str(item.get(key) or ""), reverse=direction.strip() == "desc")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def training_router(st: State, *, auth: Callable[..., Any]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(auth)])

    def mine(account: str) -> None:
        if account != st.account:
            raise ApiError(403, f"Permission denied on account {account!r}.", code="PERMISSION_DENIED")

    def dataset_of(name: str, param: str) -> DatasetRec:
        did = short_id(name, st.account, "datasets")
        if did is None:
            raise ApiError(400, f"invalid {param} {name!r}: expected accounts/{st.account}/datasets/<id>",
                           code="INVALID_ARGUMENT", param=param)
        rec = st.dataset(did)
        if rec.file_id is None:
            raise ApiError(400, f"Dataset {name} has no uploaded file yet (state UPLOADING).",
                           code="FAILED_PRECONDITION", param=param)
        return rec

    # ------------------------------------------------------------------ datasets
    @router.post(ACCOUNT + "/datasets", summary="Create a dataset")
    def create_dataset(account: str, body: CreateDataset) -> JSONResponse:
        mine(account)
        did = check_id(body.datasetId, "datasetId")
        if body.sourceDatasetId:
            raise ApiError(400, "sourceDatasetId (deriving a dataset) is not supported by the emulator",
                           code="INVALID_ARGUMENT", param="sourceDatasetId")
        with st.lock:
            if did in st.datasets:
                raise ApiError(409, f"Dataset {st.name('datasets', did)} already exists.", code="ALREADY_EXISTS")
            d = body.dataset
            rec = DatasetRec(did, st.now(), display_name=d.displayName, format=d.format or "CHAT",
                             example_count=d.exampleCount, user_uploaded=d.userUploaded is not None)
            st.datasets[did] = rec
        return JSONResponse(st.render_dataset(rec))

    @router.get(ACCOUNT + "/datasets", summary="List datasets")
    def list_datasets(account: str, pageSize: int | None = None, pageToken: str | None = None,
                      filter: str | None = None, orderBy: str | None = None,
                      readMask: str | None = None) -> JSONResponse:
        mine(account)
        items = ordered([st.render_dataset(r) for r in list(st.datasets.values())], orderBy, filter)
        return JSONResponse(page(items, "datasets", pageSize, pageToken))

    @router.get(ACCOUNT + "/datasets/{did}:getDownloadEndpoint", summary="Signed URLs to download a dataset")
    def download_endpoint(account: str, did: str, request: Request) -> JSONResponse:
        mine(account)
        rec = st.dataset(did)
        if rec.file_id is None:
            raise ApiError(400, f"Dataset {st.name('datasets', did)} has no file yet.", code="FAILED_PRECONDITION")
        token = secrets.token_urlsafe(16)
        st.downloads[token] = did
        return JSONResponse({"filenameToSignedUrls": {rec.filename or f"{did}.jsonl":
                                                      f"{_base(request)}/fireworks/_signed/download/{token}"}})

    @router.get(ACCOUNT + "/datasets/{did}", summary="Get a dataset")
    def get_dataset(account: str, did: str, readMask: str | None = None) -> JSONResponse:
        mine(account)
        return JSONResponse(st.render_dataset(st.dataset(did)))

    @router.delete(ACCOUNT + "/datasets/{did}", summary="Delete a dataset")
    def delete_dataset(account: str, did: str) -> JSONResponse:
        mine(account)
        with st.lock:
            rec = st.dataset(did)
            del st.datasets[did]
        if rec.file_id:
            _call(st.provider.delete_file, rec.file_id)
        return JSONResponse({})

    def store(rec: DatasetRec, path: Path, filename: str) -> None:
        f = _call(st.provider.upload, path, purpose="fine-tune")
        with path.open("rb") as fh:
            lines = sum(1 for line in fh if line.strip())
        with st.lock:
            rec.file_id, rec.filename, rec.updated = f.id, filename, st.now()
            rec.example_count = rec.example_count or str(lines)

    def unfilled(did: str) -> DatasetRec:
        rec = st.dataset(did)
        if rec.file_id is not None:
            raise ApiError(400, f"Dataset {st.name('datasets', did)} already has its file; create a new dataset.",
                           code="FAILED_PRECONDITION")
        return rec

    @router.post(ACCOUNT + "/datasets/{did}:upload", summary="Upload a dataset file (up to 150 MB)")
    def upload(account: str, did: str, file: UploadFile = FormFile(...)) -> JSONResponse:
        mine(account)
        rec = unfilled(did)
        name = safe_filename(file.filename)
        path = st.uploads.dir / f"direct-{secrets.token_hex(8)}"
        size = 0
        try:
            with path.open("wb") as out:
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > _MAX_DIRECT_UPLOAD:
                        raise ApiError(400, "The file is over 150 MB: use :getUploadEndpoint and :validateUpload.",
                                       code="INVALID_ARGUMENT", param="file")
                    out.write(chunk)
            store(rec, path, name)
        finally:
            path.unlink(missing_ok=True)
        return JSONResponse({"id": did, "bytes": size, "created_at": int(st.now()), "filename": name,
                             "object": "file", "purpose": "fine-tune"})

    @router.post(ACCOUNT + "/datasets/{did}:getUploadEndpoint", summary="Signed URLs to upload a large dataset")
    def upload_endpoint(account: str, did: str, body: UploadEndpointRequest, request: Request) -> JSONResponse:
        mine(account)
        unfilled(did)
        if len(body.filenameToSize) != 1:
            raise ApiError(400, "filenameToSize must name exactly one file", code="INVALID_ARGUMENT",
                           param="filenameToSize")
        (filename, size), = body.filenameToSize.items()
        token = secrets.token_urlsafe(16)
        st.uploads.pending[token] = SignedUpload(did, safe_filename(filename), int(size))
        return JSONResponse({"filenameToSignedUrls": {filename: f"{_base(request)}/fireworks/_signed/upload/{token}"}})

    @router.post(ACCOUNT + "/datasets/{did}:validateUpload", summary="Finish a signed-URL upload")
    def validate_upload(account: str, did: str, body: Empty) -> JSONResponse:
        mine(account)
        rec = unfilled(did)
        found = [(t, u) for t, u in st.uploads.pending.items() if u.dataset == did and u.path is not None]
        if not found:
            raise ApiError(400, f"Nothing was uploaded to the signed URL of {st.name('datasets', did)}.",
                           code="FAILED_PRECONDITION")
        token, up = found[-1]
        assert up.path is not None
        try:
            store(rec, up.path, up.filename)
        finally:
            up.path.unlink(missing_ok=True)
            st.uploads.pending.pop(token, None)
        return JSONResponse({})

    # ------------------------------------------------------------------ jobs
    def create(kind: str, jid: str | None, body: CreateSftJob | CreateDpoJob, training: _Training,
               evaluation: str | None, request: Request) -> JSONResponse:
        if jid is not None:
            check_id(jid, "supervisedFineTuningJobId" if kind == "sft" else "dpoJobId")
        rec = dataset_of(body.dataset, "dataset")
        val = dataset_of(evaluation, "evaluationDataset") if evaluation else None
        if bool(training.baseModel) == bool(training.warmStartFrom):
            raise ApiError(400, "exactly one of baseModel and warmStartFrom must be set", code="INVALID_ARGUMENT",
                           param="baseModel")
        if training.warmStartFrom:
            raise ApiError(400, "warmStartFrom (continuing from a LoRA) is not supported by the emulator",
                           code="INVALID_ARGUMENT", param="warmStartFrom")
        output = training.outputModel
        if output is not None:
            output = output if "/" not in output else short_id(output, st.account, "models") or ""
            check_id(output, "outputModel")
        beta = None
        if isinstance(body, CreateDpoJob):
            loss = body.lossConfig
            if loss is not None and loss.method not in (None, "DPO", "ORPO"):
                raise ApiError(400, f"lossConfig.method {loss.method} is not a preference loss; use DPO or ORPO",
                               code="INVALID_ARGUMENT", param="lossConfig.method")
            beta = loss.dpo.beta if loss is not None and loss.dpo is not None else None
            if beta is not None and not 0 < beta < 0.5:
                raise ApiError(400, f"invalid lossConfig.dpo.beta {beta}: it must be > 0 and < 0.5",
                               code="INVALID_ARGUMENT", param="lossConfig.dpo.beta")
        spec = JobSpec(model=training.baseModel or "", training_file=rec.file_id or "",
                       validation_file=val.file_id if val else None, method="supervised" if kind == "sft" else "dpo",
                       hyperparameters=Hyperparameters(n_epochs=training.epochs,
                                                       batch_size=training.batchSizeSamples, beta=beta),
                       suffix=output)
        with st.lock:
            if jid is not None and jid in st.jobs:
                raise ApiError(409, f"Job {jid} already exists.", code="ALREADY_EXISTS")
            if output is not None and (st.model_exists(st.name("models", output))
                                       or any(m.output_model == output for m in st.jobs.values() if not m.deleted)):
                raise ApiError(409, f"Model {st.name('models', output)} already exists.", code="ALREADY_EXISTS",
                               param="outputModel")
            make = st.provider.create_job
            job: Job = _call(make, spec, job_id=jid) if jid else _call(make, spec)
            fields = body.model_dump(exclude_none=True, exclude={"dataset", "evaluationDataset", "trainingConfig",
                                                                 *_Training.model_fields})
            if isinstance(fields.get("wandbConfig"), dict):  # never echo a secret
                fields["wandbConfig"] = {k: v for k, v in fields["wandbConfig"].items() if k != "apiKey"}
            fields["training"] = training.model_dump(exclude_none=True, exclude={"baseModel", "outputModel"})
            st.jobs[job.id] = JobMeta(kind, rec.id, val.id if val else None, output or job.id, fields)
        return JSONResponse(st.job(job, _base(request)))

    @router.post(ACCOUNT + "/supervisedFineTuningJobs", summary="Create a supervised fine-tuning job")
    def create_sft(account: str, body: CreateSftJob, request: Request,
                   supervisedFineTuningJobId: str | None = None) -> JSONResponse:
        mine(account)
        return create("sft", supervisedFineTuningJobId, body, body, body.evaluationDataset, request)

    @router.post(ACCOUNT + "/dpoJobs", summary="Create a DPO job")
    def create_dpo(account: str, body: CreateDpoJob, request: Request, dpoJobId: str | None = None) -> JSONResponse:
        mine(account)
        return create("dpo", dpoJobId, body, body.trainingConfig or _Training(), None, request)

    for collection, kind in (("supervisedFineTuningJobs", "sft"), ("dpoJobs", "dpo")):
        _job_routes(router, st, mine, collection, kind)
    return router


def _job_routes(router: APIRouter, st: State, mine: Callable[[str], None], collection: str, kind: str) -> None:
    path = ACCOUNT + "/" + collection
    noun = "supervised fine-tuning job" if kind == "sft" else "DPO job"

    def one(jid: str) -> Job:
        st.meta(jid, kind)
        job: Job = _call(st.provider.get_job, jid)
        return job

    @router.get(path, summary=f"List {noun}s", name=f"list_{kind}")
    def list_jobs(account: str, request: Request, pageSize: int | None = None, pageToken: str | None = None,
                  filter: str | None = None, orderBy: str | None = None, readMask: str | None = None) -> JSONResponse:
        mine(account)
        mine_ids = {jid for jid, m in st.jobs.items() if m.kind == kind and not m.deleted}
        items = [st.job(j, _base(request)) for j in _call(st.provider.list_jobs) if j.id in mine_ids]
        return JSONResponse(page(ordered(items, orderBy, filter), collection, pageSize, pageToken))

    @router.post(path + "/{jid}:cancel", summary=f"Cancel a {noun} (unverified route)", name=f"cancel_{kind}")
    def cancel(account: str, jid: str, body: Empty) -> JSONResponse:
        mine(account)
        one(jid)
        _call(st.provider.cancel_job, jid)
        return JSONResponse({})

    @router.post(path + "/{jid}:resume", summary=f"Resume a paused {noun}", name=f"resume_{kind}")
    def resume(account: str, jid: str, body: Empty, request: Request) -> JSONResponse:
        mine(account)
        one(jid)
        return JSONResponse(st.job(_call(st.provider.resume_job, jid), _base(request)))

    if kind == "dpo":
        @router.get(path + "/{jid}:getMetricsFileEndpoint", summary="The signed URL of a DPO job's metrics file")
        def metrics_endpoint(account: str, jid: str, request: Request) -> JSONResponse:
            mine(account)
            one(jid)
            token = st.jobs[jid].metrics_token
            return JSONResponse({"signedUrl": f"{_base(request)}/fireworks/_signed/metrics/{token}"})

    @router.get(path + "/{jid}", summary=f"Get a {noun}", name=f"get_{kind}")
    def get(account: str, jid: str, request: Request, readMask: str | None = None) -> JSONResponse:
        mine(account)
        return JSONResponse(st.job(one(jid), _base(request)))

    @router.delete(path + "/{jid}", summary=f"Delete a {noun}", name=f"delete_{kind}")
    def delete(account: str, jid: str) -> JSONResponse:
        mine(account)
        job = one(jid)
        if not job.is_terminal:
            _call(st.provider.cancel_job, jid)
        st.jobs[jid].deleted = True
        return JSONResponse({})


def metrics_lines(st: State, jid: str) -> str:
    """The metrics file: a JSON line per training step; evaluation loss on the steps that
    end an epoch, when the job has an evaluation dataset."""
    times = {e.data.get("step"): e.created_at for e in st.provider.list_events(jid) if e.kind == "metrics"}
    lines = []
    for p in st.provider.metrics(jid):
        data: dict[str, Any] = {"train/loss": p.train_loss, "train/epoch": p.epoch,
                                "train/mean_token_accuracy": p.train_token_accuracy}
        if p.full_valid_loss is not None:
            data.update({"eval/loss": p.full_valid_loss, "eval/mean_token_accuracy": p.full_valid_token_accuracy})
        lines.append(json.dumps({"step": p.step, "timestamp": rfc3339(times.get(p.step)),
                                 "data": {k: v for k, v in data.items() if v is not None}}))
    return "".join(line + "\n" for line in lines)


def signed_router(st: State) -> APIRouter:
    """Pre-signed storage URLs: no API key (the signature is in the path), as on cloud storage."""
    router = APIRouter(include_in_schema=False)

    @router.put("/_signed/upload/{token}")
    async def put(token: str, request: Request) -> Response:
        up = st.uploads.pending.get(token)
        if up is None:
            raise ApiError(404, "No such upload URL (or it was already used).", code="NOT_FOUND")
        path = st.uploads.dir / f"signed-{secrets.token_hex(8)}"
        size = 0
        with path.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > up.size:
                    break
                out.write(chunk)
        if size != up.size:
            path.unlink(missing_ok=True)
            raise ApiError(400, f"The upload must be exactly {up.size} bytes (x-goog-content-length-range), not "
                                f"{size if size <= up.size else 'more'}.", code="INVALID_ARGUMENT")
        if up.path is not None:
            up.path.unlink(missing_ok=True)
        up.path = path
        return Response(status_code=200)

    @router.get("/_signed/download/{token}")
    def download(token: str) -> Response:
        did = st.downloads.get(token)
        rec = st.datasets.get(did or "")
        if rec is None or rec.file_id is None:
            raise ApiError(404, "No such download URL.", code="NOT_FOUND")
        return Response(_call(st.provider.file_content, rec.file_id), media_type="application/octet-stream")

    @router.get("/_signed/metrics/{token}")
    def metrics(token: str) -> Response:
        jid = next((j for j, m in st.jobs.items() if m.metrics_token == token), None)
        if jid is None:
            raise ApiError(404, "No such metrics file.", code="NOT_FOUND")
        return Response(metrics_lines(st, jid), media_type="application/jsonl")

    return router
