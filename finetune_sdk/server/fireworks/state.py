"""What the Fireworks dialect keeps beside the simulated backend, and how it renders resources.

The backend (``SimulatedProvider`` with the ``fireworks`` flavor) runs jobs, files, models
and deployments on the shared clock. Fireworks concepts the backend has no word for live
here: datasets (a caller-named resource holding one uploaded file), the fields of a job the
backend does not model (display name, LoRA rank, ...), deployment settings, LoRA addons
loaded onto deployments (``deployedModels``) and pre-signed URLs. Everything is rendered in
Fireworks' shapes (the official SDK's ``types``): camelCase, full resource names, RFC 3339
times, int64 as strings, a nested ``status`` with gRPC code names.
"""

from __future__ import annotations

import math
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import NotFoundError
from ...providers.base import Provider
from ...types import Deployment, Job, JobStatus
from ..errors import ApiError
from .wire import drop_empty, rfc3339

__all__ = ["State", "DatasetRec", "JobMeta", "DeploymentRec", "LoraRec", "SignedUpload", "UploadArea", "PUBLIC_ACCOUNT"]

#: The account that owns Fireworks' own base models.
PUBLIC_ACCOUNT = "fireworks"


@dataclass
class DatasetRec:
    id: str
    created: float
    display_name: str | None = None
    format: str = "CHAT"
    example_count: str | None = None
    user_uploaded: bool = True
    file_id: str | None = None  # the backend file, once uploaded
    filename: str | None = None
    updated: float | None = None


@dataclass
class SignedUpload:
    dataset: str
    filename: str
    size: int
    path: Path | None = None


class UploadArea:
    """Files PUT to pre-signed URLs, kept until ``:validateUpload`` hands them to the backend."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="finetune-fireworks-"))
        self.pending: dict[str, SignedUpload] = {}  # token -> upload

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class JobMeta:
    kind: str  # "sft" | "dpo"
    dataset: str
    evaluation_dataset: str | None
    output_model: str  # the model id
    fields: dict[str, Any]  # what the request said that the backend does not model, echoed back
    deleted: bool = False
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))


@dataclass
class DeploymentRec:
    id: str
    created: float
    fields: dict[str, Any]


@dataclass
class LoraRec:
    id: str
    model: str
    deployment: str  # deployment id
    created: float
    default: bool
    fields: dict[str, Any]


class State:
    """The dialect's records for one backend and one account."""

    def __init__(self, provider: Provider[Any], account: str) -> None:
        self.provider = provider
        self.account = account
        self.lock = threading.RLock()
        self.datasets: dict[str, DatasetRec] = {}
        self.jobs: dict[str, JobMeta] = {}
        self.deployments: dict[str, DeploymentRec] = {}
        self.loras: dict[str, LoraRec] = {}
        self.uploads = UploadArea()  # Emulator.stop closes it
        self.downloads: dict[str, str] = {}  # token -> dataset id
        self.wire = self  # the admin routes render jobs through backend.wire.job
        clock = getattr(provider, "clock", None)
        self._now = clock.now if clock is not None else time.time
        timings = getattr(provider, "timings", None)
        self.lora_load_seconds = float(getattr(timings, "deploy_creating", 10.0))

    def now(self) -> float:
        return self._now()

    def name(self, collection: str, rid: str, account: str | None = None) -> str:
        return f"accounts/{account or self.account}/{collection}/{rid}"

    # ------------------------------------------------------------------ datasets
    def dataset(self, did: str) -> DatasetRec:
        rec = self.datasets.get(did)
        if rec is None:
            raise ApiError(404, f"Dataset {self.name('datasets', did)} not found.", code="NOT_FOUND")
        return rec

    def dataset_state(self, rec: DatasetRec) -> tuple[str, dict[str, str]]:
        if rec.file_id is None:
            return "UPLOADING", {"code": "OK", "message": ""}
        try:
            f = self.provider.get_file(rec.file_id)
        except NotFoundError:
            return "UPLOADING", {"code": "OK", "message": ""}
        if f.status == "uploaded":
            return "UPLOADING", {"code": "OK", "message": ""}
        if f.status == "error":  # how Fireworks reports a bad dataset is unverified: READY with the problem
            return "READY", {"code": "INVALID_ARGUMENT", "message": f.status_details or "invalid dataset"}
        return "READY", {"code": "OK", "message": ""}

    def render_dataset(self, rec: DatasetRec) -> dict[str, Any]:
        state, status = self.dataset_state(rec)
        body = drop_empty({"name": self.name("datasets", rec.id), "displayName": rec.display_name,
                           "createTime": rfc3339(rec.created), "updateTime": rfc3339(rec.updated or rec.created),
                           "state": state, "status": status, "format": rec.format,
                           "exampleCount": rec.example_count})
        if rec.user_uploaded:
            body["userUploaded"] = {}
        return body

    # ------------------------------------------------------------------ jobs
    def meta(self, jid: str, kind: str) -> JobMeta:
        meta = self.jobs.get(jid)
        collection = "supervisedFineTuningJobs" if kind == "sft" else "dpoJobs"
        if meta is None or meta.kind != kind or meta.deleted:
            raise ApiError(404, f"{collection[:-1]} {self.name(collection, jid)} not found.", code="NOT_FOUND")
        return meta

    def progress(self, job: Job) -> dict[str, int] | None:
        if job.status is JobStatus.SUCCEEDED:
            return {"percent": 100, "epoch": max(0, int(job.hyperparameters.get("n_epochs") or 1) - 1)}
        points = self.provider.metrics(job.id)
        epochs = job.hyperparameters.get("n_epochs")
        if not points or not isinstance(epochs, int) or epochs < 1:
            return None
        done = points[-1].epoch or 0.0
        return {"percent": min(99, math.floor(100 * done / epochs)), "epoch": min(epochs - 1, math.floor(done))}

    def update_time(self, job: Job) -> float:
        events = self.provider.list_events(job.id)
        latest = max((e.created_at.timestamp() for e in events), default=None)
        created = job.created_at.timestamp() if job.created_at else self.now()
        return max(created, latest or created)

    def job(self, job: Job, base_url: str = "") -> dict[str, Any]:
        """A job in Fireworks' shape (supervised at the top level, DPO with a trainingConfig)."""
        meta = self.jobs.get(job.id) or JobMeta("sft", "", None, job.id, {})
        error = job.error
        status = {"code": error.code or "INTERNAL", "message": error.message} if error else {"code": "OK",
                                                                                              "message": ""}
        epochs = job.hyperparameters.get("n_epochs")
        training = {**meta.fields.get("training", {}), "baseModel": job.model,
                    "outputModel": self.name("models", meta.output_model),
                    "epochs": epochs if isinstance(epochs, int) else meta.fields.get("training", {}).get("epochs")}
        body: dict[str, Any] = {
            "name": self.name("supervisedFineTuningJobs" if meta.kind == "sft" else "dpoJobs", job.id),
            "displayName": meta.fields.get("displayName"), "dataset": self.name("datasets", meta.dataset),
            "state": job.raw_status, "status": status, "createTime": rfc3339(job.created_at),
            "completedTime": rfc3339(job.finished_at), "createdBy": f"{self.account}@emulator.invalid",
            **{k: v for k, v in meta.fields.items() if k not in ("displayName", "training")},
        }
        if meta.kind == "dpo":
            body["trainingConfig"] = drop_empty(training)
            return drop_empty(body)
        body.update(training)
        body["updateTime"] = rfc3339(self.update_time(job))
        if meta.evaluation_dataset:
            body["evaluationDataset"] = self.name("datasets", meta.evaluation_dataset)
        body["jobProgress"] = self.progress(job)
        if base_url and body["jobProgress"]:  # the file exists once training has written to it
            body["metricsFileSignedUrl"] = f"{base_url}/fireworks/_signed/metrics/{meta.metrics_token}"
        return drop_empty(body)

    # ------------------------------------------------------------------ models
    def model_id(self, name: str) -> tuple[str, str] | None:
        """(account, id) of ``accounts/{a}/models/{id}``."""
        parts = name.split("/")
        if len(parts) == 4 and parts[0] == "accounts" and parts[2] == "models" and parts[1] and parts[3]:
            return parts[1], parts[3]
        return None

    def job_of_model(self, model: str) -> Job | None:
        for jid, meta in self.jobs.items():
            if self.name("models", meta.output_model) == model:
                try:
                    job = self.provider.get_job(jid)
                except NotFoundError:
                    return None
                return job if job.fine_tuned_model == model else None
        return None

    def tuned_models(self) -> list[str]:
        return [m.id for m in self.provider.list_models() if m.fine_tuned]

    def base_models(self) -> list[str]:
        return [m.id for m in self.provider.list_models() if not m.fine_tuned]

    def render_model(self, name: str) -> dict[str, Any]:
        if name in self.base_models():
            return {"name": name, "displayName": name.rsplit("/", 1)[-1], "kind": "HF_BASE_MODEL", "state": "READY",
                    "status": {"code": "OK", "message": ""}, "tunable": True, "supportsLora": True,
                    "public": True, "supportsServerless": True, "conversationConfig": {"style": "jinja"},
                    "createTime": rfc3339(1_700_000_000)}
        job = self.job_of_model(name)
        meta = self.jobs.get(job.id) if job else None
        lora_rank = (meta.fields.get("training", {}).get("loraRank") if meta else None) or 8
        refs = [{"name": self.name("deployedModels", r.id), "deployment": self.name("deployments", r.deployment),
                 "state": self.lora_state(r), "default": r.default, "public": False}
                for r in self.loras.values() if r.model == name]
        return drop_empty({
            "name": name, "displayName": name.rsplit("/", 1)[-1], "kind": "HF_PEFT_ADDON", "state": "READY",
            "status": {"code": "OK", "message": ""}, "tunable": False, "supportsLora": False, "public": False,
            "createTime": rfc3339(job.finished_at if job else None),
            "fineTuningJob": self.name("supervisedFineTuningJobs" if not meta or meta.kind == "sft" else "dpoJobs",
                                       job.id) if job else None,
            "peftDetails": {"baseModel": job.model, "r": lora_rank, "targetModules": ["q_proj", "k_proj", "v_proj",
                                                                                     "o_proj"]} if job else None,
            "conversationConfig": {"style": "jinja"}, "deployedModelRefs": refs})

    def model_exists(self, name: str) -> bool:
        return any(m.id == name for m in self.provider.list_models())

    # ------------------------------------------------------------------ deployments
    def backend_deployment(self, did: str) -> Deployment | None:
        try:
            return self.provider.get_deployment(did)
        except NotFoundError:
            return None

    @staticmethod
    def deployment_state(dep: Deployment) -> str:
        return "READY" if dep.status == "succeeded" else "FAILED" if dep.status == "failed" else "CREATING"

    def render_deployment(self, rec: DeploymentRec, dep: Deployment) -> dict[str, Any]:
        state = self.deployment_state(dep)
        f = rec.fields
        replicas = max(f.get("minReplicaCount") or 0, 1) if state == "READY" else 0
        return drop_empty({**f, "name": self.name("deployments", rec.id), "baseModel": dep.model, "state": state,
                           "status": {"code": "OK", "message": ""}, "createTime": rfc3339(rec.created),
                           "updateTime": rfc3339(rec.created), "replicaCount": replicas,
                           "desiredReplicaCount": replicas})

    def ready_deployment(self, did: str) -> Deployment | None:
        rec = self.deployments.get(did)
        dep = self.backend_deployment(did) if rec else None
        return dep if dep is not None and self.deployment_state(dep) == "READY" else None

    # ------------------------------------------------------------------ LoRA addons
    def lora_state(self, rec: LoraRec) -> str:
        if self.ready_deployment(rec.deployment) is None:
            return "DEPLOYING"
        return "DEPLOYED" if self.now() >= rec.created + self.lora_load_seconds else "DEPLOYING"

    def render_lora(self, rec: LoraRec) -> dict[str, Any]:
        return drop_empty({**rec.fields, "name": self.name("deployedModels", rec.id), "model": rec.model,
                           "deployment": self.name("deployments", rec.deployment), "default": rec.default,
                           "state": self.lora_state(rec), "status": {"code": "OK", "message": ""},
                           "createTime": rfc3339(rec.created), "updateTime": rfc3339(rec.created)})

    def serving(self, model: str, deployment: str | None = None) -> bool:
        """Whether inference answers for ``model`` (on ``deployment``, given ``#<deployment>``)."""
        if deployment is None and model in self.base_models():
            return True  # serverless base models (whether each tunable model is serverless is unverified)
        for did, rec in self.deployments.items():
            if deployment is not None and did != deployment:
                continue
            dep = self.ready_deployment(did)
            if dep is not None and dep.model == model and rec.fields.get("baseModel", model) == model:
                return True
        return any(r.model == model and (deployment is None or r.deployment == deployment)
                   and self.lora_state(r) == "DEPLOYED" for r in self.loras.values())
