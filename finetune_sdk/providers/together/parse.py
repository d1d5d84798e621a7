"""Together's objects read into the SDK's types: files, jobs, events, checkpoints, metrics.

Facts from Together's public OpenAPI description and its official SDKs (docs/providers.md,
"Together AI"). Where the wire is not pinned down, the reading is lenient and says so.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from ...metrics import point_from_dict
from ...types import Checkpoint, Event, EventKind, File, JobStatus, MetricPoint, from_timestamp

__all__ = ["iso_time", "file_from", "events_from", "error_from_events", "checkpoints_from", "points_from",
           "idempotency_tag", "split_suffix", "TAG_LENGTH"]

# Event types (lower-cased: the spec and SDK v2 write them so, SDK v1 upper-cased) that say
# the job moved to a status; everything else is a message, except checkpoint_save.
_STATUS_EVENTS = {"job_pending": JobStatus.QUEUED, "job_start": JobStatus.RUNNING, "training_start": JobStatus.RUNNING,
                  "job_restarted": JobStatus.RUNNING, "job_complete": JobStatus.SUCCEEDED,
                  "job_error": JobStatus.FAILED, "job_user_error": JobStatus.FAILED}
_ERROR_EVENTS = ("job_error", "job_user_error")
# Metric names of /fine-tunes/{id}/metrics -> MetricPoint fields. Together evaluates the whole
# validation set (n_evals times), so its eval loss is OpenAI's full_valid_loss as well.
_METRIC_NAMES = {"train/global_step": ("step",), "global_step": ("step",), "train/loss": ("train_loss",),
                 "train/epoch": ("epoch",), "eval/loss": ("valid_loss", "full_valid_loss")}
# The idempotency tag: "r" + 8 hex of the key's hash + 6 hex of the request digest.
TAG_LENGTH = 15
_TAG = re.compile(r"(?:^|-)r([0-9a-f]{8})([0-9a-f]{6})$")


def iso_time(value: Any) -> datetime | None:
    """An ISO-8601 time (``2023-05-17T17:35:45.123Z``, any precision) or seconds since the epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return from_timestamp(value)
    text = str(value).strip().replace("Z", "+00:00")
    # fromisoformat before 3.11 takes 3 or 6 fraction digits only.
    text = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def file_from(raw: dict[str, Any]) -> File:
    # processing_status (2026) is the server-side check; without it (older servers) a file is
    # usable once uploaded. What the older "Processed" flag tracks is unverified.
    processing = str(raw.get("processing_status") or "").upper()
    status = {"": "processed", "COMPLETED": "processed", "FAILED": "error", "INVALID_FORMAT": "error"}.get(
        processing, "uploaded")
    found = raw.get("validation_report")
    report: dict[str, Any] = found if isinstance(found, dict) else {}
    details = report.get("error") or (f"Together could not process the file ({processing})." if status == "error"
                                      else None)
    return File(id=raw["id"], filename=raw.get("filename") or "", bytes=raw.get("bytes") or 0,
                purpose=raw.get("purpose") or "", status=status,  # type: ignore[arg-type]
                status_details=details, created_at=iso_time(raw.get("created_at")), raw=raw)


def _event_type(raw: dict[str, Any]) -> str:
    return str(raw.get("type") or "").lower()


def _event_id(raw: dict[str, Any], seen: dict[str, int]) -> str:
    """The event's ``hash`` (unverified as an identity, but unique per event as far as known),
    else a digest of what it says and how many identical events came before it."""
    if raw.get("hash"):
        return str(raw["hash"])
    text = "|".join(str(raw.get(k)) for k in ("created_at", "type", "message", "step", "checkpoint_path"))
    seen[text] = seen.get(text, 0) + 1
    return "evt-" + hashlib.sha256(f"{text}|{seen[text]}".encode()).hexdigest()[:24]


def events_from(items: list[dict[str, Any]]) -> list[Event]:
    """Events oldest first. Together's order is unverified: a list that starts later than it
    ends is read backwards."""
    items = [e for e in items if isinstance(e, dict)]
    times = [iso_time(e.get("created_at")) for e in items]
    if len(times) > 1 and times[0] and times[-1] and times[0] > times[-1]:
        items, times = items[::-1], times[::-1]
    seen: dict[str, int] = {}
    events = []
    for raw, when in zip(items, times):
        kind: EventKind = "message"
        data: dict[str, Any] = {}
        etype = _event_type(raw)
        if etype in _STATUS_EVENTS:
            kind, data = "status", {"status": _STATUS_EVENTS[etype].value}
        elif etype == "checkpoint_save" and isinstance(raw.get("step"), int):
            kind, data = "checkpoint", {"step": raw["step"]}
        level = str(raw.get("level") or "info").lower().removeprefix("legacy_")
        level = "error" if "err" in level else "warning" if "warn" in level else "info"
        events.append(Event(id=_event_id(raw, seen), created_at=when or from_timestamp(0), level=level,  # type: ignore[arg-type]
                            message=str(raw.get("message") or etype), kind=kind, data=data))
    return sorted(events, key=lambda e: e.created_at)


def error_from_events(items: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(event type, message) of the last failure event: Together's job object carries no error."""
    for raw in reversed(items or []):
        if isinstance(raw, dict) and _event_type(raw) in _ERROR_EVENTS and raw.get("message"):
            return _event_type(raw), str(raw["message"])
    return None


def checkpoints_from(job_id: str, items: list[dict[str, Any]]) -> list[Checkpoint]:
    """One checkpoint per step, named ``{job id}:{step}`` as Together's SDKs name them for
    ``from_checkpoint`` (a final model and adapter of the same step are one checkpoint here)."""
    by_step: dict[int, Checkpoint] = {}
    for raw in items:
        step = raw.get("step")
        if not isinstance(step, int) or step in by_step:
            continue
        by_step[step] = Checkpoint(id=f"{job_id}:{step}", step=step, created_at=iso_time(raw.get("created_at")),
                                   model=f"{job_id}:{step}")
    return [by_step[s] for s in sorted(by_step)]


def points_from(rows: list[dict[str, Any]]) -> list[MetricPoint]:
    """Rows of ``/fine-tunes/{id}/metrics`` (train rows and eval rows, each a flat map) merged
    into one point per step. Other names keep their last path part (learning_rate, grad_norm)."""
    merged: dict[int, dict[str, Any]] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        values: dict[str, Any] = {}
        for name, value in row.items():
            for field in _METRIC_NAMES.get(name, (name.rsplit("/", 1)[-1],)):
                values[field] = value
        point = point_from_dict(values)
        if point is not None:
            merged.setdefault(point.step, {}).update(point.model_dump(exclude_none=True))
    return [MetricPoint(**merged[step]) for step in sorted(merged)]


def idempotency_tag(key: str, digest: str) -> str:
    """What the suffix carries in place of metadata Together cannot store: a hash of the
    idempotency key and a prefix of the request digest."""
    return "r" + hashlib.sha256(key.encode()).hexdigest()[:8] + digest[:6].lower().ljust(6, "0")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def split_suffix(suffix: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """(the caller's suffix, (key hash, digest prefix) of the tag) of a job's suffix."""
    if not suffix:
        return None, None
    found = _TAG.search(suffix)
    if found is None:
        return suffix, None
    return suffix[:found.start()] or None, (found.group(1), found.group(2))


def seconds_until(updated: datetime | None, progress: Any) -> datetime | None:
    """When the job should finish: ``updated_at`` plus ``progress.seconds_remaining`` (what
    ``updated_at`` tracks is unverified; an estimate that comes early only makes polls sooner)."""
    if updated is None or not isinstance(progress, dict) or not progress.get("estimate_available"):
        return None
    remaining = progress.get("seconds_remaining")
    if not isinstance(remaining, (int, float)) or isinstance(remaining, bool):
        return None
    return updated + timedelta(seconds=float(remaining))
