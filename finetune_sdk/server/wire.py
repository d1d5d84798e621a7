"""The wire format: normalised SDK types rendered as OpenAI or Azure OpenAI JSON.

Written once for every provider behind the server. Facts: ../shared/reference
hosted-apis.md §1 and §3.3 (Azure: ``pending`` status, integer hyperparameters with -1
for defaults, ``null`` organization and result files while running, event level
``warning``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from ..types import ChatDelta, ChatResponse, Checkpoint, Event, File, Job, JobStatus, MetricPoint, ModelInfo

__all__ = ["Wire", "ts", "page"]

Dialect = Literal["openai", "azure"]

_STATUS: dict[str, dict[JobStatus, str]] = {
    "openai": {JobStatus.VALIDATING: "validating_files", JobStatus.QUEUED: "queued", JobStatus.RUNNING: "running",
               JobStatus.PAUSED: "paused", JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed",
               JobStatus.CANCELLED: "cancelled"},
    "azure": {JobStatus.VALIDATING: "pending", JobStatus.QUEUED: "pending", JobStatus.RUNNING: "running",
              JobStatus.PAUSED: "paused", JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed",
              JobStatus.CANCELLED: "cancelled"},
}
_RAW = {"openai": frozenset(_STATUS["openai"].values()),
        "azure": frozenset(_STATUS["azure"].values()) | {"pausing", "resuming"}}
_FILE_STATUS = {"openai": {"uploaded": "uploaded", "processed": "processed", "error": "error"},
                "azure": {"uploaded": "pending", "processed": "processed", "error": "error"}}
_METRIC_KEYS = (("step", "step"), ("train_loss", "train_loss"), ("train_mean_token_accuracy", "train_token_accuracy"),
                ("valid_loss", "valid_loss"), ("valid_mean_token_accuracy", "valid_token_accuracy"),
                ("full_valid_loss", "full_valid_loss"),
                ("full_valid_mean_token_accuracy", "full_valid_token_accuracy"))


def ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def page(items: list[dict[str, Any]], has_more: bool, *, with_ids: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"object": "list", "data": items, "has_more": has_more}
    if with_ids:
        body["first_id"] = items[0]["id"] if items else None
        body["last_id"] = items[-1]["id"] if items else None
    return body


def _hyper_value(value: Any, dialect: Dialect, default_azure: Any = -1) -> Any:
    if dialect == "azure":
        if value in (None, "auto"):
            return default_azure
        return value
    return "auto" if value is None else value


class Wire:
    """Renders SDK objects for one dialect."""

    def __init__(self, dialect: Dialect, organization: str = "org-emulator") -> None:
        self.dialect = dialect
        self.organization = organization

    def status(self, job: Job) -> str:
        if job.raw_status in _RAW[self.dialect]:
            return job.raw_status
        if job.status is JobStatus.UNKNOWN:  # a state the backend's table does not know: pass its word on
            return job.raw_status or "unknown"
        return _STATUS[self.dialect][job.status]

    def hyperparameters(self, job: Job) -> dict[str, Any]:
        hp = job.hyperparameters
        out = {"batch_size": _hyper_value(hp.get("batch_size"), self.dialect),
               "learning_rate_multiplier": _hyper_value(hp.get("learning_rate_multiplier"), self.dialect, 1),
               "n_epochs": _hyper_value(hp.get("n_epochs"), self.dialect)}
        if job.method == "dpo":
            out["beta"] = _hyper_value(hp.get("beta"), self.dialect)
        return out

    def job(self, job: Job) -> dict[str, Any]:
        azure = self.dialect == "azure"
        hyper = self.hyperparameters(job)
        method = job.method or "supervised"
        error = job.error.model_dump() if job.error else None
        return {
            "object": "fine_tuning.job",
            "id": job.id,
            "created_at": ts(job.created_at),
            "error": error,
            "fine_tuned_model": job.fine_tuned_model,
            "finished_at": ts(job.finished_at),
            "hyperparameters": {k: v for k, v in hyper.items() if k != "beta"},
            "model": job.model,
            "organization_id": None if azure else self.organization,
            "result_files": (job.result_files if (job.result_files or job.is_terminal) else None) if azure
            else list(job.result_files),
            "seed": job.seed,
            "status": self.status(job),
            "trained_tokens": job.trained_tokens,
            "training_file": job.training_file,
            "validation_file": job.validation_file,
            "estimated_finish": ts(job.estimated_finish),
            "integrations": job.integrations or None,
            "metadata": job.metadata or None,
            "method": {"type": method, method: {"hyperparameters": hyper}},
        }

    def event(self, event: Event) -> dict[str, Any]:
        level = event.level
        if level == "warning" and self.dialect == "openai":
            level = "warn"  # type: ignore[assignment]
        return {"object": "fine_tuning.job.event", "id": event.id, "created_at": ts(event.created_at),
                "level": level, "message": event.message, "data": event.data, "type": event.type}

    def metrics(self, point: MetricPoint | None) -> dict[str, Any]:
        if point is None:
            return {}
        return {wire: getattr(point, attr) for wire, attr in _METRIC_KEYS if getattr(point, attr) is not None}

    def checkpoint(self, ckpt: Checkpoint, job_id: str) -> dict[str, Any]:
        return {"object": "fine_tuning.job.checkpoint", "id": ckpt.id, "created_at": ts(ckpt.created_at),
                "fine_tuned_model_checkpoint": ckpt.model or ckpt.id, "fine_tuning_job_id": job_id,
                "metrics": self.metrics(ckpt.metrics), "step_number": ckpt.step}

    def file(self, f: File, *, expires_at: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"object": "file", "id": f.id, "bytes": f.bytes, "created_at": ts(f.created_at),
                                "filename": f.filename, "purpose": f.purpose,
                                "status": _FILE_STATUS[self.dialect][f.status]}
        if expires_at is not None:
            body["expires_at"] = expires_at
        if self.dialect == "openai":
            # OpenAIFile types expires_at (integer) and status_details (string) as non-nullable
            # optional fields: leave them out rather than send null.
            if f.status_details:
                body["status_details"] = f.status_details
        elif f.status_details:
            body["error"] = {"code": "jsonlValidationFailed", "message": f.status_details}
        return body

    def model(self, m: ModelInfo) -> dict[str, Any]:
        return {"id": m.id, "object": "model", "created": ts(m.created_at) or 0, "owned_by": m.owned_by}

    # -- chat
    @staticmethod
    def usage(resp_usage: Any) -> dict[str, int] | None:
        if resp_usage is None:
            return None
        return {"prompt_tokens": resp_usage.prompt_tokens, "completion_tokens": resp_usage.completion_tokens,
                "total_tokens": resp_usage.total_tokens}

    def completion(self, resp: ChatResponse, *, completion_id: str, created: int, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": resp.content, "refusal": None}
        if resp.tool_calls:
            message["tool_calls"] = resp.tool_calls
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": resp.finish_reason or "stop",
                             "logprobs": None}],
                "usage": self.usage(resp.usage)}

    def chunks(self, deltas: Iterable[ChatDelta], *, completion_id: str, created: int, model: str,
               include_usage: bool) -> Iterable[dict[str, Any]]:
        """The chunk objects of a stream (the caller frames them as SSE and adds [DONE])."""
        # No system_fingerprint: the spec types it as a (deprecated) string, never null.
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        first = True
        usage = None
        for delta in deltas:
            if delta.usage is not None:
                usage = delta.usage
            if delta.content or first:
                body: dict[str, Any] = {"content": delta.content}
                if first:
                    body["role"] = "assistant"
                    first = False
                yield {**base, "choices": [{"index": 0, "delta": body, "finish_reason": None, "logprobs": None}],
                       **({"usage": None} if include_usage else {})}
            if delta.finish_reason is not None:
                yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": delta.finish_reason,
                                            "logprobs": None}], **({"usage": None} if include_usage else {})}
        if include_usage:
            yield {**base, "choices": [], "usage": self.usage(usage) or {"prompt_tokens": 0, "completion_tokens": 0,
                                                                          "total_tokens": 0}}
