"""Together AI fine-tuning: a translation over :class:`~finetune_sdk.providers.http.HTTPProvider`.

- Files go up the way Together's official SDKs send them: ``POST /files`` answers 302 with
  an upload URL (``Location``) and the file's id (``X-Together-File-Id``), the bytes are
  ``PUT`` there without our credentials, then ``POST /files/{id}/preprocess``.
- Jobs are ``/fine-tunes``. Together keeps no metadata, so the idempotency key that makes
  create exactly-once travels in the suffix as a short tag (``-r<8 hex><6 hex>``: a hash of
  the key and a prefix of the request digest); ``list_jobs(metadata={key: ...})`` filters
  on it client-side (Together lists every job at once, unpaginated).
- Deploying is serverless for fine-tunes of the bases Together served LoRA adapters of
  without an endpoint (``serverless_lora_models``), otherwise a dedicated endpoint, created
  exactly once and polled until it is STARTED. Chat is OpenAI-compatible.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr

from ...config import setting
from ...errors import ProviderError, UnsupportedOperation
from ...types import (IDEMPOTENCY_KEY, REQUEST_DIGEST_KEY, ChatDelta, ChatResponse, Checkpoint, Event, File,
                      Hyperparameters, Job, JobError, JobSpec, JobStatus, MetricPoint, ModelInfo, from_timestamp)
from ..base import Capability
from ..http import HTTPProvider, HTTPSettings
from . import parse
from .endpoints import Endpoints

__all__ = ["TogetherProvider", "TogetherSettings", "SERVERLESS_LORA_MODELS"]

#: Bases whose LoRA fine-tunes Together served without an endpoint (its lora-inference and
#: adapter-upload docs). Unverified since 2026-03, when its guides moved to dedicated endpoints.
SERVERLESS_LORA_MODELS = ("meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
                          "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference", "Qwen/Qwen2.5-72B-Instruct")
# The local trainer's names for what Together also takes, and Together's names for them.
_EXTRA_NAMES = {"lora_rank": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                "learning_rate": "learning_rate", "warmup_ratio": "warmup_ratio", "weight_decay": "weight_decay",
                "max_grad_norm": "max_grad_norm", "lora": "lora"}
_FILE_TYPES = {".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv"}
_MAX_SUFFIX = 40  # Together's SDK docstring; the server's own limit is unverified
_SET_BY_US = ("model", "training_file", "validation_file", "suffix", "training_type", "training_method")
_JOB_ID = re.compile(r"ft-[0-9a-fA-F-]{36}")


class TogetherSettings(HTTPSettings):
    api_key: SecretStr = setting(..., env=("TOGETHER_API_KEY",), secret=True, example="export TOGETHER_API_KEY=...")
    base_url: str = setting("https://api.together.xyz/v1", example='base_url = "https://api.together.xyz/v1"',
                            description="Together's API (its 2026 description names https://api.together.ai/v1).")
    serverless_lora_models: tuple[str, ...] = setting(
        SERVERLESS_LORA_MODELS, description="Bases whose LoRA fine-tunes answer chat without an endpoint; empty "
                                            "to always deploy a dedicated endpoint.")
    endpoint_hardware: str = setting("1x_nvidia_h100_80gb_sxm",
                                     description="Hardware of dedicated endpoints (GET /hardware lists them).")
    endpoint_min_replicas: int = setting(1)
    endpoint_max_replicas: int = setting(1)
    endpoint_inactive_timeout: int | None = setting(
        None, description="Minutes without requests before an endpoint stops (None: Together's default).")
    deploy_timeout: float = setting(1800.0, description="Seconds to wait for an endpoint to start.")


class TogetherProvider(Endpoints, HTTPProvider[TogetherSettings]):
    """Together AI fine-tuning, serverless LoRA inference and dedicated endpoints."""

    name = "together"
    capabilities = frozenset({Capability.UPLOAD, Capability.FILES, Capability.CREATE_JOB, Capability.EVENTS,
                              Capability.CHECKPOINTS, Capability.METRICS, Capability.CANCEL, Capability.DEPLOY,
                              Capability.CHAT, Capability.MODELS, Capability.METADATA_FILTER})
    # FinetuneJobStatus of the spec, plus user_error (the SDKs' enum). cancel_requested is not
    # terminal: the job is still stopping. compressing and uploading write the weights.
    statuses: ClassVar[Mapping[str, JobStatus]] = {
        "pending": JobStatus.QUEUED, "queued": JobStatus.QUEUED, "running": JobStatus.RUNNING,
        "compressing": JobStatus.RUNNING, "uploading": JobStatus.RUNNING, "cancel_requested": JobStatus.RUNNING,
        "completed": JobStatus.SUCCEEDED, "error": JobStatus.FAILED, "user_error": JobStatus.FAILED,
        "cancelled": JobStatus.CANCELLED}
    stores_metadata = False  # the idempotency key travels in the suffix instead
    Settings = TogetherSettings

    def base_url(self) -> str:
        return self.settings.base_url

    def auth_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key.get_secret_value()}"}

    def is_job_id(self, value: str) -> bool:
        return bool(_JOB_ID.fullmatch(value))

    # ------------------------------------------------------------------ files
    def upload(self, path: Path, *, purpose: str = "fine-tune") -> File:
        path = Path(path)
        file_type = _FILE_TYPES.get(path.suffix.lower())
        if file_type is None:
            raise ValueError(f"Together takes .jsonl, .parquet or .csv files, not {path.name!r}.")
        data = path.read_bytes()
        fields = {"purpose": purpose, "file_name": path.name, "file_type": file_type,
                  "checksum": hashlib.sha256(data).hexdigest()}
        started = self.http.request("POST", "/files", files={k: (None, v) for k, v in fields.items()},
                                    follow_redirects=False, ok_statuses=(409,),
                                    describe=f"starting the upload of {path.name}")
        if started.status_code == 409:  # these bytes are already there (how its SDK reads a 409)
            body = started.json() if started.content else {}
            if isinstance(body, dict) and body.get("file_id"):
                return self.get_file(str(body["file_id"]))
        location, file_id = started.headers.get("location"), started.headers.get("x-together-file-id")
        if started.status_code not in (301, 302, 303, 307, 308) or not location or not file_id:
            raise ProviderError(f"Starting the upload of {path.name} answered {started.status_code} without an "
                                f"upload URL and file id (Location, X-Together-File-Id).", provider=self.name,
                                status_code=started.status_code)
        self.http.request("PUT", str(started.url.join(location)), content=data, presigned=True,
                          describe=f"uploading {path.name}")
        return parse.file_from(self.http.json("POST", f"/files/{file_id}/preprocess",
                                              describe=f"processing {path.name}"))

    def get_file(self, file_id: str) -> File:
        return parse.file_from(self.http.json("GET", f"/files/{file_id}", describe=f"retrieving {file_id}"))

    def list_files(self, *, purpose: str | None = None) -> list[File]:
        files = [parse.file_from(f) for f in self.http.json("GET", "/files", describe="listing files").get("data")
                 or []]
        return sorted((f for f in files if purpose is None or f.purpose == purpose),
                      key=lambda f: (f.created_at is None, f.created_at, f.id))

    def delete_file(self, file_id: str) -> None:
        self.http.request("DELETE", f"/files/{file_id}", describe=f"deleting {file_id}")

    def file_content(self, file_id: str) -> bytes:
        return self.http.request("GET", f"/files/{file_id}/content", describe=f"downloading {file_id}").content

    # ------------------------------------------------------------------ jobs
    def _training_type(self, model: str, given: dict[str, Any]) -> dict[str, Any] | None:
        lora = given.pop("lora", None)
        if lora is not None and not isinstance(lora, bool):
            raise ValueError(f"the hyperparameter lora must be true or false, not {lora!r}")
        lora_keys = {k: given.pop(k) for k in ("lora_r", "lora_alpha", "lora_dropout") if k in given}
        if lora is False:
            if lora_keys:
                raise ValueError(f"lora=False (full fine-tuning) contradicts {', '.join(sorted(lora_keys))}")
            return {"type": "Full"}
        if not lora_keys:
            return None  # Together's default: LoRA with the model's default rank
        rank = lora_keys.get("lora_r")
        if rank is None:  # Together needs the rank with any LoRA setting: take the model's default, as its SDK does
            limits = self.http.json("GET", "/fine-tunes/models/limits", params={"model_name": model},
                                    describe=f"reading the limits of {model}")
            lora_limits = limits.get("lora_training") or {}
            rank = lora_limits.get("default_rank") or lora_limits.get("max_rank")
        out = {"type": "Lora", "lora_r": rank, "lora_alpha": lora_keys.get("lora_alpha", 2 * rank if isinstance(
            rank, int) else None), "lora_trainable_modules": "all-linear"}
        if "lora_dropout" in lora_keys:
            out["lora_dropout"] = lora_keys["lora_dropout"]
        return out

    def map_hyperparameters(self, hp: Hyperparameters, method: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Portable names and the local trainer's names that mean the same, in Together's words;
        ``learning_rate_multiplier`` has no Together equivalent (it takes an absolute rate)."""
        portable = {k: v for k, v in hp.portable().items() if v not in (None, "auto")}
        refused: dict[str, str] = {}
        if "learning_rate_multiplier" in portable:
            refused["learning_rate_multiplier"] = ("Together takes an absolute learning rate (its default is 1e-5): "
                                                   "pass hyperparameters={'learning_rate': 2e-5}")
        if "beta" in portable and method != "dpo":
            refused["beta"] = "beta without method='dpo': it is a DPO setting"
        for key in sorted(set(hp.extras()) - set(_EXTRA_NAMES)):
            refused[key] = (f"not a Together setting (it takes n_epochs, batch_size, beta for dpo and "
                            f"{', '.join(sorted(_EXTRA_NAMES))}; pass its other fields in extra={{...}})")
        sent = {k: v for k, v in portable.items() if k in ("n_epochs", "batch_size")}
        sent.update({_EXTRA_NAMES[k]: v for k, v in hp.extras().items() if k in _EXTRA_NAMES})
        if method == "dpo" and "beta" in portable:
            sent["dpo_beta"] = portable["beta"]
        return sent, refused

    def fine_tunable_models(self) -> list[str] | None:
        listed = self.http.json("GET", "/fine-tunes/models/supported", describe="listing fine-tunable models")
        return [str(m) for m in (listed.get("models") or [])] if isinstance(listed, dict) else None

    def is_fine_tuned(self, model: str) -> bool:
        return model in self._fine_tunes()

    def create_body(self, spec: JobSpec) -> dict[str, Any]:
        """The JSON body of ``POST /fine-tunes``. Portable hyperparameters and the local
        trainer's names that mean the same are mapped; anything else is refused by name."""
        if spec.method == "reinforcement":
            raise UnsupportedOperation("reinforcement fine-tuning", self.name, "Together trains with sft and dpo.")
        hp = spec.hyperparameters.portable()
        _, refused = self.map_hyperparameters(spec.hyperparameters, spec.method)
        if refused:
            raise UnsupportedOperation(f"the hyperparameter(s) {', '.join(sorted(refused))}", self.name,
                                       "; ".join(f"{k}: {why}" for k, why in sorted(refused.items())) + ".")
        extras = spec.hyperparameters.extras()
        user_metadata = sorted(set(spec.metadata) - {IDEMPOTENCY_KEY, REQUEST_DIGEST_KEY})
        if user_metadata:
            raise UnsupportedOperation(f"job metadata ({', '.join(user_metadata)})", self.name,
                                       "Together stores no metadata with a job.")
        if spec.integrations:
            raise UnsupportedOperation("integrations", self.name, "Pass Together's own W&B fields in extra={...}, "
                                                                  "e.g. {'wandb_key': ..., 'wandb_project_name': ...}.")
        clash = sorted(set(spec.extra) & set(_SET_BY_US))
        if clash:
            raise ValueError(f"extra may not set {', '.join(clash)}: pass them as arguments of jobs.create")
        given = {_EXTRA_NAMES[k]: v for k, v in extras.items()}
        body: dict[str, Any] = {"model": spec.model, "training_file": spec.training_file}
        body.update({k: v for k, v in hp.items() if k in ("n_epochs", "batch_size") and v != "auto"})
        training_type = self._training_type(spec.model, given)
        if training_type is not None:
            body["training_type"] = training_type
        body.update(given)  # learning_rate, warmup_ratio, weight_decay, max_grad_norm
        if spec.method == "dpo":
            body["training_method"] = {"method": "dpo", **({"dpo_beta": hp["beta"]} if hp.get("beta") not in
                                                           (None, "auto") else {})}
        else:
            body["training_method"] = {"method": "sft", "train_on_inputs": "auto"}
        if spec.validation_file:
            body["validation_file"] = spec.validation_file
            # Together reads the validation file only when n_evals > 0: one evaluation per epoch.
            epochs = body.get("n_epochs")
            body["n_evals"] = epochs if isinstance(epochs, int) else 1
        if spec.seed is not None:
            body["random_seed"] = spec.seed
        suffix = self._suffix(spec)
        if suffix:
            body["suffix"] = suffix
        body.update(spec.extra)
        return body

    @staticmethod
    def _suffix(spec: JobSpec) -> str | None:
        digest = spec.metadata.get(REQUEST_DIGEST_KEY, "")
        tag = parse.idempotency_tag(spec.idempotency_key, digest) if spec.idempotency_key else None
        suffix = "-".join(p for p in (spec.suffix, tag) if p) or None
        if suffix is not None and len(suffix) > _MAX_SUFFIX:
            room = _MAX_SUFFIX - (parse.TAG_LENGTH + 1 if tag else 0)
            raise ValueError(f"suffix {spec.suffix!r} is too long: Together takes {_MAX_SUFFIX} characters, "
                             f"{room} of them yours (finetune-sdk keeps its idempotency tag in the rest)")
        return suffix

    def _job(self, raw: dict[str, Any]) -> Job:
        raw_status = raw.get("status")
        status = self.job_status(raw_status)
        method: dict[str, Any] = raw["training_method"] if isinstance(raw.get("training_method"), dict) else {}
        ttype: dict[str, Any] = raw["training_type"] if isinstance(raw.get("training_type"), dict) else {}
        hyper = {k: raw[k] for k in ("n_epochs", "batch_size", "learning_rate", "warmup_ratio", "weight_decay",
                                     "max_grad_norm", "n_evals", "n_checkpoints") if raw.get(k) is not None}
        if ttype.get("type"):
            hyper["lora"] = ttype["type"] == "Lora"
        hyper.update({ours: ttype[theirs] for ours, theirs in (("lora_rank", "lora_r"), ("lora_alpha", "lora_alpha"),
                                                               ("lora_dropout", "lora_dropout")) if theirs in ttype})
        if method.get("method") == "dpo" and method.get("dpo_beta") is not None:
            hyper["beta"] = method["dpo_beta"]
        updated = parse.iso_time(raw.get("updated_at"))
        error = None
        if status is JobStatus.FAILED:
            found = parse.error_from_events(raw.get("events") or [])
            error = JobError(code=found[0] if found else raw_status, message=found[1] if found else
                             f"The job ended with status {raw_status} (Together gave no reason).")
        user_suffix, _ = parse.split_suffix(raw.get("suffix"))
        output = raw.get("model_output_name") or raw.get("output_name")
        done = status is JobStatus.SUCCEEDED
        return Job(id=raw["id"], provider=self.name, status=status, raw_status=raw_status, model=raw.get("model") or "",
                   fine_tuned_model=output if done else None, created_at=parse.iso_time(raw.get("created_at")),
                   # Together has no finished_at: a terminal job's last update is when it ended (unverified).
                   finished_at=updated if status.is_terminal else None,
                   estimated_finish=None if status.is_terminal else parse.seconds_until(updated, raw.get("progress")),
                   training_file=raw.get("training_file"), validation_file=raw.get("validation_file") or None,
                   method="dpo" if method.get("method") == "dpo" else "supervised", hyperparameters=hyper,
                   suffix=user_suffix, seed=raw.get("random_seed"),
                   # token_count read as the tokens trained (unverified: it may count the dataset once).
                   trained_tokens=raw.get("token_count") if done else None, error=error, raw=raw)

    def create_job(self, spec: JobSpec) -> Job:
        job = self._job(self.http.json("POST", "/fine-tunes", json=self.create_body(spec), describe="creating a job"))
        job.metadata = dict(spec.metadata)  # what the suffix tag stands for
        return job

    def get_job(self, job_id: str) -> Job:
        return self._job(self.http.json("GET", f"/fine-tunes/{job_id}", describe=f"retrieving {job_id}"))

    def list_jobs(self, *, limit: int | None = None, metadata: dict[str, str] | None = None) -> list[Job]:
        """Newest first. ``metadata`` may only name the idempotency key: it is matched against
        the tag in each job's suffix (Together stores nothing else)."""
        other = sorted(set(metadata or {}) - {IDEMPOTENCY_KEY})
        if other:
            raise UnsupportedOperation(f"filtering jobs by metadata ({', '.join(other)})", self.name,
                                       "Together stores no metadata; only the idempotency key is kept, in the suffix.")
        wanted = parse.key_hash(metadata[IDEMPOTENCY_KEY]) if metadata else None
        jobs = []
        for raw in self.http.json("GET", "/fine-tunes", describe="listing jobs").get("data") or []:
            job = self._job(raw)
            if metadata:
                _, tag = parse.split_suffix(raw.get("suffix"))
                if tag is None or tag[0] != wanted:
                    continue
                job.metadata = {IDEMPOTENCY_KEY: metadata[IDEMPOTENCY_KEY], REQUEST_DIGEST_KEY: tag[1]}
            jobs.append(job)
        jobs.sort(key=lambda j: (j.created_at is not None, j.created_at), reverse=True)
        return jobs[:limit] if limit is not None else jobs

    def cancel_job(self, job_id: str) -> Job:
        """Cancelling is gradual: the job answers cancel_requested (still running) until it
        has stopped; wait for ``cancelled``."""
        return self._job(self.http.json("POST", f"/fine-tunes/{job_id}/cancel", describe=f"cancelling {job_id}"))

    def list_events(self, job_id: str, *, after: str | None = None) -> list[Event]:
        """Together returns every event at once; those after ``after`` are cut here."""
        events = parse.events_from(self.http.json("GET", f"/fine-tunes/{job_id}/events",
                                                  describe=f"listing events of {job_id}").get("data") or [])
        ids = [e.id for e in events]
        return events[ids.index(after) + 1:] if after in ids else events

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        return parse.checkpoints_from(job_id, self.http.json("GET", f"/fine-tunes/{job_id}/checkpoints",
                                                             describe=f"listing checkpoints of {job_id}").get("data")
                                      or [])

    def metrics(self, job_id: str) -> list[MetricPoint]:
        return parse.points_from(self.http.json("GET", f"/fine-tunes/{job_id}/metrics",
                                                describe=f"reading metrics of {job_id}").get("metrics") or [])

    # ------------------------------------------------------------------ models and chat
    def list_models(self) -> list[ModelInfo]:
        listed = self.http.json("GET", "/models", describe="listing models")
        items = listed.get("data", []) if isinstance(listed, dict) else listed
        tuned = self._fine_tunes()
        return [ModelInfo(id=m["id"], created_at=from_timestamp(m["created"]) if m.get("created") else None,
                          owned_by=m.get("organization") or m.get("owned_by") or "", fine_tuned=m["id"] in tuned)
                for m in items if isinstance(m, dict) and m.get("id")]

    def _fine_tunes(self) -> dict[str, Job]:
        """Output model -> its succeeded job."""
        return {j.fine_tuned_model: j for j in self.list_jobs() if j.fine_tuned_model}

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        model = self._addressable(model)
        return self.http.chat("/chat/completions", {"model": model, "messages": messages, **params}, model=model)

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        model = self._addressable(model)
        return self.http.chat_stream("/chat/completions", {"model": model, "messages": messages, **params},
                                     model=model, ask_usage=False)
