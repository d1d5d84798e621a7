"""Fireworks AI: supervised (LoRA) and DPO fine-tuning, deployments and chat.

A translation over :class:`~finetune_sdk.providers.http.HTTPProvider` (the retries, the
error envelopes — gRPC statuses included — and page-token lists are the base's):

- control plane ``{base_url}/v1/accounts/{account_id}/...``, inference
  ``{base_url}/inference/v1/chat/completions``; bearer auth;
- a file is a dataset: created under an id of ours, uploaded (``:upload`` up to 150 MB, else
  a signed URL), READY once processed (the client waits for it with its poller);
- exactly-once create without job metadata: the job id is derived from the idempotency key
  (``supervisedFineTuningJobId`` / ``dpoJobId``), so a lookup is one GET; the rest of the
  metadata is kept in ``displayName`` (:mod:`.translate`);
- events are derived from the job object (there is no events endpoint), metrics from the
  job's metrics file (its format is unverified);
- deploy = a deployment of the fine-tuned model (or a LoRA loaded onto a deployment with
  addons, ``deployment=`` in the deploy extras), waited on until READY.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr, field_validator

from ...config import setting
from ...errors import ProviderError
from ...polling import Poller, PollSchedule
from ...types import (IDEMPOTENCY_KEY, ChatDelta, ChatResponse, Deployment, DeploySpec, Event, File, Hyperparameters,
                      Job, JobSpec, JobStatus, MetricPoint, ModelInfo)
from ..base import Capability
from ..http import HTTPProvider, HTTPSettings, error_from_response
from .translate import (JOB_COLLECTIONS, create_body, events, job_error, key_job_id, map_hyperparameters,
                        metric_points, parse_time, read_display_name, slug)

__all__ = ["FireworksProvider", "FireworksSettings"]

_PUBLIC = "fireworks"  # the account that owns Fireworks' base models
_DEPLOYMENT_FINAL = {"READY", "FAILED", "DELETED"}
_LORA_FINAL = {"DEPLOYED"}


class FireworksSettings(HTTPSettings):
    api_key: SecretStr = setting(..., env=("FIREWORKS_API_KEY",), secret=True,
                                 example="export FIREWORKS_API_KEY=fw_...")
    account_id: str = setting(..., env=("FIREWORKS_ACCOUNT_ID",),
                              example='account_id = "my-account"   # the slug in accounts/<slug>/..., not an email',
                              description="The account slug (app.fireworks.ai shows it), not the login email.")
    base_url: str = setting("https://api.fireworks.ai", env=("FIREWORKS_BASE_URL",),
                            description="The API; inference is at {base_url}/inference/v1.")
    upload_threshold: int = setting(150 * 1024 * 1024, description="Files above this many bytes are uploaded "
                                                                   "through a signed URL.")
    accelerator_type: str | None = setting(None, description="acceleratorType of new deployments, e.g. "
                                                             "NVIDIA_H100_80GB (default: the service's choice).")
    deployment_shape: str | None = setting(None, description="deploymentShape of new deployments.")
    min_replicas: int = setting(0, description="minReplicaCount of new deployments (0 scales to zero).")
    max_replicas: int = setting(1, description="maxReplicaCount of new deployments.")
    deploy_timeout: float = setting(1800.0, description="Seconds to wait for a deployment to be READY.")

    @field_validator("account_id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not value or "@" in value or "/" in value or value != value.strip():
            raise ValueError("use the account slug (as in accounts/<slug>/...), not an email or a path")
        return value

    @field_validator("min_replicas", "max_replicas", "upload_threshold")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative")
        return value


class FireworksProvider(HTTPProvider[FireworksSettings]):
    """Fireworks AI fine-tuning, deployments and chat."""

    name = "fireworks"
    capabilities = frozenset({Capability.UPLOAD, Capability.FILES, Capability.CREATE_JOB, Capability.EVENTS,
                              Capability.METRICS, Capability.CANCEL, Capability.RESUME, Capability.DEPLOY,
                              Capability.CHAT, Capability.MODELS, Capability.DELETE_MODEL,
                              Capability.METADATA_FILTER})
    # JobState of the SDK's SupervisedFineTuningJob / DpoJob. Left out, so shown as unknown with
    # the raw value: UNSPECIFIED, IDLE (meaning undocumented) and DELETING* (not an outcome).
    statuses: ClassVar[Mapping[str, JobStatus]] = {
        "job_state_creating": JobStatus.QUEUED, "job_state_creating_input_dataset": JobStatus.QUEUED,
        "job_state_validating": JobStatus.VALIDATING, "job_state_pending": JobStatus.QUEUED,
        "job_state_re_queueing": JobStatus.QUEUED, "job_state_running": JobStatus.RUNNING,
        "job_state_writing_results": JobStatus.RUNNING, "job_state_rollout": JobStatus.RUNNING,
        "job_state_evaluation": JobStatus.RUNNING, "job_state_cancelling": JobStatus.RUNNING,
        "job_state_paused": JobStatus.PAUSED, "job_state_completed": JobStatus.SUCCEEDED,
        "job_state_early_stopped": JobStatus.SUCCEEDED, "job_state_failed": JobStatus.FAILED,
        "job_state_expired": JobStatus.FAILED, "job_state_cancelled": JobStatus.CANCELLED}
    Settings = FireworksSettings
    #: Jobs have no metadata: the request digest and short metadata ride in the 63-character
    #: displayName, which cannot hold a migration's lineage (kept in the local ledger instead).
    stores_metadata = False
    takes_seed = False

    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    def auth_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key.get_secret_value()}"}

    # ------------------------------------------------------------------ names
    def _acct(self, path: str = "") -> str:
        return f"/v1/accounts/{self.settings.account_id}{path}"

    def _short(self, name: Any, collection: str) -> str | None:
        if not isinstance(name, str) or not name:
            return None
        return name.rsplit("/", 1)[-1] if name.startswith("accounts/") and f"/{collection}/" in name else name

    def _dataset(self, value: str) -> str:
        if not isinstance(value, str) or not value.strip() or " " in value:
            raise ValueError(f"not a Fireworks dataset id or name: {value!r}")
        return value if value.startswith("accounts/") else self._acct(f"/datasets/{value}").removeprefix("/v1/")

    def _job_path(self, job_id: str) -> tuple[str, str]:
        """(collection, path) of an SDK job id: ``<id>`` (supervised), ``dpoJobs/<id>``, or a full name."""
        if not isinstance(job_id, str) or not job_id.strip() or " " in job_id:
            raise ValueError(f"not a Fireworks job id: {job_id!r}")
        parts = job_id.split("/")
        if len(parts) == 4 and parts[0] == "accounts" and parts[2] in JOB_COLLECTIONS and parts[3]:
            return parts[2], f"/v1/{job_id}"
        if len(parts) == 2 and parts[0] in JOB_COLLECTIONS and parts[1]:
            return parts[0], self._acct(f"/{job_id}")
        if len(parts) == 1:
            return "supervisedFineTuningJobs", self._acct(f"/supervisedFineTuningJobs/{job_id}")
        raise ValueError(f"not a Fireworks job id: {job_id!r} (an id, dpoJobs/<id>, or accounts/<a>/<jobs>/<id>)")

    def is_job_id(self, value: str) -> bool:
        return "/models/" not in value and not value.startswith("models/")

    def is_fine_tuned(self, model: str) -> bool:
        return model.startswith("accounts/") and not model.startswith(f"accounts/{_PUBLIC}/")

    def map_hyperparameters(self, hp: Hyperparameters, method: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Portable names and the local trainer's that mean the same, as Fireworks' fields
        (``learning_rate_multiplier`` is refused: Fireworks takes an absolute rate)."""
        return map_hyperparameters(hp, method)

    def fine_tunable_models(self) -> list[str] | None:
        """The base models of Fireworks' public account whose model object says ``tunable``."""
        return [str(m["name"]) for m in self.http.pages(f"/v1/accounts/{_PUBLIC}/models", {"pageSize": 200},
                                                        items="models", cursor="pageToken", token="nextPageToken")
                if m.get("tunable")]

    # ------------------------------------------------------------------ datasets as files
    def _file(self, raw: dict[str, Any], size: int = 0) -> File:
        state, nested = raw.get("state"), raw.get("status") or {}
        bad = nested.get("code") not in (None, "", "OK")
        status = ("error" if bad else "processed") if state == "READY" else "uploaded"
        return File(id=self._short(raw.get("name"), "datasets") or "", filename=raw.get("displayName") or "",
                    bytes=size, purpose="fine-tune", status=status,  # type: ignore[arg-type]
                    status_details=nested.get("message") if bad else None,
                    created_at=parse_time(raw.get("createTime")), raw=raw)

    def upload(self, path: Path, *, purpose: str = "fine-tune") -> File:
        if purpose != "fine-tune":
            raise ValueError(f"Fireworks datasets hold fine-tuning data: purpose must be 'fine-tune', not {purpose!r}")
        path = Path(path)
        size = path.stat().st_size
        did = f"{slug(path.stem, 40) or 'dataset'}-{secrets.token_hex(4)}"
        with path.open("rb") as fh:
            examples = sum(1 for line in fh if line.strip())
        base = self._acct(f"/datasets/{did}")
        # An id of ours makes a retried create harmless: a 409 says an earlier attempt made it.
        self.http.request("POST", self._acct("/datasets"), ok_statuses=(409,), describe=f"creating dataset {did}",
                          json={"datasetId": did, "dataset": {"displayName": path.name[:63], "format": "CHAT",
                                                              "exampleCount": str(examples), "userUploaded": {}}})
        if size <= self.settings.upload_threshold:
            self.http.request("POST", f"{base}:upload", describe=f"uploading {path.name}",
                              files={"file": (path.name, path.read_bytes(), "application/jsonl")})
        else:
            urls = self.http.json("POST", f"{base}:getUploadEndpoint", json={"filenameToSize": {path.name: str(size)}},
                                  describe=f"asking where to upload {path.name}").get("filenameToSignedUrls") or {}
            if path.name not in urls:
                raise ProviderError(f"Fireworks gave no upload URL for {path.name}.", provider=self.name)
            # Header names from third-party code; the values Fireworks signs are unverified.
            self.http.request("PUT", urls[path.name], presigned=True, content=_FileBody(path),
                              headers={"Content-Type": "application/octet-stream", "Content-Length": str(size),
                                       "x-goog-content-length-range": f"{size},{size}"},
                              describe=f"uploading {path.name} to its signed URL")
            self.http.request("POST", f"{base}:validateUpload", json={}, describe=f"finishing the upload of {did}")
        return self._file(self.http.json("GET", base, describe=f"reading dataset {did}"), size)

    def get_file(self, file_id: str) -> File:
        return self._file(self.http.json("GET", f"/v1/{self._dataset(file_id)}", describe=f"reading {file_id}"))

    def list_files(self, *, purpose: str | None = None) -> list[File]:
        if purpose not in (None, "fine-tune"):
            return []
        files = [self._file(d) for d in self.http.pages(self._acct("/datasets"), {"pageSize": 200}, items="datasets",
                                                         cursor="pageToken", token="nextPageToken")]
        return sorted(files, key=lambda f: (f.created_at is None, f.created_at, f.id))

    def delete_file(self, file_id: str) -> None:
        self.http.request("DELETE", f"/v1/{self._dataset(file_id)}", describe=f"deleting {file_id}")

    def file_content(self, file_id: str) -> bytes:
        urls = self.http.json("GET", f"/v1/{self._dataset(file_id)}:getDownloadEndpoint",
                              describe=f"asking where to download {file_id}").get("filenameToSignedUrls") or {}
        return b"".join(self.http.request("GET", url, presigned=True, describe=f"downloading {name}").content
                        for name, url in sorted(urls.items()))

    # ------------------------------------------------------------------ jobs
    def _job(self, raw: dict[str, Any], key: str | None = None) -> Job:
        collection = next((c for c in JOB_COLLECTIONS if f"/{c}/" in str(raw.get("name"))), "supervisedFineTuningJobs")
        rid = str(raw.get("name") or "").rsplit("/", 1)[-1]
        job_id = rid if collection == "supervisedFineTuningJobs" else f"{collection}/{rid}"
        training = raw.get("trainingConfig") or raw
        status = self.job_status(raw.get("state"))
        loss = (raw.get("lossConfig") or {}).get("dpo") or {}
        hyper = {k: v for k, v in {"n_epochs": training.get("epochs"), "batch_size": training.get("batchSizeSamples"),
                                   "learning_rate": training.get("learningRate"), "lora_rank": training.get("loraRank"),
                                   "max_context_length": training.get("maxContextLength"),
                                   "beta": loss.get("beta")}.items() if v is not None}
        metadata = read_display_name(raw.get("displayName"))
        if key is not None and key_job_id(key) == rid:  # the id is the key's: the job is the key's
            metadata[IDEMPOTENCY_KEY] = key
        output = self._short(training.get("outputModel"), "models") or ""
        suffix = output[:-9] if rid.startswith("ftjob-") and output.endswith("-" + rid[6:14]) else None
        return Job(id=job_id, provider=self.name, status=status, raw_status=raw.get("state"),
                   model=training.get("baseModel") or training.get("warmStartFrom") or "",
                   fine_tuned_model=training.get("outputModel") if status is JobStatus.SUCCEEDED else None,
                   created_at=parse_time(raw.get("createTime")), finished_at=parse_time(raw.get("completedTime")),
                   training_file=self._short(raw.get("dataset"), "datasets"),
                   validation_file=self._short(raw.get("evaluationDataset"), "datasets"),
                   method=JOB_COLLECTIONS[collection], hyperparameters=hyper, suffix=suffix,
                   error=job_error(raw, status), metadata=metadata, raw=raw)

    def create_job(self, spec: JobSpec) -> Job:
        key = spec.idempotency_key
        job_id = key_job_id(key) if key else None
        output = None
        if spec.suffix:
            output = f"{slug(spec.suffix, 40) or 'model'}-{(job_id or 'ftjob-' + secrets.token_hex(4))[6:14]}"
        collection = "dpoJobs" if spec.method == "dpo" else "supervisedFineTuningJobs"
        body = create_body(spec, account=self.settings.account_id, dataset=self._dataset(spec.training_file),
                           evaluation=self._dataset(spec.validation_file) if spec.validation_file else None,
                           output_model=output)
        id_param = "dpoJobId" if spec.method == "dpo" else "supervisedFineTuningJobId"
        response = self.http.request("POST", self._acct(f"/{collection}"), json=body, ok_statuses=(409,),
                                     params={id_param: job_id} if job_id else None, describe="creating a job")
        if response.status_code == 409:  # an earlier attempt whose answer was lost may have made it
            conflict = error_from_response(response, self.name)
            found = self._by_key(key, collection) if key else None
            if found is None:
                raise conflict
            return found
        return self._job(response.json(), key)

    def _by_key(self, key: str, *collections: str) -> Job | None:
        for collection in collections or tuple(JOB_COLLECTIONS):
            response = self.http.request("GET", self._acct(f"/{collection}/{key_job_id(key)}"), ok_statuses=(404,),
                                         describe="looking a job up by its idempotency key")
            if response.status_code != 404:
                return self._job(response.json(), key)
        return None

    def get_job(self, job_id: str) -> Job:
        return self._job(self.http.json("GET", self._job_path(job_id)[1], describe=f"retrieving {job_id}"))

    def list_jobs(self, *, limit: int | None = None, metadata: dict[str, str] | None = None) -> list[Job]:
        wanted = dict(metadata or {})
        key = wanted.pop(IDEMPOTENCY_KEY, None)
        if key is not None:
            found = self._by_key(key)
            jobs = [found] if found is not None else []
        else:
            jobs = [self._job(raw) for collection in JOB_COLLECTIONS
                    for raw in self.http.pages(self._acct(f"/{collection}"), {"pageSize": 200}, items=collection,
                                               cursor="pageToken", token="nextPageToken")]
            jobs.sort(key=lambda j: (j.created_at is not None, j.created_at, j.id), reverse=True)
        jobs = [j for j in jobs if all(j.metadata.get(k) == v for k, v in wanted.items())]
        return jobs[:limit] if limit is not None else jobs

    def cancel_job(self, job_id: str) -> Job:
        # :cancel is in fireworks-ai 1.2.30 but not in the public API reference: unverified.
        self.http.request("POST", self._job_path(job_id)[1] + ":cancel", json={}, describe=f"cancelling {job_id}")
        return self.get_job(job_id)

    def resume_job(self, job_id: str) -> Job:
        return self._job(self.http.json("POST", self._job_path(job_id)[1] + ":resume", json={},
                                        describe=f"resuming {job_id}"))

    def list_events(self, job_id: str, *, after: str | None = None) -> list[Event]:
        raw = self.http.json("GET", self._job_path(job_id)[1], describe=f"retrieving {job_id}")
        found = events(raw, job_id, self.job_status(raw.get("state")))
        ids = [e.id for e in found]
        return found[ids.index(after) + 1:] if after in ids else found

    def metrics(self, job_id: str) -> list[MetricPoint]:
        collection, path = self._job_path(job_id)
        if collection == "dpoJobs":
            url = self.http.json("GET", path + ":getMetricsFileEndpoint",
                                 describe=f"asking for the metrics of {job_id}").get("signedUrl")
        else:
            url = self.http.json("GET", path, describe=f"retrieving {job_id}").get("metricsFileSignedUrl")
        if not url:
            return []  # nothing written yet
        text = self.http.request("GET", url, presigned=True, describe=f"downloading the metrics of {job_id}").text
        return metric_points(text)

    # ------------------------------------------------------------------ models
    def list_models(self) -> list[ModelInfo]:
        out = []
        for account in (self.settings.account_id, _PUBLIC):
            for m in self.http.pages(f"/v1/accounts/{account}/models", {"pageSize": 200}, items="models",
                                     cursor="pageToken", token="nextPageToken"):
                tuned = bool(m.get("peftDetails") or m.get("fineTuningJob")) or m.get("kind") == "HF_PEFT_ADDON"
                out.append(ModelInfo(id=m["name"], created_at=parse_time(m.get("createTime")), owned_by=account,
                                     fine_tuned=tuned))
        return out

    def delete_model(self, model: str) -> None:
        if not model.startswith(f"accounts/{self.settings.account_id}/models/"):
            raise ValueError(f"expected a model of this account, accounts/{self.settings.account_id}/models/<id>, "
                             f"not {model!r}")
        self.http.request("DELETE", f"/v1/{model}", describe=f"deleting {model}")

    # ------------------------------------------------------------------ deployments
    def _deployment(self, raw: dict[str, Any]) -> Deployment:
        lora = "/deployedModels/" in str(raw.get("name"))
        state = str(raw.get("state") or "")
        status = {"READY": "succeeded", "UPDATING": "succeeded", "DEPLOYED": "succeeded", "FAILED": "failed",
                  "DELETING": "deleting", "DELETED": "deleting", "UNDEPLOYING": "deleting"}.get(state, "creating")
        rid = str(raw.get("name") or "").rsplit("/", 1)[-1]
        return Deployment(name=f"deployedModels/{rid}" if lora else rid,
                          model=str((raw.get("model") if lora else raw.get("baseModel")) or ""), provider=self.name,
                          status=status, raw_status=state or None,  # type: ignore[arg-type]
                          ready=state in ("READY", "UPDATING", "DEPLOYED"),
                          created_at=parse_time(raw.get("createTime")),
                          sku=raw.get("acceleratorType"), capacity=raw.get("maxReplicaCount"),
                          base_url=f"{self.base_url()}/inference/v1", raw=raw)

    def _deployment_path(self, name: str) -> str:
        if not isinstance(name, str) or not name.strip() or " " in name:
            raise ValueError(f"not a Fireworks deployment name: {name!r}")
        if name.startswith("accounts/"):
            return f"/v1/{name}"
        return self._acct(f"/{name}" if name.startswith("deployedModels/") else f"/deployments/{name}")

    def deploy(self, model: str, spec: DeploySpec) -> Deployment:
        s = self.settings
        unknown = set(spec.extra) - {"deployment"}
        if unknown:
            raise ValueError(f"unknown deploy option(s) {sorted(unknown)} for Fireworks (known: deployment)")
        if spec.extra.get("deployment"):  # a LoRA onto a deployment of its base model with addons
            base = str(spec.extra["deployment"])
            target = base if base.startswith("accounts/") else self._acct(f"/deployments/{base}").removeprefix("/v1/")
            raw = self.http.json("POST", self._acct("/deployedModels"), json={"model": model, "deployment": target},
                                 describe=f"loading {model} onto {target}")
            name, final = self._deployment(raw).name, _LORA_FINAL
        else:
            name = spec.name or slug(model.rsplit("/", 1)[-1], 63)
            body: dict[str, Any] = {"baseModel": model, "minReplicaCount": s.min_replicas,
                                    "maxReplicaCount": spec.capacity or max(s.max_replicas, s.min_replicas, 1)}
            body.update({k: v for k, v in (("acceleratorType", spec.sku or s.accelerator_type),
                                           ("deploymentShape", s.deployment_shape)) if v})
            response = self.http.request("POST", self._acct("/deployments"), params={"deploymentId": name},
                                         json=body, ok_statuses=(409,), describe=f"deploying {model} as {name}")
            if response.status_code == 409 and self.get_deployment(name).model != model:
                raise error_from_response(response, self.name)  # the name is taken by another model
            final = _DEPLOYMENT_FINAL
        poller: Poller[Deployment] = Poller(PollSchedule(initial=2.0, maximum=30.0, growth=1.5),
                                            sleep=self.retry.sleep, clock=self.poll_clock)
        dep = poller.until(lambda: self.get_deployment(name), lambda d: (d.raw_status or "") in final | {"FAILED"},
                           what=f"deploying {name}", timeout=s.deploy_timeout,
                           on_timeout=lambda d: f"Deployment {name} is still {d.raw_status if d else 'unknown'} "
                                                f"after {s.deploy_timeout:g} s; it keeps going. Check it with "
                                                f"client.deployments.get({name!r}).")
        if not dep.ready:
            detail = (dep.raw.get("status") or {}).get("message") or ""
            raise ProviderError(f"Deployment {name} ended {dep.raw_status}. {detail}".strip(), provider=self.name)
        return dep

    def get_deployment(self, name: str) -> Deployment:
        return self._deployment(self.http.json("GET", self._deployment_path(name), describe=f"reading {name}"))

    def list_deployments(self) -> list[Deployment]:
        deployments = [self._deployment(d) for d in self.http.pages(
            self._acct("/deployments"), {"pageSize": 200}, items="deployments", cursor="pageToken",
            token="nextPageToken")]
        loras = [self._deployment(m) for m in self.http.pages(
            self._acct("/deployedModels"), {"pageSize": 200}, items="deployedModels", cursor="pageToken",
            token="nextPageToken")]
        # A deployment of a fine-tune serves it already: a deployed model saying so is not listed twice.
        served = {(d.raw.get("name"), d.model) for d in deployments}
        return deployments + [m for m in loras if (m.raw.get("deployment"), m.model) not in served]

    def delete_deployment(self, name: str) -> None:
        self.http.request("DELETE", self._deployment_path(name), describe=f"deleting {name}")

    # ------------------------------------------------------------------ chat
    def chat_target(self, deployment: Deployment) -> str:
        pinned = deployment.raw.get("deployment") if deployment.raw.get("default") is False else None
        return f"{deployment.model}#{pinned}" if pinned else deployment.model

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        return self.http.chat("/inference/v1/chat/completions", {"model": model, "messages": messages, **params},
                              model=model)

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        # No stream_options: Fireworks' chat API has none; its last chunk carries the usage.
        return self.http.chat_stream("/inference/v1/chat/completions",
                                     {"model": model, "messages": messages, **params}, model=model, ask_usage=False)


class _FileBody:
    """A file's bytes as a request body that can be sent again (each retry reads it afresh)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[bytes]:
        with self.path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk
