"""The data types that cross the SDK's boundary.

Everything a provider returns is normalised into these pydantic models; the raw
provider payload is kept alongside (``raw``), so nothing a backend says is lost.
"""

from __future__ import annotations

import enum
import html
from datetime import datetime, timezone
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "IDEMPOTENCY_KEY",
    "REQUEST_DIGEST_KEY",
    "JobStatus",
    "EventKind",
    "Method",
    "Hyperparameters",
    "JobSpec",
    "JobError",
    "Job",
    "Event",
    "MetricPoint",
    "Checkpoint",
    "File",
    "ModelInfo",
    "DeploySpec",
    "Deployment",
    "Usage",
    "ChatResponse",
    "ChatDelta",
    "Severity",
    "Issue",
    "Distribution",
    "TokenStats",
    "Estimate",
    "DatasetReport",
    "IDEMPOTENCY_KEY",
    "REQUEST_DIGEST_KEY",
]

#: The metadata key under which a job's idempotency key is stored (visible in the provider's UI).
#: Defined here, below the providers, so that a provider without job metadata can keep it elsewhere.
IDEMPOTENCY_KEY = "finetune_idempotency_key"
#: The metadata key holding a digest of what was asked for, so that a reused key is checked.
REQUEST_DIGEST_KEY = "finetune_request_digest"


#: The metadata key under which a job's idempotency key is stored (visible in the provider's UI).
IDEMPOTENCY_KEY = "finetune_idempotency_key"
#: The metadata key holding a digest of what was asked for, so that a reused key is checked.
#: A provider that cannot store metadata may give back a prefix of the digest.
REQUEST_DIGEST_KEY = "finetune_request_digest"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class JobStatus(str, enum.Enum):
    """The normalised status of a fine-tuning job, the same for every provider.

    Each provider maps its own raw statuses onto these (``Provider.statuses``, next to its
    code). A raw status a provider does not know becomes ``UNKNOWN`` — non-terminal, with
    the raw value kept in ``Job.raw_status`` and shown wherever the status is shown — so a
    new state of a service is surfaced, never silently taken for another.
    """

    VALIDATING = "validating"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """True for succeeded, failed and cancelled: the job will not change again."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

Method = Literal["supervised", "dpo", "reinforcement"]
HyperValue = int | float | Literal["auto"] | None


class Hyperparameters(BaseModel):
    """Portable hyperparameters; providers map them to their own names.

    ``None`` or ``"auto"`` leaves the choice to the provider. Extra keys are kept and
    passed to providers that understand them (for example the local trainer's
    ``lora_rank``).
    """

    model_config = ConfigDict(extra="allow")

    n_epochs: int | Literal["auto"] | None = None
    batch_size: int | Literal["auto"] | None = None
    learning_rate_multiplier: float | Literal["auto"] | None = None
    beta: float | Literal["auto"] | None = None

    def portable(self) -> dict[str, Any]:
        """The non-empty standard fields, as a dict."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items()
                if k in ("n_epochs", "batch_size", "learning_rate_multiplier", "beta")}

    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class JobSpec(_Model):
    """Everything needed to create a job, before any provider translation."""

    model: str
    training_file: str
    validation_file: str | None = None
    method: Method = "supervised"
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    suffix: str | None = None
    seed: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    integrations: list[dict[str, Any]] = Field(default_factory=list)
    idempotency_key: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="Provider-specific extras, passed through.")


class JobError(_Model):
    code: str | None = None
    message: str
    param: str | None = None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


class Job(_Model):
    """A fine-tuning job, normalised. ``raw_status`` and ``raw`` keep what the provider said."""

    id: str
    provider: str
    status: JobStatus
    raw_status: str | None = None
    model: str
    fine_tuned_model: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    estimated_finish: datetime | None = None
    training_file: str | None = None
    validation_file: str | None = None
    method: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    suffix: str | None = None
    seed: int | None = None
    trained_tokens: int | None = None
    error: JobError | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    integrations: list[dict[str, Any]] = Field(default_factory=list)
    result_files: list[str] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def _repr_html_(self) -> str:
        e = html.escape
        rows = [("status", f"{self.status.value} <small>({e(str(self.raw_status))})</small>"),
                ("model", e(self.model)), ("fine-tuned model", e(self.fine_tuned_model or "—")),
                ("created", _when(self.created_at)), ("finished", _when(self.finished_at))]
        if self.error:
            rows.append(("error", e(f"{self.error.code}: {self.error.message}")))
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in rows)
        return f"<table><caption>Job <code>{e(self.id)}</code> on {e(self.provider)}</caption>{body}</table>"


EventKind = Literal["status", "metrics", "checkpoint", "message"]


class Event(_Model):
    """One job event. ``level`` is normalised to info/warning/error.

    ``kind`` says what the event is, set by the provider from the backend's structured
    data (never from its English text): ``status`` (``data["status"]`` is the normalised
    status the job moved to), ``metrics`` (``data`` holds step, train_loss, ...),
    ``checkpoint`` (``data["step"]``), or ``message`` (anything else).
    """

    id: str
    created_at: datetime
    level: Literal["info", "warning", "error"] = "info"
    message: str
    kind: EventKind = "message"
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _kind_from_type(cls, value: Any) -> Any:
        # Events stored before ``kind`` existed carry OpenAI's ``type`` (message | metrics).
        if isinstance(value, dict) and "type" in value:
            value = dict(value)
            legacy = value.pop("type")
            value.setdefault("kind", "metrics" if legacy == "metrics" else "message")
        return value

    @property
    def type(self) -> Literal["message", "metrics"]:
        """OpenAI's event ``type``: ``metrics`` for metrics events, else ``message``."""
        return "metrics" if self.kind == "metrics" else "message"


class MetricPoint(BaseModel):
    """One point of training metrics, in the same shape for every provider.

    Extra keys (tokens_per_second, mfu, learning_rate, grad_norm, ...) are allowed.
    """

    model_config = ConfigDict(extra="allow")

    step: int
    epoch: float | None = None
    train_loss: float | None = None
    train_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_token_accuracy: float | None = None


class Checkpoint(_Model):
    id: str
    step: int
    created_at: datetime | None = None
    model: str | None = Field(default=None, description="Usable like a fine-tuned model id.")
    metrics: MetricPoint | None = None
    path: str | None = Field(default=None, description="Local checkpoints: their directory.")


class File(_Model):
    """An uploaded file. ``status`` is normalised: uploaded (processing), processed, error."""

    id: str
    filename: str
    bytes: int
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)


class ModelInfo(_Model):
    """A model a provider can serve: a base model or a fine-tune."""

    id: str
    created_at: datetime | None = None
    owned_by: str = "system"
    fine_tuned: bool = False


class DeploySpec(_Model):
    name: str | None = None
    sku: str | None = None
    capacity: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Deployment(_Model):
    """Something you can chat with: a fine-tuned model made callable.

    ``status`` is normalised (creating, succeeded, failed, deleting); ``raw_status`` is
    the provider's word (Azure: provisioningState). ``ready`` is True once inference
    answers (Azure keeps answering 404 for a while after Succeeded).
    """

    name: str
    model: str
    provider: str
    status: Literal["creating", "succeeded", "failed", "deleting"] = "succeeded"
    raw_status: str | None = None
    ready: bool = True
    created_at: datetime | None = None
    sku: str | None = None
    capacity: int | None = None
    base_url: str | None = None
    job_id: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    def _repr_html_(self) -> str:
        e = html.escape
        return (f"<table><caption>Deployment <code>{e(self.name)}</code> on {e(self.provider)}</caption>"
                f"<tr><th style='text-align:left'>model</th><td>{e(self.model)}</td></tr>"
                f"<tr><th style='text-align:left'>status</th><td>{e(self.status)}</td></tr>"
                f"<tr><th style='text-align:left'>base URL</th><td>{e(self.base_url or '—')}</td></tr></table>")


class Usage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatResponse(_Model):
    content: str | None
    model: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return self.content or ""


class ChatDelta(_Model):
    """One piece of a streamed reply. The last one carries ``finish_reason`` and ``usage``."""

    content: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


# --------------------------------------------------------------------------- datasets

Severity = Literal["error", "warning"]


class Issue(_Model):
    """One problem in a dataset: where (1-based line, JSON path), what (a stable code), how to fix it."""

    line: int | None = Field(description="1-based line number; None for problems of the whole file.")
    code: str
    path: str = ""
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        path = f" at {self.path}" if self.path else ""
        return f"{where}{path}: [{self.code}] {self.message}"


class Distribution(_Model):
    """Summary of a per-example quantity."""

    count: int = 0
    min: float | None = None
    mean: float | None = None
    median: float | None = None
    p90: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Any) -> Distribution:
        data = sorted(values)
        n = len(data)
        if not n:
            return cls()

        def quantile(q: float) -> float:
            # Linear interpolation, as numpy.quantile's default.
            pos = (n - 1) * q
            lo = int(pos)
            hi = min(lo + 1, n - 1)
            return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))

        return cls(count=n, min=float(data[0]), mean=sum(data) / n, median=quantile(0.5),
                   p90=quantile(0.9), max=float(data[-1]))


class TokenStats(_Model):
    """Token counts of a dataset, per example and in total."""

    encoding: str | None = Field(description="What counted the tokens, e.g. 'o200k_base' or 'chat_template:<model>'.")
    exact: bool = Field(description="False when the exact tokenizer was unavailable and counts are estimates.")
    note: str | None = None
    examples_counted: int = 0
    total_tokens: int = 0
    assistant_tokens: int = 0
    per_example: Distribution = Field(default_factory=Distribution)
    assistant_per_example: Distribution = Field(default_factory=Distribution)
    messages_per_example: Distribution = Field(default_factory=Distribution)
    context_limit: int | None = None
    over_limit: int = 0


class Estimate(_Model):
    """What training on a dataset will bill and cost. Unknown stays unknown: never invented."""

    model: str | None
    tokens_per_epoch: int = Field(description="Billing tokens of one epoch: sum of min(limit, tokens) over examples.")
    n_epochs: int
    epochs_source: Literal["given", "auto"]
    billed_tokens: int
    price_per_million_tokens: float | None = None
    currency: str = "USD"
    price_source: str | None = None
    price_as_of: str | None = None
    cost: float | None = None
    notes: list[str] = Field(default_factory=list)


class DatasetReport(_Model):
    """The outcome of validating one JSONL file."""

    path: str
    format: Literal["chat", "preference", "completion"] | None = None
    method: str | None = None
    model: str | None = None
    lines: int = 0
    examples: int = 0
    valid: bool = True
    errors: list[Issue] = Field(default_factory=list)
    warnings: list[Issue] = Field(default_factory=list)
    error_counts: dict[str, int] = Field(default_factory=dict, description="Occurrences of every error code.")
    warning_counts: dict[str, int] = Field(default_factory=dict, description="Occurrences of every warning code.")
    truncated: bool = Field(default=False, description="True when more issues were found than are listed.")
    tokens: TokenStats | None = None
    estimate: Estimate | None = None
    notes: list[str] = Field(default_factory=list)
    elapsed_seconds: float = 0.0
    validation: DatasetReport | None = Field(default=None, description="Report of the validation file, if any.")

    @property
    def ok(self) -> bool:
        """True when this file and its validation file (if any) have no errors."""
        return self.valid and (self.validation is None or self.validation.valid)

    def to_json_dict(self) -> dict[str, Any]:
        """The stable JSON document printed by ``finetune validate --json``."""
        data = self.model_dump(mode="json")
        data["valid"] = self.ok
        return data

    @property
    def error_count(self) -> int:
        return sum(self.error_counts.values())

    @property
    def warning_count(self) -> int:
        return sum(self.warning_counts.values())

    def summary(self) -> str:
        return f"{self.path}: {self.examples} examples, {self.error_count} errors, {self.warning_count} warnings"

    def _repr_html_(self) -> str:
        e = html.escape
        colour = "green" if self.ok else "crimson"
        head = (f"<p><b style='color:{colour}'>{'valid' if self.ok else 'invalid'}</b> — {e(self.path)}: "
                f"{self.examples} examples ({e(str(self.format))})</p>")
        rows = "".join(f"<tr><td>{i.line}</td><td>{e(i.severity)}</td><td><code>{e(i.code)}</code></td>"
                       f"<td>{e(i.path)}</td><td>{e(i.message)}</td></tr>" for i in (self.errors + self.warnings)[:20])
        head = "<tr><th>line</th><th>severity</th><th>code</th><th>path</th><th>message</th></tr>"
        table = (f"<table>{head}{rows}</table>"
                 if rows else "")
        return head + table


@overload
def from_timestamp(value: float) -> datetime: ...
@overload
def from_timestamp(value: None) -> None: ...
@overload
def from_timestamp(value: float | None) -> datetime | None: ...
def from_timestamp(value: float | None) -> datetime | None:
    """A UTC datetime from seconds since the epoch (None stays None)."""
    return datetime.fromtimestamp(value, tz=timezone.utc) if value is not None else None
