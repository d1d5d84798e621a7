"""Fireworks' wire shapes <-> the SDK's types, without I/O: names, times, job bodies and
objects, the events a job object implies, the metrics file.

Facts are from the official ``fireworks-ai`` SDK's types unless marked unverified.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ...errors import UnsupportedOperation
from ...metrics import point_from_dict
from ...types import (IDEMPOTENCY_KEY, REQUEST_DIGEST_KEY, Event, Hyperparameters, JobError, JobSpec, JobStatus,
                      MetricPoint)

__all__ = ["parse_time", "key_job_id", "slug", "display_name", "read_display_name", "map_hyperparameters",
           "create_body", "events", "metric_points", "job_error", "JOB_COLLECTIONS", "DISPLAY_NAME_LIMIT"]

#: SDK job id prefix -> collection. Supervised jobs go by their bare id, the commonest case.
JOB_COLLECTIONS = {"supervisedFineTuningJobs": "supervised", "dpoJobs": "dpo"}
#: "Must be fewer than 64 characters" (the SDK, for models and deployments; assumed for jobs).
DISPLAY_NAME_LIMIT = 63
_DIGEST_TOKEN = "ftsdk-req"  # REQUEST_DIGEST_KEY, shortened to leave room in the display name
_NOT_ID = re.compile(r"[^a-z0-9-]+")
_FRACTION = re.compile(r"\.(\d+)")
_METRIC_KEYS = {"train/loss": "train_loss", "loss": "train_loss", "train/epoch": "epoch", "epoch": "epoch",
                "train/mean_token_accuracy": "train_mean_token_accuracy",
                "mean_token_accuracy": "train_mean_token_accuracy", "eval/loss": "valid_loss",
                "eval/mean_token_accuracy": "valid_mean_token_accuracy"}
_TERMINAL_DEFAULT = {JobStatus.SUCCEEDED: "completed", JobStatus.FAILED: "failed", JobStatus.CANCELLED: "cancelled"}


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as proto3 JSON writes it (``Z``, 0 to 9 fractional digits)."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], value.strip()).replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def key_job_id(key: str) -> str:
    """The job id an idempotency key stands for: Fireworks jobs have no metadata, but the caller
    names the job (``supervisedFineTuningJobId``), so looking a key up is one GET."""
    return "ftjob-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def slug(text: str, limit: int) -> str:
    """A resource id made from free text: lower-case letters, digits, hyphens, a letter first."""
    s = _NOT_ID.sub("-", text.lower()).strip("-")
    s = s if s[:1].isalpha() else f"m-{s}".rstrip("-")
    return s[:limit].rstrip("-")


def display_name(metadata: Mapping[str, str]) -> str | None:
    """The job metadata Fireworks cannot hold, in the job's ``displayName``:
    ``ftsdk-req=<digest> team=search`` (each key and value URL-quoted). The idempotency
    key itself is the job id (:func:`key_job_id`)."""
    tokens = []
    for key, value in sorted(metadata.items()):
        if key == IDEMPOTENCY_KEY:
            continue
        name = _DIGEST_TOKEN if key == REQUEST_DIGEST_KEY else urllib.parse.quote(key, safe="")
        tokens.append(f"{name}={urllib.parse.quote(value, safe='')}")
    text = " ".join(tokens)
    if len(text) > DISPLAY_NAME_LIMIT:
        raise UnsupportedOperation(
            f"job metadata of more than {DISPLAY_NAME_LIMIT} characters ({text!r})", "fireworks",
            "Fireworks jobs have no metadata; finetune-sdk keeps it in the job's displayName, which is limited. "
            "Use fewer or shorter metadata keys and values.")
    return text or None


def read_display_name(text: Any) -> dict[str, str]:
    """The metadata :func:`display_name` wrote (a display name set by anything else reads as none)."""
    if not isinstance(text, str) or not text:
        return {}
    out: dict[str, str] = {}
    for token in text.split(" "):
        key, sep, value = token.partition("=")
        if not sep or not key:
            return {}
        out[REQUEST_DIGEST_KEY if key == _DIGEST_TOKEN else urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return out


def map_hyperparameters(hp: Hyperparameters, method: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The training fields (camelCase) Fireworks gets for ``hp`` — DPO's beta under
    ``beta`` — and the names it cannot take, each with why. Every hyperparameter is mapped or
    refused by name: none is dropped. A value out of range raises ``ValueError``."""
    out: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for key, value in hp.portable().items():
        if value == "auto":
            continue
        if key == "n_epochs":
            out["epochs"] = value
        elif key == "batch_size":  # Fireworks' batchSize counts tokens; batchSizeSamples counts examples
            out["batchSizeSamples"] = value
        elif key == "learning_rate_multiplier":
            refused[key] = ("Fireworks takes an absolute learning rate: pass learning_rate instead, "
                            "e.g. hyperparameters={'learning_rate': 1e-4}")
        elif key == "beta":
            if method != "dpo":
                refused[key] = "beta without method='dpo': it is a DPO setting"
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.5:
                raise ValueError(f"beta must be a number above 0 and below 0.5 on Fireworks, not {value!r}")
            out["beta"] = float(value)
    extras = hp.extras()
    for key, field in (("lora_rank", "loraRank"), ("learning_rate", "learningRate"),
                       ("max_context_length", "maxContextLength"), ("max_length", "maxContextLength")):
        if key not in extras:
            continue
        value = extras.pop(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if field == "learningRate":
            if not number or not value > 0:
                raise ValueError(f"learning_rate must be a positive number, not {value!r}")
        elif not (number and float(value).is_integer() and value >= 1):
            raise ValueError(f"{key} must be a positive integer, not {value!r}")
        else:
            value = int(value)
        if field in out and out[field] != value:
            raise ValueError(f"max_context_length and max_length disagree ({out[field]} vs {value})")
        out[field] = value
    for key in sorted(extras):
        refused[key] = ("not a Fireworks setting (it takes n_epochs, batch_size, learning_rate, lora_rank, "
                        "max_context_length or max_length and, for DPO, beta; pass its own fields in extra={...})")
    return out, refused


def create_body(spec: JobSpec, *, account: str, dataset: str, evaluation: str | None, output_model: str | None,
                provider: str = "fireworks") -> dict[str, Any]:
    """The JSON body creating a supervised job (fields at the top level) or a DPO job
    (``trainingConfig`` and ``lossConfig``, whose method is always sent: the docs disagree
    on its default)."""
    if spec.method == "reinforcement":
        raise UnsupportedOperation("reinforcement fine-tuning", provider,
                                   "Fireworks RFT needs an evaluator; this SDK does not drive it yet.")
    if spec.seed is not None:
        raise UnsupportedOperation("seed", provider, "Fireworks jobs take no seed.")
    if spec.integrations:
        raise UnsupportedOperation("integrations", provider,
                                   "For Weights & Biases pass extra={'wandbConfig': {'enabled': True, ...}}.")
    if spec.method == "dpo" and evaluation is not None:
        raise UnsupportedOperation("a validation file for DPO jobs", provider, "Fireworks DPO jobs take none.")
    training, refused = map_hyperparameters(spec.hyperparameters, spec.method)
    if refused:
        raise UnsupportedOperation(f"the hyperparameter(s) {', '.join(sorted(refused))}", provider,
                                   "; ".join(f"{k}: {why}" for k, why in sorted(refused.items())) + ".")
    beta = training.pop("beta", None)
    own = spec.model.startswith(f"accounts/{account}/models/")
    training["warmStartFrom" if own else "baseModel"] = spec.model  # continuing from one's own LoRA
    if output_model:
        training["outputModel"] = output_model
    body: dict[str, Any] = {"dataset": dataset}
    name = display_name(spec.metadata)
    if name:
        body["displayName"] = name
    if spec.method == "dpo":
        body["trainingConfig"] = training
        body["lossConfig"] = {"method": "DPO", **({"dpo": {"beta": beta}} if beta is not None else {})}
    else:
        body.update(training)
        if evaluation:
            body["evaluationDataset"] = evaluation
    body.update(spec.extra)
    return body


def events(raw: Mapping[str, Any], job_id: str, status: JobStatus) -> list[Event]:
    """The events a job object implies, oldest first, with ids stable across calls.

    Fireworks has no events endpoint. What a job says at any moment — created, progress in
    tenths (``jobProgress.percent``), a terminal state — only grows, so each later reading
    repeats the earlier events (same ids, same order) and appends. Times: ``createTime``,
    ``completedTime``; progress has no time of its own and carries the ``updateTime`` of
    the reading that first showed it (so a later reading may date it later).
    """
    created = parse_time(raw.get("createTime")) or datetime.fromtimestamp(0, timezone.utc)
    updated = parse_time(raw.get("updateTime")) or created
    done = parse_time(raw.get("completedTime"))
    state = str(raw.get("state") or "")
    out = [Event(id=f"{job_id}:created", created_at=created, message="Job created.", data={})]
    progress = raw.get("jobProgress")
    reported = progress.get("percent") if isinstance(progress, Mapping) else None
    percent = reported if isinstance(reported, int) and not isinstance(reported, bool) else 0
    if status is JobStatus.SUCCEEDED and state.upper() == "JOB_STATE_COMPLETED":
        percent = 100  # completed means all of it, whether or not the object still says so
    at = min(updated, done) if done else updated
    for tenth in range(10, min(100, percent) + 1, 10):
        out.append(Event(id=f"{job_id}:progress-{tenth}", created_at=max(at, created),
                         message=f"Training {tenth}% done.", data={"percent": tenth}))
    if status.is_terminal:
        nested = raw.get("status")
        detail = nested.get("message") if isinstance(nested, Mapping) else None
        word = state.removeprefix("JOB_STATE_").lower() or _TERMINAL_DEFAULT[status]
        out.append(Event(id=f"{job_id}:{state or status.value}", created_at=max(done or updated, created),
                         level="error" if status is JobStatus.FAILED else "info", kind="status",
                         message=f"Job {word}." + (f" {detail}" if detail else ""),
                         data={"status": status.value, "state": state}))
    return out


def metric_points(text: str) -> list[MetricPoint]:
    """Points from a metrics file: JSON lines ``{"step", "timestamp", "data": {"train/loss",
    ...}}`` (the shape is inferred from third-party code, unverified; flat lines are read too).
    Unknown numeric keys are kept with ``/`` spelled ``_``."""
    points: dict[int, MetricPoint] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        data = record["data"] if isinstance(record.get("data"), dict) else record
        values: dict[str, Any] = {"step": record.get("step")}
        for key, value in data.items():
            if key not in ("step", "timestamp"):
                values[_METRIC_KEYS.get(key, key.replace("/", "_"))] = value
        point = point_from_dict(values)
        if point is not None:
            points[point.step] = point
    return [points[step] for step in sorted(points)]


def job_error(raw: Mapping[str, Any], status: JobStatus) -> JobError | None:
    """A failed job's nested status (a gRPC code name and a message)."""
    if status is not JobStatus.FAILED:
        return None
    nested = raw.get("status")
    nested = nested if isinstance(nested, Mapping) else {}
    code = nested.get("code")
    return JobError(code=code if code not in (None, "", "OK") else None,
                    message=str(nested.get("message") or raw.get("state") or "The job failed."))
