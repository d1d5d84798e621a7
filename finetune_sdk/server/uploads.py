"""The Uploads API: a large file sent in parts, assembled in the order given at completion.

Rules (hosted-apis.md §1.2): an upload holds at most 8 GB, expires one hour after it is
created, parts are at most 64 MB and may arrive in parallel, ``complete`` fixes their
order with ``part_ids`` and checks the byte count (and the MD5, when given). The
assembled file is handed to the provider like any uploaded file.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ApiError
from .schemas import CompleteUploadRequest, CreateUploadRequest

__all__ = ["UploadStore", "safe_filename"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str | None, default: str = "upload.jsonl") -> str:
    """A client-supplied file name made safe to create on disk (no paths, no dot-names, bounded)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")[:200]
    return cleaned or default

_EXPIRES_AFTER = 3600
_MIME_FOR_JSONL = {"application/jsonl", "application/json", "application/x-ndjson", "text/jsonl", "text/plain",
                   "application/octet-stream"}


@dataclass
class _Upload:
    id: str
    request: CreateUploadRequest
    created: int
    expires: int
    dir: Path
    status: str = "pending"
    parts: dict[str, tuple[Path, int, int]] = field(default_factory=dict)  # id -> (path, size, created)
    file: dict[str, Any] | None = None


class UploadStore:
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._uploads: dict[str, _Upload] = {}
        self._root = Path(tempfile.mkdtemp(prefix="finetune-uploads-"))

    def _render(self, up: _Upload) -> dict[str, Any]:
        body: dict[str, Any] = {"id": up.id, "object": "upload", "bytes": up.request.bytes, "created_at": up.created,
                                "filename": up.request.filename, "purpose": up.request.purpose, "status": up.status,
                                "expires_at": up.expires}
        body["file"] = up.file
        return body

    def _get(self, upload_id: str, *, pending: bool = True) -> _Upload:
        up = self._uploads.get(upload_id)
        if up is None:
            raise ApiError(404, f"No such upload: {upload_id}", code="upload_not_found", param="upload_id")
        if pending:
            if up.status == "pending" and self._now() > up.expires:
                up.status = "expired"
                shutil.rmtree(up.dir, ignore_errors=True)
            if up.status != "pending":
                raise ApiError(400, f"Upload {upload_id} is {up.status}; it no longer accepts changes.",
                               code="invalid_upload_state", param="upload_id")
        return up

    def create(self, req: CreateUploadRequest) -> dict[str, Any]:
        if req.purpose == "fine-tune" and req.mime_type not in _MIME_FOR_JSONL:
            raise ApiError(400, f"invalid mime_type: {req.mime_type!r}, fine-tune files must be JSONL "
                                f"(e.g. application/jsonl)", param="mime_type")
        now = int(self._now())
        # An Upload always expires an hour after it is created; expires_after is the expiration
        # policy of the File it produces (see file_expires_after).
        up = _Upload(id=f"upload_{uuid.uuid4().hex[:24]}", request=req, created=now, expires=now + _EXPIRES_AFTER,
                     dir=self._root / uuid.uuid4().hex)
        up.dir.mkdir(parents=True)
        with self._lock:
            self._uploads[up.id] = up
        return self._render(up)

    def file_expires_after(self, upload_id: str) -> int | None:
        """Seconds after its creation that the File made by this upload expires (None: never)."""
        up = self._uploads.get(upload_id)
        return up.request.expires_after.seconds if up is not None and up.request.expires_after else None

    def add_part(self, upload_id: str, data: BinaryIO, max_bytes: int) -> dict[str, Any]:
        with self._lock:
            up = self._get(upload_id)
        part_id = f"part_{uuid.uuid4().hex[:24]}"
        path = up.dir / part_id
        size = 0
        with open(path, "wb") as out:
            while chunk := data.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    out.close()
                    path.unlink(missing_ok=True)
                    raise ApiError(400, f"Part too large: parts are at most {max_bytes // (1024 * 1024)} MB.",
                                   code="part_too_large", param="data")
                out.write(chunk)
        now = int(self._now())
        with self._lock:
            if up.status != "pending":
                path.unlink(missing_ok=True)
                raise ApiError(400, f"Upload {upload_id} is {up.status}.", code="invalid_upload_state")
            up.parts[part_id] = (path, size, now)
        return {"id": part_id, "object": "upload.part", "created_at": now, "upload_id": upload_id}

    def complete(self, upload_id: str, req: CompleteUploadRequest,
                 store: Callable[[Path, str], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            up = self._get(upload_id)
            unknown = [p for p in req.part_ids if p not in up.parts]
            if unknown:
                raise ApiError(400, f"invalid part_ids: {unknown[0]} is not a part of upload {upload_id}",
                               param="part_ids")
            if len(set(req.part_ids)) != len(req.part_ids):
                raise ApiError(400, "invalid part_ids: a part is listed twice", param="part_ids")
            total = sum(up.parts[p][1] for p in req.part_ids)
            if total != up.request.bytes:
                raise ApiError(400, f"The upload declared {up.request.bytes} bytes but its parts hold {total} bytes.",
                               code="bytes_mismatch", param="part_ids")
            up.status = "completing"
        name = safe_filename(up.request.filename)
        target = up.dir / "assembled" / name
        target.parent.mkdir()
        digest = hashlib.md5(usedforsecurity=False)
        with open(target, "wb") as out:
            for pid in req.part_ids:
                with open(up.parts[pid][0], "rb") as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if req.md5 is not None and req.md5.lower() != digest.hexdigest():
            with self._lock:
                up.status = "pending"
            target.unlink(missing_ok=True)
            target.parent.rmdir()
            raise ApiError(400, "The MD5 checksum of the assembled parts does not match the md5 given.",
                           code="md5_mismatch", param="md5")
        try:
            file_obj = store(target, up.request.purpose)
        except Exception:
            with self._lock:
                up.status = "pending"
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        with self._lock:
            up.status, up.file = "completed", file_obj
        shutil.rmtree(up.dir, ignore_errors=True)
        return self._render(up)

    def cancel(self, upload_id: str) -> dict[str, Any]:
        with self._lock:
            up = self._get(upload_id)
            up.status = "cancelled"
        shutil.rmtree(up.dir, ignore_errors=True)
        return self._render(up)

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
