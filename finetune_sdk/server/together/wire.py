"""SDK objects rendered as Together's JSON (its OpenAPI description, commit 090263a).

ISO-8601 times on jobs, events, checkpoints and endpoints, Unix seconds on files and models;
the file object's mixed-case keys (``FileType``, ``Processed``, ``LineCount``); event types
in lower case, as the description and SDK v2 write them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from ...types import ChatDelta, ChatResponse, Checkpoint, Event, File, Job, MetricPoint, ModelInfo, Usage
from .state import Endpoint, TogetherState

__all__ = ["iso", "file_body", "job_body", "events_body", "checkpoint_body", "metric_rows", "endpoint_body",
           "model_body", "completion_body", "chunks"]

_PROCESSING = {"uploaded": "RUNNING", "processed": "COMPLETED", "error": "INVALID_FORMAT"}


def iso(value: float | datetime | None) -> str | None:
    """``2025-07-25T14:03:16.780Z``: milliseconds, UTC."""
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromtimestamp(value, tz=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def file_body(f: File, lines: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f.id, "object": "file", "created_at": int(f.created_at.timestamp()) if f.created_at
                            else 0, "filename": f.filename, "bytes": f.bytes, "purpose": f.purpose,
                            "FileType": f.filename.rsplit(".", 1)[-1] if f.filename.endswith((".csv", ".parquet"))
                            else "jsonl", "LineCount": lines or 0, "Processed": f.status != "uploaded",
                            "processing_status": _PROCESSING[f.status]}
    if f.status == "processed":
        body["validation_report"] = {"valid": True, "file_id": f.id, "nlines": lines or 0}
    elif f.status == "error":
        body["validation_report"] = {"valid": False, "file_id": f.id, "error_type": "INVALID_FORMAT",
                                     "error": f.status_details or "Invalid file format."}
    return body


def _event_body(event: Event, etype: str, total_steps: int, output: str, job_id: str) -> dict[str, Any]:
    step = int(event.data.get("step", 0)) if event.kind == "checkpoint" else 0
    return {"object": "fine-tune-event", "created_at": iso(event.created_at), "level": event.level,
            "message": event.message, "type": etype, "param_count": 0, "token_count": 0, "total_steps": total_steps,
            "wandb_url": "", "step": step, "checkpoint_path": _path(job_id, step) if step else "",
            "model_path": output if etype == "model_upload_complete" else "", "training_offset": 0,
            "hash": event.id}


def _path(job_id: str, step: int) -> str:
    return f"s3://together-emulator/finetune/{job_id}/checkpoint-{step}"  # illustrative


def events_body(state: TogetherState, job: Job) -> list[dict[str, Any]]:
    provider = state.provider
    types = provider.raw_event_types(job.id)
    _, total, _ = provider.progress(job.id)
    output = state.output_name(job.id, job.model, job.suffix)
    return [_event_body(e, types.get(e.id, "warning"), total, output, job.id) for e in provider.list_events(job.id)]


def job_body(state: TogetherState, job: Job, *, full: bool) -> dict[str, Any]:
    """A ``FinetuneResponse`` (``full``) or ``FinetuneResponseTruncated``."""
    p = state.params(job.id)
    done, total, per_epoch = state.provider.progress(job.id)
    events = events_body(state, job)
    started = next((e["created_at"] for e in events if e["type"] == "training_start"), None)
    now = state.now()
    body: dict[str, Any] = {
        "id": job.id, "status": job.raw_status, "created_at": iso(job.created_at),
        "updated_at": iso(job.finished_at if job.is_terminal and job.finished_at else now),
        "user_id": state.namespace, "owner_address": state.namespace, "model": job.model,
        "model_output_name": state.output_name(job.id, job.model, job.suffix), "training_file": job.training_file,
        "validation_file": job.validation_file or "", "suffix": job.suffix or "",
        "n_epochs": p.get("n_epochs") or job.hyperparameters.get("n_epochs"), "n_checkpoints": p["n_checkpoints"],
        "n_evals": p["n_evals"], "learning_rate": p["learning_rate"], "lr_scheduler": p["lr_scheduler"],
        "warmup_ratio": p["warmup_ratio"], "max_grad_norm": p["max_grad_norm"], "weight_decay": p["weight_decay"],
        "training_type": p["training_type"], "training_method": _method(job, p), "packing": p["packing"],
        "epochs_completed": done // per_epoch if per_epoch else 0, "queue_depth": 0,
        "progress": _progress(job, now)}
    if isinstance(job.hyperparameters.get("batch_size"), int):
        body["batch_size"] = job.hyperparameters["batch_size"]
    if job.seed is not None:
        body["random_seed"] = job.seed
    if started is not None:
        body["started_at"] = started
    if job.trained_tokens:
        body["token_count"] = job.trained_tokens
    for key in ("max_seq_length", "wandb_project_name", "wandb_name"):
        if p.get(key) is not None:
            body[key] = p[key]
    if full:
        body.update(events=events, trainingfile_numlines=state.line_counts.get(job.training_file or "", 0))
        body["trainingfile_size"] = _size(state, job.training_file)
        body.update(total_steps=total, steps_completed=done)  # the SDKs read these; the description lacks them
    return body


def _size(state: TogetherState, file_id: str | None) -> int:
    try:
        return state.provider.get_file(file_id).bytes if file_id else 0
    except Exception:  # a deleted training file
        return 0


def _method(job: Job, p: dict[str, Any]) -> dict[str, Any]:
    if job.method == "dpo":
        return {"method": "dpo", "dpo_beta": p.get("dpo_beta") or job.hyperparameters.get("beta") or 0.1,
                "rpo_alpha": p.get("rpo_alpha") or 0.0, "simpo_gamma": p.get("simpo_gamma") or 0.0,
                "dpo_normalize_logratios_by_length": bool(p.get("dpo_normalize_logratios_by_length")),
                "dpo_reference_free": bool(p.get("dpo_reference_free"))}
    # The description types an answered train_on_inputs as a boolean: "auto" masks the inputs
    # of conversation and instruction data, the only kinds the emulator trains on.
    inputs = p.get("train_on_inputs", "auto")
    return {"method": "sft", "train_on_inputs": inputs if isinstance(inputs, bool) else False}


def _progress(job: Job, now: float) -> dict[str, Any]:
    if job.estimated_finish is None or job.is_terminal:
        return {"estimate_available": False, "seconds_remaining": 0}
    return {"estimate_available": True, "seconds_remaining": max(0, int(job.estimated_finish.timestamp() - now))}


def checkpoint_body(ckpt: Checkpoint, job_id: str, total_steps: int) -> dict[str, Any]:
    return {"step": ckpt.step, "path": _path(job_id, ckpt.step), "created_at": iso(ckpt.created_at),
            "checkpoint_type": "Final" if ckpt.step >= total_steps else "Intermediate"}


def _learning_rate(p: dict[str, Any], step: int, total: int) -> float:
    """The rate the schedule gives at ``step``: linear warm-up, then linear or cosine decay."""
    base, warm = float(p["learning_rate"]), int(total * float(p["warmup_ratio"]))
    if step <= warm:
        return base * step / max(1, warm)
    scheduler = p.get("lr_scheduler") or {}
    args = scheduler.get("lr_scheduler_args") or {}
    floor = float(args.get("min_lr_ratio") or 0.0)
    progress = (step - warm) / max(1, total - warm)
    if scheduler.get("lr_scheduler_type") == "cosine":
        shape = 0.5 * (1 + math.cos(math.pi * 2 * float(args.get("num_cycles") or 0.5) * progress))
    else:
        shape = 1 - progress
    return round(base * (floor + (1 - floor) * shape), 12)


def metric_rows(points: list[MetricPoint], p: dict[str, Any], total: int, validated: bool) -> list[dict[str, float]]:
    """One train row per step; an eval row (``eval/loss``) at each of the ``n_evals``
    evaluations, evenly spaced, when the job has a validation file."""
    n_evals = int(p.get("n_evals") or 0)
    evals = {math.ceil(i * total / n_evals) for i in range(1, n_evals + 1)} if validated and n_evals else set()
    rows: list[dict[str, float]] = []
    for point in points:
        row: dict[str, float] = {"train/global_step": point.step, "train/learning_rate":
                                 _learning_rate(p, point.step, total)}
        if point.train_loss is not None:
            row["train/loss"] = point.train_loss
        if point.epoch is not None:
            row["train/epoch"] = point.epoch
        rows.append(row)
        loss = point.full_valid_loss if point.full_valid_loss is not None else point.valid_loss
        if point.step in evals and loss is not None:
            rows.append({"train/global_step": point.step, "eval/loss": loss})
    return rows


def endpoint_body(ep: Endpoint, state_word: str, owner: str, *, listed: bool = False) -> dict[str, Any]:
    """A ``DedicatedEndpoint``, or a ``ListEndpoint`` (``listed``)."""
    body: dict[str, Any] = {"object": "endpoint", "id": ep.id, "name": ep.name, "model": ep.model,
                            "type": "dedicated", "owner": owner, "state": state_word, "created_at": iso(ep.created)}
    if not listed:
        body.update(display_name=ep.display_name, hardware=ep.hardware,
                    autoscaling={"min_replicas": ep.min_replicas, "max_replicas": ep.max_replicas})
    return body


def model_body(m: ModelInfo, owner: str, base_models: Iterable[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": m.id, "object": "model", "created": int(m.created_at.timestamp()) if m.created_at
                            else 0, "type": "chat", "display_name": m.id.rsplit("/", 1)[-1],
                            "organization": owner if m.fine_tuned else m.id.split("/", 1)[0]}
    if m.id in base_models:
        body["context_length"] = 131072
    return body


def _usage(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def completion_body(resp: ChatResponse, *, completion_id: str, created: int, model: str) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": model, "prompt": [],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": resp.content},
                         "finish_reason": resp.finish_reason or "stop", "logprobs": None}],
            "usage": _usage(resp.usage)}


def chunks(deltas: Iterable[ChatDelta], *, completion_id: str, created: int, model: str) -> Iterator[dict[str, Any]]:
    """Stream chunks; usage comes unasked in the last one, with the finish reason (Together
    documents no ``stream_options``)."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    for delta in deltas:
        if delta.content:
            yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": delta.content},
                                        "finish_reason": None, "logprobs": None}]}
        if delta.finish_reason is not None:
            yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": delta.finish_reason, "logprobs": None}],
                   "usage": _usage(delta.usage)}
