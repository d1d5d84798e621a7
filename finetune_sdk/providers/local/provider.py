"""The local backend: fine-tune open-weights models on this machine, as jobs that behave
like hosted ones (statuses, events, metrics, checkpoints, cancel, pause, resume).

Each job runs as its own OS process (``python -m finetune_sdk.providers.local.training.train JOB_DIR``,
or under ``torchrun`` / ``accelerate launch`` via the ``launcher`` setting); state lives in
``FINETUNE_HOME/jobs/<id>/``. This class is the job store and the process launcher.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from ...config import ProviderSettings, finetune_home, setting
from ...errors import BadRequestError, DatasetError, NotFoundError
from ...metrics import points_from_events
from ...types import (ChatDelta, ChatResponse, Checkpoint, Deployment, DeploySpec, Event, File, Hyperparameters, Job,
                      JobSpec, JobStatus, MetricPoint, ModelInfo, from_timestamp)
from ..base import Capability, Provider
from ..http import Transport
from .jobs.hparams import train_config
from .jobs.store import TERMINAL, FileStore, JobRecord, JobStore, process_alive, process_started_at, read_json

__all__ = ["LocalProvider", "LocalSettings"]

_IMAGE_LINES_LISTED = 20  # line numbers named in the refusal of data with images; the rest are counted


class LocalSettings(ProviderSettings):
    base_model: str | None = setting("smollm2-135m-instruct", env=("FINETUNE_BASE_MODEL",),
                                     example='base_model = "smollm2-135m-instruct"',
                                     description="The default base model: an alias, a model directory or a Hub id.")
    home: str | None = setting(None, description="State directory (default: FINETUNE_HOME or the user cache).")
    launcher: str = setting("python", example='launcher = "torchrun --nproc-per-node 2"',
                            description="How to start a job: python, or a torchrun / accelerate launch prefix.")
    python: str | None = setting(None, description="Interpreter for job processes (default: this one).")
    cancel_grace_seconds: float = setting(20.0, description="Seconds a job has to stop before it is killed.")
    device: str = setting("auto", description="Inference device of the background server (auto, cpu, cuda).")


class LocalProvider(Provider[LocalSettings]):
    """Fine-tuning on this machine's CPU or GPU, with the SDK's own trainer."""

    name = "local"
    hosted = False
    accepts_images = False  # text-only base models: data with images is refused (create_job), never dropped
    # The raw statuses the job process writes to job.json.
    statuses: ClassVar[Mapping[str, JobStatus]] = {
        "validating": JobStatus.VALIDATING, "queued": JobStatus.QUEUED, "running": JobStatus.RUNNING,
        "paused": JobStatus.PAUSED, "succeeded": JobStatus.SUCCEEDED, "failed": JobStatus.FAILED,
        "cancelled": JobStatus.CANCELLED}
    capabilities = frozenset({Capability.UPLOAD, Capability.FILES, Capability.CREATE_JOB, Capability.EVENTS,
                              Capability.CHECKPOINTS, Capability.METRICS, Capability.CANCEL, Capability.PAUSE,
                              Capability.RESUME, Capability.METADATA_FILTER, Capability.MODELS, Capability.DEPLOY,
                              Capability.CHAT, Capability.EXPORT, Capability.PUSH_TO_HUB})
    Settings = LocalSettings

    def __init__(self, settings: LocalSettings | None = None, *, host: Any = None, **kwargs: Any) -> None:
        """``host``: a :class:`~finetune_sdk.providers.local.serving.host.ModelHost` when this provider runs inside
        the inference server (chat is then served in-process); otherwise chat and deployments go
        through the background server."""
        super().__init__(settings, **kwargs)
        self.host = host
        s = self.settings
        self.home = Path(s.home).expanduser() if s.home else finetune_home()
        self.jobs = JobStore(self.home)
        self.files = FileStore(self.home)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._remote_transport: Transport | None = None

    @classmethod
    def tokenizer(cls, model: str) -> tuple[Any, str] | None:
        from .models import local_tokenizer_resolver

        return local_tokenizer_resolver(model)

    # ------------------------------------------------------------------ files
    def upload(self, path: Path, *, purpose: str = "fine-tune") -> File:
        return self.files.add(Path(path), purpose)

    def _file_or_404(self, file_id: str) -> File:
        try:
            return self.files.get(file_id)
        except KeyError:
            raise NotFoundError(f"No such File object: {file_id}", provider=self.name, status_code=404,
                                code="file_not_found", param="file_id") from None

    def get_file(self, file_id: str) -> File:
        if file_id.startswith("file-results-"):
            return self._results_file(file_id)
        return self._file_or_404(file_id)

    def list_files(self, *, purpose: str | None = None) -> list[File]:
        return [f for f in self.files.list() if purpose is None or f.purpose == purpose]

    def delete_file(self, file_id: str) -> None:
        self._file_or_404(file_id)
        self.files.delete(file_id)

    def file_content(self, file_id: str) -> bytes:
        if file_id.startswith("file-results-"):
            job_id = "ftjob-" + file_id.removeprefix("file-results-")
            return (self._dir(job_id) / "results.csv").read_bytes()
        self._file_or_404(file_id)
        return self.files.path(file_id).read_bytes()

    def _results_file(self, file_id: str) -> File:
        job_id = "ftjob-" + file_id.removeprefix("file-results-")
        path = self._dir(job_id) / "results.csv"
        if not path.is_file():
            raise NotFoundError(f"No such File object: {file_id}", provider=self.name, status_code=404,
                                code="file_not_found", param="file_id")
        return File(id=file_id, filename="results.csv", bytes=path.stat().st_size, purpose="fine-tune-results",
                    status="processed", created_at=from_timestamp(int(path.stat().st_mtime)))

    # ------------------------------------------------------------------ jobs
    def _dir(self, job_id: str) -> Path:
        try:
            d = self.jobs.dir(job_id)
        except KeyError:
            d = None
        if d is None or not (d / "job.json").is_file():
            raise NotFoundError(f"Could not find fine-tune: {job_id}", provider=self.name, status_code=404,
                                code="fine_tune_not_found", param="fine_tuning_job_id")
        return d

    def _check_model(self, name: str) -> None:
        """Fail before queueing for a base model that cannot exist (cheap checks only)."""
        from . import models

        try:
            models.check_base_model(name)
        except models.BaseModelError as exc:
            raise BadRequestError(str(exc), provider=self.name, status_code=400, code="model_not_available",
                                  param="model") from None

    def create_job(self, spec: JobSpec) -> Job:
        cfg = train_config(spec.method, spec.hyperparameters, spec.seed)
        if self.host is not None:
            spec = self._served_base(spec)
        self._check_model(spec.model)
        sources = {"train.jsonl": spec.training_file, "validation.jsonl": spec.validation_file}
        paths = {}
        for name, fid in sources.items():
            if fid is None:
                continue
            try:
                paths[name] = self.files.path(fid)
            except KeyError:
                raise BadRequestError(f"invalid {'training' if name == 'train.jsonl' else 'validation'}_file: {fid}",
                                      provider=self.name, status_code=400,
                                      param="training_file" if name == "train.jsonl" else "validation_file") from None
        self._refuse_images(spec, paths)
        record = JobRecord(id=self.jobs.new_id(), spec=spec, config=cfg.model_dump(), created_at=time.time())
        d = self.jobs.create(record)
        for name, src in paths.items():
            (d / name).write_bytes(src.read_bytes())
        self.jobs.append_event(record.id, Event(id=f"ftevent-{record.id[6:]}-created", created_at=from_timestamp(
            record.created_at), message=f"Validating training file: {spec.training_file}", kind="status",
            data={"status": JobStatus.VALIDATING.value}))
        self._launch(record.id)
        return self.get_job(record.id)

    def _refuse_images(self, spec: JobSpec, paths: dict[str, Path]) -> None:
        """Refuse data with images before anything is created: training would have to drop them."""
        found = []
        for name, path in paths.items():
            lines = _image_lines(path)
            if lines:
                which, fid = ("training", spec.training_file) if name == "train.jsonl" else \
                    ("validation", spec.validation_file)
                listed = ", ".join(map(str, lines[:_IMAGE_LINES_LISTED]))
                if len(lines) > _IMAGE_LINES_LISTED:
                    listed += f" and {len(lines) - _IMAGE_LINES_LISTED} more"
                found.append(f"the {which} file ({fid}) has images on {len(lines)} line(s): {listed}")
        if found:
            what = "; ".join(found)
            raise DatasetError(f"{what[0].upper()}{what[1:]}. The local trainer fine-tunes text-only models, so it "
                               f"cannot learn from images, and it never drops them silently. Remove the image parts "
                               f"(or those examples), or fine-tune a vision model on a hosted provider (e.g. "
                               f"OpenAI's gpt-4o). finetune_sdk.validate(path, images=False) lists every one.")

    def _served_base(self, spec: JobSpec) -> JobSpec:
        """Behind the server, requests may only name the default models or the bases the operator serves."""
        from .models import ALIASES

        if spec.model.lower() in ALIASES:
            return spec
        if spec.model in self.host.bases:
            return spec.model_copy(update={"model": str(self.host.bases[spec.model])})
        served = ", ".join(sorted({*ALIASES.values(), *self.host.bases})) or "none"
        raise BadRequestError(f"Model {spec.model} is not available for fine-tuning on this server (available: "
                              f"{served}). The operator can add one with `finetune serve --model PATH`.",
                              provider=self.name, status_code=400, code="model_not_available", param="model")

    def _launch(self, job_id: str) -> None:
        s = self.settings
        d = self._dir(job_id)
        python = s.python or sys.executable
        prefix = [python] if s.launcher.strip() in ("", "python") else shlex.split(s.launcher)
        cmd = prefix + ["-m", "finetune_sdk.providers.local.training.train", str(d)]
        log = open(d / "train.log", "ab")
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=str(d), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        self._children[job_id] = proc
        self.jobs.update(job_id, pid=proc.pid, pid_started_at=process_started_at(proc.pid),
                         attempts=self.jobs.read(job_id).attempts + 1)

    def _reap(self) -> None:
        for job_id, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[job_id]

    def _detect_crash(self, record: JobRecord) -> JobRecord:
        if record.status in TERMINAL or record.status == "paused":
            return record
        self._reap()
        if process_alive(record.pid, record.pid_started_at):
            return record
        time.sleep(0.2)  # the process may be writing its final status right now
        record = self.jobs.read(record.id)
        if record.status in TERMINAL or record.status == "paused":
            return record
        tail = self.jobs.log_tail(record.id)
        from ...types import JobError

        message = ("The training process exited without finishing (killed, or crashed). "
                   + (f"Last lines of train.log:\n{tail}" if tail else "No log was written.")
                   + "\nResume from the last checkpoint with client.jobs.resume(job_id).")
        self.jobs.append_event(record.id, Event(id=f"ftevent-{record.id[6:]}-lost-{record.attempts}",
                                                created_at=from_timestamp(time.time()), level="error",
                                                message="The training process vanished.", kind="status",
                                                data={"status": JobStatus.FAILED.value}))
        return self.jobs.update(record.id, status="failed", finished_at=time.time(), pid=None,
                                error=JobError(code="process_lost", message=message))

    def _to_job(self, record: JobRecord) -> Job:
        d = self.jobs.dir(record.id)
        results = [f"file-results-{record.id[6:]}"] if (d / "results.csv").is_file() else []
        cfg = record.config
        return Job(id=record.id, provider=self.name, status=self.job_status(record.status),
                   raw_status=record.status, model=record.spec.model, fine_tuned_model=record.fine_tuned_model,
                   created_at=from_timestamp(record.created_at), finished_at=from_timestamp(record.finished_at),
                   estimated_finish=from_timestamp(record.estimated_finish) if record.status == "running" else None,
                   training_file=record.spec.training_file, validation_file=record.spec.validation_file,
                   method=record.spec.method,
                   hyperparameters={k: cfg.get(k) for k in ("n_epochs", "batch_size", "learning_rate_multiplier")}
                   | ({"beta": cfg.get("beta")} if record.spec.method == "dpo" else {}),
                   suffix=record.spec.suffix, seed=cfg.get("seed"), trained_tokens=record.trained_tokens,
                   error=record.error, metadata=dict(record.spec.metadata), integrations=record.spec.integrations,
                   result_files=results, raw=record.model_dump(mode="json"))

    def get_job(self, job_id: str) -> Job:
        self._dir(job_id)
        return self._to_job(self._detect_crash(self.jobs.read(job_id)))

    def list_jobs(self, *, limit: int | None = None, metadata: dict[str, str] | None = None) -> list[Job]:
        records = []
        for job_id in self.jobs.ids():
            try:
                records.append(self.jobs.read(job_id))
            except (OSError, ValueError):
                continue
        records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        out = []
        for r in records:
            if metadata and any(r.spec.metadata.get(k) != v for k, v in metadata.items()):
                continue
            out.append(self._to_job(self._detect_crash(r)))
            if limit is not None and len(out) >= limit:
                break
        return out

    def _signal(self, record: JobRecord, sig: int) -> None:
        if record.pid and process_alive(record.pid, record.pid_started_at):
            try:
                os.killpg(record.pid, sig)  # the whole session: torchrun workers included
            except (ProcessLookupError, PermissionError, AttributeError):
                try:
                    os.kill(record.pid, sig)
                except ProcessLookupError:
                    pass

    def _await(self, job_id: str, statuses: set[str], timeout: float) -> JobRecord:
        deadline = time.monotonic() + timeout
        while True:
            record = self._detect_crash(self.jobs.read(job_id))
            if record.status in statuses or time.monotonic() > deadline:
                return record
            time.sleep(0.2)

    def cancel_job(self, job_id: str) -> Job:
        self._dir(job_id)
        record = self._detect_crash(self.jobs.read(job_id))
        if record.status in TERMINAL:
            raise BadRequestError(f"Job {job_id} has already {record.status}; it cannot be cancelled.",
                                  provider=self.name, status_code=400, code="invalid_state")
        if record.status == "paused":
            return self._to_job(self.jobs.update(job_id, status="cancelled", finished_at=time.time()))
        record = self.jobs.update(job_id, cancel_requested=True)
        self._signal(record, signal.SIGTERM)
        s = self.settings
        record = self._await(job_id, set(TERMINAL), s.cancel_grace_seconds)
        if record.status not in TERMINAL:  # it did not stop in time: stop it
            self._signal(record, signal.SIGKILL)
            self.jobs.append_event(job_id, Event(id=f"ftevent-{job_id[6:]}-killed", created_at=from_timestamp(
                time.time()), level="warning", message="The job did not stop in time and was killed.", kind="status",
                data={"status": JobStatus.CANCELLED.value}))
            record = self.jobs.update(job_id, status="cancelled", finished_at=time.time(), pid=None)
        return self._to_job(record)

    def pause_job(self, job_id: str) -> Job:
        self._dir(job_id)
        record = self._detect_crash(self.jobs.read(job_id))
        if record.status != "running":
            raise BadRequestError(f"Job {job_id} is {record.status}; only running jobs can be paused.",
                                  provider=self.name, status_code=400, code="invalid_state")
        self.jobs.update(job_id, pause_requested=True)
        s = self.settings
        return self._to_job(self._await(job_id, {"paused", *TERMINAL}, s.cancel_grace_seconds * 3))

    def resume_job(self, job_id: str) -> Job:
        """Continue a paused job — or one that was interrupted (killed, crashed) — from its last checkpoint."""
        d = self._dir(job_id)
        record = self._detect_crash(self.jobs.read(job_id))
        ckpts = sorted(p for p in (d / "checkpoints").glob("step-*") if p.is_dir())
        interrupted = record.status == "failed" and record.error is not None and \
            record.error.code in ("process_lost", "internal_error", "out_of_memory")
        if record.status != "paused" and not interrupted:
            raise BadRequestError(f"Job {job_id} is {record.status}; only paused or interrupted jobs can be resumed.",
                                  provider=self.name, status_code=400, code="invalid_state")
        self.jobs.update(job_id, status="queued", error=None, finished_at=None, pause_requested=False,
                         cancel_requested=False, resume_from=str(ckpts[-1]) if ckpts else None)
        self.jobs.append_event(job_id, Event(id=f"ftevent-{job_id[6:]}-resume-{record.attempts}",
                                             created_at=from_timestamp(time.time()),
                                             message="Fine-tuning job resumed" + (
                                                 f" from step {ckpts[-1].name[5:].lstrip('0')}" if ckpts else
                                                 " from the start (no checkpoint yet)"), kind="status",
                                             data={"status": JobStatus.QUEUED.value}))
        self._launch(job_id)
        return self.get_job(job_id)

    def list_events(self, job_id: str, *, after: str | None = None) -> list[Event]:
        self._dir(job_id)
        self._detect_crash(self.jobs.read(job_id))
        events = self.jobs.events(job_id)
        if after is not None:
            ids = [e.id for e in events]
            if after in ids:
                events = events[ids.index(after) + 1:]
        return events

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        d = self._dir(job_id)
        record = self.jobs.read(job_id)
        out = []
        for p in sorted(q for q in (d / "checkpoints").glob("step-*") if q.is_dir()):
            step = int(p.name[5:])
            state = read_json(p / "state.json") if (p / "state.json").is_file() else {}
            from ...metrics import point_from_dict

            out.append(Checkpoint(id=f"{job_id}:ckpt-step-{step}", step=step,
                                  created_at=from_timestamp(int(p.stat().st_mtime)),
                                  model=f"{record.fine_tuned_model or job_id}:ckpt-step-{step}",
                                  metrics=point_from_dict(state.get("metrics") or {}), path=str(p)))
        return out

    def metrics(self, job_id: str) -> list[MetricPoint]:
        return points_from_events(self.list_events(job_id))

    # ------------------------------------------------------------------ export and publish
    def export(self, job_id: str, *, format: str, out: Path, **options: Any) -> Any:
        from .publish.export import export_job

        self._dir(job_id)
        return export_job(self.home, job_id, format=format, out=Path(out), **options)  # type: ignore[arg-type]

    def push_to_hub(self, job_id: str, repo_id: str, **options: Any) -> Any:
        from .publish.hub import push_job_to_hub

        self._dir(job_id)
        return push_job_to_hub(self.home, job_id, repo_id, **options)

    # ------------------------------------------------------------------ serving
    def _server(self) -> Any:
        from .serving.background import ensure_server

        s = self.settings
        return ensure_server(self.home, device=s.device, python=s.python)

    def _remote(self) -> Transport:
        """The background inference server, spoken to like any OpenAI-compatible service."""
        info = self._server()
        t = self._remote_transport
        if t is None or t.base_url != info.base_url:
            if t is not None:
                t.close()
            t = self._remote_transport = Transport(self.name, info.base_url, policy=lambda: self.retry,
                                                   headers=lambda: {"Authorization": f"Bearer {info.api_key}"},
                                                   timeout=600.0)
        return t

    def close(self) -> None:
        if self._remote_transport is not None:
            self._remote_transport.close()

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        if self.host is not None:
            return self.host.chat(model, messages, **params)
        return self._remote().chat("/chat/completions", {"model": model, "messages": messages, **params}, model=model)

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        if self.host is not None:
            return self.host.chat_stream(model, messages, **params)
        return self._remote().chat_stream("/chat/completions", {"model": model, "messages": messages, **params},
                                          model=model)

    def _servable(self, model: str) -> None:
        from .models import ALIASES

        if model.lower() in ALIASES:
            return
        base, _, step = model.rpartition(":ckpt-step-") if ":ckpt-step-" in model else (model, "", "")
        for job in self.list_jobs():
            if job.status is JobStatus.SUCCEEDED and base in (job.fine_tuned_model, job.id):
                return
        raise NotFoundError(f"No succeeded local job has the model {model!r}; deploy a fine_tuned_model or a job id.",
                            provider=self.name, status_code=404, code="model_not_found", param="model")

    def deploy(self, model: str, spec: DeploySpec) -> Deployment:
        """Serve ``model`` from the background server (started if needed); waits until it answers."""
        import re

        from .serving.deployments import Deployments

        self._servable(model)
        name = spec.name or model
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}", name):
            raise BadRequestError(f"Invalid deployment name {name!r}: use letters, digits and . _ : -",
                                  provider=self.name, status_code=400, param="name")
        Deployments(self.home).add(name, model)
        info = self._server()
        self.chat(name, [{"role": "user", "content": "hi"}], max_tokens=1)  # loads the weights: ready when we return
        return Deployment(name=name, model=model, provider=self.name, status="succeeded", raw_status="serving",
                          ready=True, base_url=info.base_url, created_at=from_timestamp(int(time.time())))

    def get_deployment(self, name: str) -> Deployment:
        from .serving.background import running_server
        from .serving.deployments import Deployments

        entry = Deployments(self.home).read().get(name)
        if entry is None:
            raise NotFoundError(f"No local deployment named {name!r}.", provider=self.name, status_code=404,
                                code="DeploymentNotFound")
        info = running_server(self.home)
        return Deployment(name=name, model=entry["model"], provider=self.name,
                          status="succeeded" if info else "failed", raw_status="serving" if info else "stopped",
                          ready=info is not None, base_url=info.base_url if info else None,
                          created_at=from_timestamp(int(entry.get("created_at", 0))))

    def list_deployments(self) -> list[Deployment]:
        from .serving.deployments import Deployments

        return [self.get_deployment(name) for name in Deployments(self.home).read()]

    def delete_deployment(self, name: str) -> None:
        """Remove a deployment; the background server shuts down with the last one."""
        from .serving.background import stop_server
        from .serving.deployments import Deployments

        registry = Deployments(self.home)
        if not registry.remove(name):
            raise NotFoundError(f"No local deployment named {name!r}.", provider=self.name, status_code=404,
                                code="DeploymentNotFound")
        if not registry.read():
            stop_server(self.home)

    def map_hyperparameters(self, hp: Hyperparameters, method: str) -> tuple[dict[str, Any], dict[str, str]]:
        from .jobs.hparams import TrainConfig

        given = {k: v for k, v in {**hp.portable(), **hp.extras()}.items() if v is not None and v != "auto"}
        if method != "dpo":
            given.pop("beta", None)
        known = set(TrainConfig.model_fields)
        sent = {k: v for k, v in given.items() if k in known}
        refused = dict.fromkeys((k for k in given if k not in known),
                                "not a setting of the local trainer (see docs/local-training.md)")
        return sent, refused

    def fine_tunable_models(self) -> list[str] | None:
        from .models import ALIASES

        served = sorted(self.host.bases) if self.host is not None else []
        return sorted(set(ALIASES.values())) + served

    def is_fine_tuned(self, model: str) -> bool:
        # ft:{base}:local:{suffix}:{id}, a job id, or a checkpoint of either; deployments are named by the user
        return model.startswith(("ft:", "ftjob-")) or model in self._deployment_names()

    def _deployment_names(self) -> set[str]:
        from .serving.deployments import Deployments

        return set(Deployments(self.home).read())

    def chat_target(self, deployment: Deployment) -> str:
        return deployment.name

    def list_models(self) -> list[ModelInfo]:
        if self.host is not None:
            return self.host.list_models()
        from .models import DEFAULT_BASE_MODEL

        models = [ModelInfo(id=DEFAULT_BASE_MODEL, owned_by="local")]
        for job in self.list_jobs():
            if job.status is JobStatus.SUCCEEDED and job.fine_tuned_model:
                models.append(ModelInfo(id=job.fine_tuned_model, created_at=job.finished_at, owned_by="local",
                                        fine_tuned=True))
        return models


def _image_lines(path: Path) -> list[int]:
    """The 1-based numbers of the lines of a JSONL file whose example holds an image part."""
    from ...data.records import image_parts

    found = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if b"image_url" not in raw:  # most lines of most files: no parsing
                continue
            try:
                example = json.loads(raw.decode("utf-8-sig"))
            except (ValueError, RecursionError):
                continue  # a malformed line: the job's own validation reports it
            if image_parts(example):
                found.append(lineno)
    return found
