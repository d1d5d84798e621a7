"""OpenAI fine-tuning, or any service that speaks its API (``base_url``).

A translation over :class:`~finetune_sdk.providers.http.HTTPProvider`: routes, request
bodies, and the parsing of OpenAI's files, jobs, events (pages come newest first; they
are read back to the last event already seen), checkpoints and statuses. Transport,
retries, errors and pagination are the base's. Files above ``upload_threshold`` go
through the Uploads API in parallel parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import SecretStr

from .._secrets import get_logger
from ..config import ProviderSettings, setting
from ..errors import ProviderError, UnsupportedOperation
from ..data import catalog
from ..metrics import merge_points, parse_results_csv, point_from_dict, points_from_events
from ..types import (ChatDelta, ChatResponse, Checkpoint, Deployment, DeploySpec, Event, File, Hyperparameters, Job,
                     JobError, JobSpec,
                     JobStatus, MetricPoint, ModelInfo, from_timestamp)
from .base import Capability
from .http import HTTPProvider, HTTPSettings

__all__ = ["OpenAIProvider", "OpenAISettings", "OpenAIWireSettings"]

_log = get_logger(__name__)
_PORTABLE = ("n_epochs", "batch_size", "learning_rate_multiplier", "beta")
SW = TypeVar("SW", bound="OpenAIWireSettings")


class OpenAIWireSettings(HTTPSettings):
    """Settings of the services that speak OpenAI's fine-tuning API (OpenAI, Azure OpenAI)."""

    upload_threshold: int = setting(64 * 1024 * 1024, description="Files above this many bytes use the Uploads API.")
    upload_part_size: int = setting(64 * 1024 * 1024, description="Bytes per Uploads API part (at most 64 MB).")
    upload_concurrency: int = setting(4, description="Parts uploaded in parallel.")


class OpenAISettings(OpenAIWireSettings):
    api_key: SecretStr = setting(..., env=("OPENAI_API_KEY",), secret=True, example="export OPENAI_API_KEY=sk-...")
    base_url: str | None = setting(None, env=("OPENAI_BASE_URL",), example='base_url = "https://api.openai.com/v1"',
                                   description="Any OpenAI-compatible fine-tuning API.")
    organization: str | None = setting(None, env=("OPENAI_ORG_ID",))
    project: str | None = setting(None, env=("OPENAI_PROJECT_ID",))


class OpenAIProvider(HTTPProvider[SW]):
    """OpenAI fine-tuning, or any service that speaks its API."""

    name = "openai"
    capabilities = frozenset({Capability.UPLOAD, Capability.FILES, Capability.CREATE_JOB, Capability.EVENTS,
                              Capability.CHECKPOINTS, Capability.METRICS, Capability.CANCEL, Capability.PAUSE,
                              Capability.RESUME, Capability.DEPLOY, Capability.CHAT, Capability.MODELS,
                              Capability.DELETE_MODEL, Capability.METADATA_FILTER})
    # `paused` is not in the documented enum, but the spec's pause example returns it.
    statuses: ClassVar[Mapping[str, JobStatus]] = {
        "validating_files": JobStatus.VALIDATING, "queued": JobStatus.QUEUED, "running": JobStatus.RUNNING,
        "paused": JobStatus.PAUSED, "succeeded": JobStatus.SUCCEEDED, "failed": JobStatus.FAILED,
        "cancelled": JobStatus.CANCELLED}
    Settings: ClassVar[type[ProviderSettings]] = OpenAISettings

    def base_url(self) -> str:
        return self.settings.base_url or "https://api.openai.com/v1"  # type: ignore[attr-defined]

    def auth_headers(self) -> Mapping[str, str]:
        s: Any = self.settings
        headers = {"Authorization": f"Bearer {s.api_key.get_secret_value()}"}
        headers.update({k: v for k, v in (("OpenAI-Organization", s.organization), ("OpenAI-Project", s.project)) if v})
        return headers

    # -- files
    def _file(self, raw: dict[str, Any]) -> File:
        status = {"processed": "processed", "error": "error"}.get(raw.get("status") or "", "uploaded")
        error = raw.get("error")
        details = raw.get("status_details") or (error.get("message") if isinstance(error, dict) else None)
        return File(id=raw["id"], filename=raw.get("filename") or "", bytes=raw.get("bytes") or 0,
                    purpose=raw.get("purpose") or "", status=status, status_details=details,  # type: ignore[arg-type]
                    created_at=from_timestamp(raw.get("created_at")), raw=raw)

    def upload(self, path: Path, *, purpose: str = "fine-tune") -> File:
        size = path.stat().st_size
        if size > self.settings.upload_threshold:
            return self._upload_in_parts(path, size, purpose)
        return self._file(self.http.json("POST", "/files", files={"file": (path.name, path.read_bytes(),
                                                                            "application/jsonl")},
                                         data={"purpose": purpose}, describe=f"uploading {path.name}"))

    def _upload_in_parts(self, path: Path, size: int, purpose: str) -> File:
        part_size = min(self.settings.upload_part_size, 64 * 1024 * 1024)
        upload = self.http.json("POST", "/uploads", json={"bytes": size, "filename": path.name, "purpose": purpose,
                                                          "mime_type": "application/jsonl"},
                                describe=f"starting the upload of {path.name}")

        def send(offset: int) -> str:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(part_size)
            part = self.http.json("POST", f"/uploads/{upload['id']}/parts", files={"data": (path.name, data)},
                                  describe=f"uploading a part of {path.name}")
            return str(part["id"])

        try:  # parts are independent (their order is fixed at completion), so they go in parallel
            with ThreadPoolExecutor(max_workers=max(1, self.settings.upload_concurrency)) as pool:
                part_ids = list(pool.map(send, range(0, size, part_size)))
            md5 = hashlib.md5(usedforsecurity=False)
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    md5.update(chunk)
            done = self.http.json("POST", f"/uploads/{upload['id']}/complete",
                                  json={"part_ids": part_ids, "md5": md5.hexdigest()},
                                  describe=f"completing the upload of {path.name}")
        except BaseException:
            try:
                self.http.request("POST", f"/uploads/{upload['id']}/cancel", describe="cancelling the upload")
            except ProviderError:  # the original error matters more
                pass
            raise
        if not done.get("file"):
            raise ProviderError(f"The upload of {path.name} completed without a file.", provider=self.name)
        return self._file(done["file"])

    def get_file(self, file_id: str) -> File:
        return self._file(self.http.json("GET", f"/files/{file_id}"))

    def list_files(self, *, purpose: str | None = None) -> list[File]:
        return [self._file(f) for f in self.http.pages("/files", {"order": "asc", **({"purpose": purpose} if purpose
                                                                                       else {})})]

    def delete_file(self, file_id: str) -> None:
        self.http.request("DELETE", f"/files/{file_id}")

    def file_content(self, file_id: str) -> bytes:
        return self.http.request("GET", f"/files/{file_id}/content").content

    # -- jobs
    def _job(self, raw: dict[str, Any]) -> Job:
        method = raw.get("method") or {}
        mtype = method.get("type") or "supervised"
        block = method.get(mtype) if isinstance(method.get(mtype), dict) else {}
        hyper = {**dict(raw.get("hyperparameters") or {}), **((block or {}).get("hyperparameters") or {})}
        hyper = {k: v for k, v in hyper.items() if v is not None and v != -1}
        err = raw.get("error")  # "error": {} on healthy jobs
        error = JobError(code=err.get("code"), message=err["message"], param=err.get("param")) \
            if isinstance(err, dict) and err.get("message") else None
        ft = raw.get("fine_tuned_model")
        suffix = (ft.split(":")[3] or None) if isinstance(ft, str) and ft.startswith("ft:") and ft.count(":") >= 4 \
            else None
        return Job(id=raw["id"], provider=self.name, status=self.job_status(raw.get("status")),
                   raw_status=raw.get("status"), model=raw.get("model") or "", fine_tuned_model=ft,
                   created_at=from_timestamp(raw.get("created_at")), finished_at=from_timestamp(raw.get("finished_at")),
                   estimated_finish=from_timestamp(raw.get("estimated_finish")),
                   training_file=raw.get("training_file"), validation_file=raw.get("validation_file"), method=mtype,
                   hyperparameters=hyper, suffix=suffix, seed=raw.get("seed"), trained_tokens=raw.get("trained_tokens"),
                   error=error, metadata=dict(raw.get("metadata") or {}),
                   integrations=list(raw.get("integrations") or []), result_files=list(raw.get("result_files") or []),
                   raw=raw)

    def map_hyperparameters(self, hp: Hyperparameters, method: str) -> tuple[dict[str, Any], dict[str, str]]:
        sent = {k: v for k, v in hp.portable().items() if k in _PORTABLE and (k != "beta" or method == "dpo")}
        refused = dict.fromkeys(hp.extras(), "not an OpenAI fine-tuning hyperparameter (it takes n_epochs, "
                                             "batch_size, learning_rate_multiplier, and beta for dpo)")
        return sent, refused

    def create_body(self, spec: JobSpec) -> dict[str, Any]:
        """The JSON body of ``POST /fine_tuning/jobs`` (Azure adds its fields to it)."""
        hyper, refused = self.map_hyperparameters(spec.hyperparameters, spec.method)
        if refused:
            raise UnsupportedOperation(f"the hyperparameter(s) {', '.join(sorted(refused))}", self.name,
                                       "Hosted providers accept n_epochs, batch_size, learning_rate_multiplier "
                                       "(and beta for dpo); the others are for the local trainer.")
        block: dict[str, Any] = {"hyperparameters": hyper} if hyper else {}
        if spec.method == "reinforcement":
            if spec.extra.get("grader") is None:
                raise UnsupportedOperation("reinforcement fine-tuning without a grader", self.name,
                                           "Pass extra={'grader': {...}}.")
            block["grader"] = spec.extra["grader"]
        body: dict[str, Any] = {"model": spec.model, "training_file": spec.training_file,
                                "method": {"type": spec.method, spec.method: block}}
        body.update({k: getattr(spec, k) for k in ("validation_file", "suffix", "seed")
                     if getattr(spec, k) is not None})
        if spec.metadata:
            body["metadata"] = dict(spec.metadata)
        if spec.integrations:
            body["integrations"] = spec.integrations
        body.update({k: v for k, v in spec.extra.items() if k != "grader"})
        return body

    def create_job(self, spec: JobSpec) -> Job:
        job = self._job(self.http.json("POST", "/fine_tuning/jobs", json=self.create_body(spec),
                                       describe="creating a job"))
        for key, wanted in spec.hyperparameters.portable().items():  # some services ignore them (openai-python#1276)
            got = job.hyperparameters.get(key)
            if wanted not in (None, "auto") and got not in (None, "auto") and got != wanted:
                _log.warning("%s: job %s reports %s=%r, not the %r requested.", self.name, job.id, key, got, wanted)
        return job

    def get_job(self, job_id: str) -> Job:
        return self._job(self.http.json("GET", f"/fine_tuning/jobs/{job_id}", describe=f"retrieving {job_id}"))

    def list_jobs(self, *, limit: int | None = None, metadata: dict[str, str] | None = None) -> list[Job]:
        query: dict[str, Any] = {"limit": min(100, limit or 100)}
        query.update({f"metadata[{k}]": v for k, v in (metadata or {}).items()})
        jobs = []
        for raw in self.http.pages("/fine_tuning/jobs", query):
            job = self._job(raw)
            if metadata and any(job.metadata.get(k) != v for k, v in metadata.items()):
                continue  # a service that ignores the filter
            jobs.append(job)
            if limit is not None and len(jobs) >= limit:
                break
        return jobs

    def _action(self, job_id: str, action: str) -> Job:
        return self._job(self.http.json("POST", f"/fine_tuning/jobs/{job_id}/{action}", describe=f"{action} {job_id}"))

    def cancel_job(self, job_id: str) -> Job:
        return self._action(job_id, "cancel")

    def pause_job(self, job_id: str) -> Job:
        return self._action(job_id, "pause")

    def resume_job(self, job_id: str) -> Job:
        return self._action(job_id, "resume")

    def list_events(self, job_id: str, *, after: str | None = None) -> list[Event]:
        """Events newer than ``after``, oldest first: pages (newest first) are read back
        until the last event already seen, so nothing is missed or repeated."""
        newest_first: list[Event] = []
        for raw in self.http.pages(f"/fine_tuning/jobs/{job_id}/events", {"limit": 100}):
            if after is not None and raw["id"] == after:
                break
            level = {"warn": "warning"}.get(raw.get("level") or "info", raw.get("level") or "info")
            newest_first.append(Event(id=raw["id"], created_at=from_timestamp(raw.get("created_at") or 0),
                                      level=level if level in ("info", "warning", "error") else "info",  # type: ignore[arg-type]
                                      message=raw.get("message") or "", data=raw.get("data") or {},
                                      kind="metrics" if raw.get("type") == "metrics" else "message"))
        return newest_first[::-1]

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        out = []
        for raw in self.http.pages(f"/fine_tuning/jobs/{job_id}/checkpoints", {"limit": 100}):
            metrics = {**(raw.get("metrics") or {}), "step": raw.get("step_number")}
            out.append(Checkpoint(id=raw["id"], step=raw.get("step_number") or 0,
                                  created_at=from_timestamp(raw.get("created_at")),
                                  model=raw.get("fine_tuned_model_checkpoint"), metrics=point_from_dict(metrics)))
        return sorted(out, key=lambda c: c.step)

    def metrics(self, job_id: str) -> list[MetricPoint]:
        from_csv: list[MetricPoint] = []
        for fid in self.get_job(job_id).result_files:
            try:
                from_csv.extend(parse_results_csv(self.file_content(fid)))
            except ProviderError:
                continue  # result files can expire; events still tell the story
        return merge_points(points_from_events(self.list_events(job_id)), from_csv)

    # -- models, deployments, chat
    def is_fine_tuned(self, model: str) -> bool:
        """Whether a model id names a fine-tune (OpenAI: ``ft:base:org:suffix:id``)."""
        return model.startswith("ft:")

    def fine_tunable_models(self) -> list[str] | None:
        # /models lists every model; the catalog knows which families take fine-tuning.
        return [m.id for m in self.list_models() if not m.fine_tuned and catalog.lookup(m.id) is not None]

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m["id"], created_at=from_timestamp(m.get("created")), owned_by=m.get("owned_by") or "",
                          fine_tuned=self.is_fine_tuned(m["id"])) for m in self.http.pages("/models")]

    def delete_model(self, model: str) -> None:
        self.http.request("DELETE", f"/models/{model}", describe=f"deleting {model}")

    def deploy(self, model: str, spec: DeploySpec) -> Deployment:
        # OpenAI serves a fine-tuned model as soon as the job succeeds: deploying is checking it exists.
        self.http.request("GET", f"/models/{model}", describe=f"checking {model}")
        return Deployment(name=spec.name or model, model=model, provider=self.name, status="succeeded",
                          raw_status="ready", ready=True, base_url=self.http.base_url)

    def get_deployment(self, name: str) -> Deployment:
        return self.deploy(name, DeploySpec(name=name))

    def list_deployments(self) -> list[Deployment]:
        return [Deployment(name=m.id, model=m.id, provider=self.name, ready=True, base_url=self.http.base_url)
                for m in self.list_models() if m.fine_tuned]

    def delete_deployment(self, name: str) -> None:
        raise UnsupportedOperation("deleting a deployment", self.name,
                                   "OpenAI has no deployments: a fine-tuned model is served until you delete the "
                                   "model itself (client.models.delete).")

    def chat_route(self, model: str) -> str:
        return "/chat/completions"

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        return self.http.chat(self.chat_route(model), {"model": model, "messages": messages, **params}, model=model)

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        return self.http.chat_stream(self.chat_route(model), {"model": model, "messages": messages, **params},
                                     model=model)
