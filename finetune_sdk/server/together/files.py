"""Together's files: the upload its SDKs use (``POST /files`` → 302 to an upload URL, ``PUT``
the bytes there, ``POST /files/{id}/preprocess``), the direct ``POST /files/upload`` of its
description, and list, retrieve, delete, content.

The upload URL stands in for a presigned object-store URL: it carries a signature instead
of the API key, and lives outside ``/together/v1`` (``/together/storage/{id}``).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi import File as FormFile
from fastapi.responses import JSONResponse, Response

from ...types import File
from ..api import _call
from ..errors import ApiError
from ..uploads import safe_filename
from .state import Staged, TogetherState
from .wire import file_body

__all__ = ["files_router", "storage_router", "PURPOSES"]

#: FilePurpose of Together's description.
PURPOSES = ("fine-tune", "eval", "eval-sample", "eval-output", "eval-summary", "batch-generated", "batch-api")
_TYPES = ("jsonl", "csv", "parquet")
_CHUNK = 1 << 20


def _check(purpose: str, file_name: str, file_type: str | None) -> str:
    if purpose not in PURPOSES:
        raise ApiError(400, f"Invalid purpose {purpose!r}; expected one of {', '.join(PURPOSES)}.", param="purpose")
    if not file_name.strip():
        raise ApiError(400, "file_name must not be empty.", param="file_name")
    kind = file_type or file_name.rsplit(".", 1)[-1].lower()
    if kind not in _TYPES:
        raise ApiError(400, f"Invalid file_type {kind!r}; expected one of {', '.join(_TYPES)}.", param="file_type")
    return kind


def _lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _store(state: TogetherState, path: Path, purpose: str, file_id: str | None = None) -> File:
    f: File = _call(state.provider.upload, path, purpose=purpose, file_id=file_id)
    state.line_counts[f.id] = _lines(path)
    return f


def _body(state: TogetherState, f: File) -> dict[str, Any]:
    return file_body(f, state.line_counts.get(f.id))


def files_router(state: TogetherState) -> APIRouter:
    router = APIRouter()
    staged = state.uploads.staged

    @router.post("/files", summary="Start an upload (302 to the upload URL)")
    def start_upload(request: Request, purpose: str = Form(...), file_name: str = Form(...),
                     file_type: str | None = Form(None), checksum: str | None = Form(None)) -> Response:
        kind = _check(purpose, file_name, file_type)
        file_id = state.provider.new_file_id()
        with state.lock:
            staged[file_id] = Staged(file_id, safe_filename(file_name), purpose, kind, checksum, state.now())
        base = str(request.base_url).rstrip("/")
        location = f"{base}/together/storage/{file_id}?signature={state.signature(file_id)}"
        return Response(status_code=302, headers={"location": location, "x-together-file-id": file_id})

    @router.post("/files/{file_id}/preprocess", summary="Process an uploaded file")
    def preprocess(file_id: str) -> JSONResponse:
        with state.lock:
            entry = staged.get(file_id)
            if entry is None:  # processed already (a retried request), or never announced
                return JSONResponse(_body(state, _call(state.provider.get_file, file_id)))
            if entry.path is None:
                raise ApiError(400, f"The content of {file_id} has not been uploaded yet.", param="file_id")
            del staged[file_id]
        if entry.checksum and entry.checksum.lower() != hashlib.sha256(entry.path.read_bytes()).hexdigest():
            raise ApiError(400, f"The content of {file_id} does not match its checksum.", param="checksum")
        stored = entry.path.with_name(entry.filename)
        entry.path.replace(stored)
        try:
            return JSONResponse(_body(state, _store(state, stored, entry.purpose, file_id)))
        finally:
            stored.unlink(missing_ok=True)

    @router.post("/files/upload", summary="Upload a file in one request")
    def upload(purpose: str = Form(...), file_name: str = Form(...), file_type: str | None = Form(None),
               file: UploadFile = FormFile(...)) -> JSONResponse:
        _check(purpose, file_name, file_type)
        with tempfile.TemporaryDirectory(prefix="finetune-together-") as tmp:
            path = Path(tmp) / safe_filename(file_name)
            with open(path, "wb") as out:
                while chunk := file.file.read(_CHUNK):
                    out.write(chunk)
            return JSONResponse(_body(state, _store(state, path, purpose)))

    @router.get("/files", summary="List files")
    def list_files() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [_body(state, f) for f in _call(state.provider.list_files)]})

    @router.get("/files/{file_id}", summary="Retrieve a file")
    def get_file(file_id: str) -> JSONResponse:
        return JSONResponse(_body(state, _call(state.provider.get_file, file_id)))

    @router.delete("/files/{file_id}", summary="Delete a file")
    def delete_file(file_id: str) -> JSONResponse:
        _call(state.provider.delete_file, file_id)
        state.line_counts.pop(file_id, None)
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    @router.get("/files/{file_id}/content", summary="Download a file's content")
    def content(file_id: str) -> Response:
        return Response(_call(state.provider.file_content, file_id), media_type="application/octet-stream")

    return router


def storage_router(state: TogetherState) -> APIRouter:
    """The upload URL: no API key, a signature instead (what a presigned URL is)."""
    router = APIRouter(include_in_schema=False)

    @router.put("/storage/{file_id}")
    async def put(file_id: str, request: Request, signature: str | None = None) -> Response:
        if not state.signed(file_id, signature):
            raise ApiError(403, "The upload URL's signature does not match.", code="SignatureDoesNotMatch")
        with state.lock:
            entry = state.uploads.staged.get(file_id)
        if entry is None:
            raise ApiError(404, f"No upload is waiting for {file_id}.", code="NoSuchUpload")
        path = state.uploads.dir / file_id
        with open(path, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        entry.path = path
        etag = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()  # what object stores answer
        return Response(status_code=200, headers={"etag": f'"{etag}"'})

    return router
