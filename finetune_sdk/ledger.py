"""A local record of every job created, across providers and profiles.

``FINETUNE_HOME/ledger.jsonl``, append-only (one JSON line per job creation or status
update; the last line for a job wins), so ``finetune jobs list`` shows jobs from every
backend and a restarted notebook can re-attach to a job by id alone.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .types import Job

__all__ = ["Ledger", "LedgerEntry"]


class LedgerEntry(BaseModel):
    job_id: str
    provider: str
    profile: str | None = None
    model: str | None = None
    status: str | None = None
    fine_tuned_model: str | None = None
    created_at: datetime | None = None
    recorded_at: datetime
    idempotency_key: str | None = None
    training_file: str | None = None
    migrated_from: str | None = None  # provider:job_id of the job this one was migrated from


class Ledger:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _append(self, entry: LedgerEntry) -> None:
        line = entry.model_dump_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One write of one line in append mode: concurrent writers never interleave lines.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def record(self, job: Job, *, profile: str | None, idempotency_key: str | None = None,
               training_file: str | None = None, migrated_from: str | None = None) -> None:
        previous = self.find(job.id, provider=job.provider)
        self._append(LedgerEntry(
            job_id=job.id, provider=job.provider, profile=profile, model=job.model, status=job.status.value,
            fine_tuned_model=job.fine_tuned_model, created_at=job.created_at, recorded_at=datetime.now(timezone.utc),
            idempotency_key=idempotency_key or (previous.idempotency_key if previous else None),
            training_file=training_file or (previous.training_file if previous else None),
            migrated_from=migrated_from or (previous.migrated_from if previous else None)))

    def entries(self) -> list[LedgerEntry]:
        """The latest entry per job, newest job first. Corrupt lines are skipped."""
        latest: dict[tuple[str, str, str | None], LedgerEntry] = {}
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = LedgerEntry.model_validate(json.loads(line))
                    except (ValueError, TypeError):
                        continue
                    latest[(entry.provider, entry.job_id, entry.profile)] = entry
        except FileNotFoundError:
            return []
        return sorted(latest.values(), key=lambda e: e.created_at or e.recorded_at, reverse=True)

    def find(self, job_id: str, *, provider: str | None = None) -> LedgerEntry | None:
        for entry in self.entries():
            if entry.job_id == job_id and (provider is None or entry.provider == provider):
                return entry
        return None

    def to_rows(self) -> list[dict[str, Any]]:
        return [e.model_dump(mode="json") for e in self.entries()]
