"""The on-disk job registry of the local backend.

``FINETUNE_HOME/jobs/<id>/``: ``job.json`` (written atomically, read-modify-written under a
per-job lock, because the provider and the training process both update it),
``events.jsonl`` (append-only), ``checkpoints/``, the ``adapter/`` or ``model/``,
``results.csv`` and ``train.log``. ``FINETUNE_HOME/files/<id>/`` holds uploaded files.

A job whose process vanished without reaching a terminal state is detected here (its pid
is gone, or belongs to another process) and reported failed with the tail of its log.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ...._filelock import file_lock
from ....types import Event, File, JobError, JobSpec, from_timestamp

__all__ = ["JobRecord", "JobStore", "FileStore", "process_alive", "process_started_at", "TERMINAL"]

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def process_started_at(pid: int) -> float | None:
    """When a process started (seconds since the epoch), or None if it does not exist."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def process_alive(pid: int | None, started_at: float | None) -> bool:
    if not pid:
        return False
    actual = process_started_at(pid)
    if actual is None:
        try:
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return started_at is None
    try:
        import psutil

        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except Exception:
        pass
    # A reused pid belongs to a process that started later than ours.
    return started_at is None or abs(actual - started_at) < 2.0


class JobRecord(BaseModel):
    """``job.json``."""

    id: str
    status: str = "validating"
    spec: JobSpec
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    estimated_finish: float | None = None
    pid: int | None = None
    pid_started_at: float | None = None
    device: str | None = None
    error: JobError | None = None
    fine_tuned_model: str | None = None
    base_model_path: str | None = None
    trained_tokens: int | None = None
    step: int = 0
    total_steps: int | None = None
    cancel_requested: bool = False
    pause_requested: bool = False
    resume_from: str | None = None
    attempts: int = 0


class JobStore:
    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "jobs"

    def dir(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or "\\" in job_id or job_id in (".", ".."):
            raise KeyError(job_id)
        return self.root / job_id

    @staticmethod
    def new_id() -> str:
        return "ftjob-" + secrets.token_hex(12)

    def exists(self, job_id: str) -> bool:
        try:
            return (self.dir(job_id) / "job.json").is_file()
        except KeyError:
            return False

    def create(self, record: JobRecord) -> Path:
        d = self.dir(record.id)
        (d / "checkpoints").mkdir(parents=True, exist_ok=False)
        self._write(d, record)
        (d / "events.jsonl").touch()
        return d

    @staticmethod
    def _write(d: Path, record: JobRecord) -> None:
        tmp = d / f".job.json.{os.getpid()}.tmp"
        tmp.write_text(record.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, d / "job.json")

    def read(self, job_id: str) -> JobRecord:
        path = self.dir(job_id) / "job.json"
        return JobRecord.model_validate_json(path.read_text(encoding="utf-8"))

    def update(self, job_id: str, change: Callable[[JobRecord], None] | None = None, **fields: Any) -> JobRecord:
        """Read-modify-write ``job.json`` under the job's lock."""
        d = self.dir(job_id)
        with file_lock(d / "job.lock"):
            record = self.read(job_id)
            for key, value in fields.items():
                setattr(record, key, value)
            if change is not None:
                change(record)
            self._write(d, record)
            return record

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if (p / "job.json").is_file()]

    # -- events
    def append_event(self, job_id: str, event: Event) -> None:
        line = event.model_dump_json() + "\n"
        fd = os.open(self.dir(job_id) / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def events(self, job_id: str) -> list[Event]:
        out = []
        try:
            with open(self.dir(job_id) / "events.jsonl", encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        try:
                            out.append(Event.model_validate_json(line))
                        except ValueError:
                            continue  # a line cut by a crash mid-write
        except FileNotFoundError:
            return []
        return out

    def log_tail(self, job_id: str, lines: int = 20) -> str:
        try:
            text = (self.dir(job_id) / "train.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.dir(job_id), ignore_errors=True)


class FileStore:
    """Uploaded files: ``FINETUNE_HOME/files/<id>/{meta.json, data}``."""

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "files"

    def _dir(self, file_id: str) -> Path:
        if not file_id.startswith("file-") or "/" in file_id or "\\" in file_id:
            raise KeyError(file_id)
        return self.root / file_id

    def add(self, path: Path, purpose: str) -> File:
        fid = "file-" + secrets.token_hex(12)
        d = self._dir(fid)
        d.mkdir(parents=True)
        shutil.copyfile(path, d / "data")
        meta = File(id=fid, filename=Path(path).name, bytes=(d / "data").stat().st_size, purpose=purpose,
                    status="processed", created_at=from_timestamp(int(time.time())))
        (d / "meta.json").write_text(meta.model_dump_json(), encoding="utf-8")
        return meta

    def get(self, file_id: str) -> File:
        try:
            return File.model_validate_json((self._dir(file_id) / "meta.json").read_text(encoding="utf-8"))
        except (KeyError, FileNotFoundError):
            raise KeyError(file_id) from None

    def path(self, file_id: str) -> Path:
        self.get(file_id)
        return self._dir(file_id) / "data"

    def list(self) -> list[File]:
        if not self.root.is_dir():
            return []
        out = []
        for d in self.root.iterdir():
            try:
                out.append(self.get(d.name))
            except (KeyError, ValueError):
                continue
        return sorted(out, key=lambda f: (f.created_at or 0, f.id))

    def delete(self, file_id: str) -> None:
        self.get(file_id)
        shutil.rmtree(self._dir(file_id), ignore_errors=True)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
