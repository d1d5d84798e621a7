"""A deterministic, in-process fine-tuning backend with a clock you control.

It behaves like a hosted service — files are processed by our dataset validator, jobs
move validating → queued → running (metrics events with a falling loss, one checkpoint
per epoch, the last 3 kept) → succeeded, or fail / cancel / pause as asked — but time is
a :class:`SimClock`: real time scaled by ``speed``, plus whatever a test adds with
``advance()``. State is computed lazily from the clock on every call, so there are no
background threads and runs are reproducible.

Behind :mod:`finetune_sdk.server` it is the emulator of the fine-tuning services that the
test suite talks to with their official clients. What a service says — ids, raw
statuses, event texts, error codes — is its :class:`~.flavors.Flavor`; the lifecycle,
the same for every flavor, moves a job through the phases of :data:`~.flavors.PHASES`.
"""

from __future__ import annotations

import csv
import io
import math
import random
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ...config import ProviderSettings, setting
from ...data import catalog
from ...data.validate import validate
from ...errors import BadRequestError, ConflictError, NotFoundError, PermissionDeniedError
from ...types import (ChatDelta, ChatResponse, Checkpoint, Deployment, DeploySpec, Event, EventKind, File, Job,
                      JobError, JobSpec, JobStatus, MetricPoint, ModelInfo, Usage, from_timestamp)
from ..base import Capability, Provider
from .clock import SimClock, SimTimings
from .flavors import FLAVORS, PHASES, Flavor

__all__ = ["SimulatedSettings", "SimulatedProvider"]

_PHASE_STATUS = {"validating": JobStatus.VALIDATING, "queued": JobStatus.QUEUED, "running": JobStatus.RUNNING,
                 "pausing": JobStatus.RUNNING, "paused": JobStatus.PAUSED, "cancelling": JobStatus.RUNNING,
                 "finalizing": JobStatus.RUNNING, "succeeded": JobStatus.SUCCEEDED, "failed": JobStatus.FAILED,
                 "cancelled": JobStatus.CANCELLED}


def _raw_words() -> dict[str, JobStatus]:
    """Every flavor's raw words, each meaning what a client of that service takes it for. A
    word several phases share (across flavors too) means the latest: Azure's "pending" is
    queued, and so is Together's, which Together's own clients read as queued."""
    latest: dict[str, int] = {}
    for flavor in FLAVORS.values():
        for index, phase in enumerate(PHASES):
            word = flavor.raw.get(phase)
            if word is not None:
                latest[word.lower()] = max(index, latest.get(word.lower(), -1))
    return {word: _PHASE_STATUS[PHASES[index]] for word, index in latest.items()}

_CREATED = 1_700_000_000  # "created" of base models


class SimulatedSettings(ProviderSettings):
    flavor: str = setting("openai", description="Which service to imitate (a name in flavors.FLAVORS).")
    organization: str = setting("org-emulator", description="organization_id of jobs (OpenAI flavor).")
    account: str = setting("emulator", description="The account that owns resources, for services that name them "
                                                   "by account (Fireworks: accounts/{account}/models/...).")
    speed: float = setting(1.0, description="Simulated seconds per real second (0 freezes time).")
    seed: int = setting(0, description="Seeds ids and metrics, for reproducible runs.")
    data_dir: str | None = setting(None, description="Where uploaded files are kept (default: a temp folder).")


@dataclass
class _FileRec:
    id: str
    filename: str
    bytes: int
    purpose: str
    created: float
    path: Path
    ready_at: float
    problem: str | None = None  # validator's verdict, revealed when processing ends


@dataclass
class _JobRec:
    spec: JobSpec
    id: str
    created: float
    examples: int
    tokens_per_epoch: int
    epochs: int
    batch_size: int
    lrm: float
    seed: int
    validated_at: float
    started_at: float
    phase: str = "validating"
    validated: bool = False
    steps_done: int = 0
    paused_at: float | None = None
    paused_total: float = 0.0
    finished_at: float | None = None
    cancel_at: float | None = None
    trained: bool = False
    fail_at_step: int | None = None
    fail_message: str = "The job failed due to an internal error."
    # What checking the files for this job's model and method found: "training_file"/"validation_file" -> problem.
    file_problems: dict[str, str] = field(default_factory=dict)
    error: JobError | None = None
    events: list[Event] = field(default_factory=list)
    moments: dict[str, str] = field(default_factory=dict)  # event id -> the moment it records
    checkpoints: list[Checkpoint] = field(default_factory=list)
    metrics: list[MetricPoint] = field(default_factory=list)
    fine_tuned_model: str | None = None
    result_file: str | None = None

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.examples / self.batch_size))

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


@dataclass
class _DeployRec:
    name: str
    model: str
    created: float
    sku: str
    capacity: int


class SimulatedProvider(Provider[SimulatedSettings]):
    """The emulator's backend. See the module docstring."""

    name = "simulated"
    hosted = True
    capabilities = frozenset(Capability)
    statuses: ClassVar[Mapping[str, JobStatus]] = _raw_words()
    Settings = SimulatedSettings

    def __init__(self, settings: SimulatedSettings | None = None, *, clock: SimClock | None = None,
                 timings: SimTimings | None = None, **_: Any) -> None:
        super().__init__(settings)
        s = self.settings
        if s.flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {s.flavor!r}; known: {', '.join(sorted(FLAVORS))}")
        self.flavor: Flavor = FLAVORS[s.flavor]
        self.clock = clock or SimClock(s.speed)
        self.timings = timings or SimTimings()
        self._rng = random.Random(s.seed)
        self._lock = threading.RLock()
        self._own_dir = s.data_dir is None
        self._dir = Path(s.data_dir or tempfile.mkdtemp(prefix="finetune-sim-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, _FileRec] = {}
        self._jobs: dict[str, _JobRec] = {}
        self._deleted_models: set[str] = set()
        self._deployments: dict[str, _DeployRec] = {}
        self._next_outcomes: list[tuple[int | None, str]] = []

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------------ names
    def is_fine_tuned(self, model: str) -> bool:
        return self.flavor.is_fine_tune(model)

    def _ft_name(self, rec: _JobRec) -> str:
        f = self.flavor
        owner = self.settings.account if f.names_by_account else self.settings.organization
        return f.ft_name(f.base_model_of(rec.spec.model), rec.spec.suffix, rec.id, owner)

    def raw_status(self, rec: _JobRec) -> str:
        return self.flavor.raw[rec.phase]

    # ------------------------------------------------------------------ test controls
    def fail_job(self, job_id: str, *, at_step: int | None = None, message: str | None = None) -> Job:
        """Make a job fail: now, or when it reaches ``at_step``."""
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            if message:
                rec.fail_message = message
            if at_step is None:
                if not _PHASE_STATUS[rec.phase].is_terminal:
                    self._fail(rec, self.clock.now(), self.flavor.codes["internal"], rec.fail_message)
            else:
                rec.fail_at_step = at_step
                self._advance(rec)
            return self._to_job(rec)

    def plan_next_job(self, *, at_step: int | None = 1,
                      message: str = "The job failed due to an internal error.") -> None:
        """The next job created fails at ``at_step`` (queued plans apply in order)."""
        with self._lock:
            self._next_outcomes.append((at_step, message))

    # ------------------------------------------------------------------ files
    def new_file_id(self) -> str:
        """An id for a file announced before its bytes arrive (an upload in two steps)."""
        with self._lock:
            return self.flavor.file_id(self._rng)

    def upload(self, path: Path, *, purpose: str = "fine-tune", file_id: str | None = None) -> File:
        """Store a file; ``file_id`` is one :meth:`new_file_id` handed out earlier."""
        path = Path(path)
        with self._lock:
            if file_id is not None and file_id in self._files:
                raise ValueError(f"file {file_id} already exists")
            fid = file_id or self.flavor.file_id(self._rng)
            now = self.clock.now()
            dest = self._dir / fid
        shutil.copyfile(path, dest)
        problem = None
        if purpose == "fine-tune":
            report = validate(dest, hosted=True, max_issues=3, workers=1)
            if not report.valid:
                problem = self._problem(report)
        rec = _FileRec(fid, path.name, dest.stat().st_size, purpose, now, dest,
                       now + self.timings.file_processing, problem)
        with self._lock:
            self._files[fid] = rec
            return self._to_file(rec)

    @staticmethod
    def _problem(report: Any) -> str:
        first = report.errors[0]
        where = f"Line {first.line}: " if first.line else ""
        return f"Invalid file format. {where}{first.message}"

    def _file(self, file_id: str) -> _FileRec:
        rec = self._files.get(file_id)
        if rec is None:
            raise NotFoundError(f"No such File object: {file_id}", provider=self.name, status_code=404,
                                code=self.flavor.codes["file_not_found"], param="file_id")
        return rec

    def _to_file(self, rec: _FileRec) -> File:
        ready = self.clock.now() >= rec.ready_at
        status: Literal["uploaded", "processed", "error"] = \
            "uploaded" if not ready else ("error" if rec.problem else "processed")
        return File(id=rec.id, filename=rec.filename, bytes=rec.bytes, purpose=rec.purpose, status=status,
                    status_details=rec.problem if ready else None, created_at=from_timestamp(int(rec.created)))

    def get_file(self, file_id: str) -> File:
        with self._lock:
            return self._to_file(self._file(file_id))

    def list_files(self, *, purpose: str | None = None) -> list[File]:
        with self._lock:
            return [self._to_file(r) for r in sorted(self._files.values(), key=lambda r: (r.created, r.id))
                    if purpose is None or r.purpose == purpose]

    def delete_file(self, file_id: str) -> None:
        with self._lock:
            rec = self._file(file_id)
            del self._files[file_id]
        rec.path.unlink(missing_ok=True)

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            rec = self._file(file_id)
        return rec.path.read_bytes()

    def _store_bytes(self, filename: str, data: bytes, purpose: str) -> str:
        fid = self.flavor.file_id(self._rng)
        dest = self._dir / fid
        dest.write_bytes(data)
        now = self.clock.now()
        self._files[fid] = _FileRec(fid, filename, len(data), purpose, now, dest, now)
        return fid

    # ------------------------------------------------------------------ jobs
    def create_job(self, spec: JobSpec, *, job_id: str | None = None) -> Job:
        """Create a job; ``job_id`` names it, for services where the caller chooses ids
        (ConflictError if one by that id exists), else the flavor makes one up."""
        with self._lock:
            flavor = self.flavor
            if job_id is not None and job_id in self._jobs:
                raise ConflictError(f"A job with id {job_id!r} already exists.", provider=self.name, status_code=409,
                                    code=flavor.codes.get("already_exists", "already_exists"), param="job_id")
            base = flavor.base_model_of(spec.model)
            if flavor.is_fine_tune(spec.model) and not any(r.fine_tuned_model == spec.model
                                                           for r in self._jobs.values()):
                raise BadRequestError(f"Model {spec.model} is not available for fine-tuning or does not exist.",
                                      provider=self.name, status_code=400, code=flavor.codes["model_not_available"],
                                      param="model")
            if base not in flavor.fine_tunable:
                raise BadRequestError(flavor.model_error.format(model=spec.model), provider=self.name,
                                      status_code=400, code=flavor.codes["model_not_available"], param="model")
            facts = catalog.lookup(base)
            if facts is not None and spec.method not in facts.methods:
                raise BadRequestError(f"Model {spec.model} does not support the {spec.method} method.",
                                      provider=self.name, status_code=400, code="invalid_request", param="method")
            training = self._file(spec.training_file)
            validation = self._file(spec.validation_file) if spec.validation_file else None
            now = self.clock.now()
            job_id = job_id or flavor.job_id(self._rng)
        # Files are checked for the job's model and method too: a chat file is no DPO data, a
        # preference file no supervised data (the upload-time check only knew the format).
        # The validation file is judged as one here (the 10-example minimum is for training data).
        report = validate(training.path, model=base, hosted=True, max_issues=1, workers=1, method=spec.method,
                          validation_file=validation.path if validation is not None else None)
        file_problems: dict[str, str] = {}
        if not report.valid and report.errors:
            file_problems["training_file"] = self._problem(report)
        vreport = report.validation
        if vreport is not None and not vreport.valid and vreport.errors:
            file_problems["validation_file"] = self._problem(vreport)
        examples = max(1, report.examples)
        tokens = report.estimate.tokens_per_epoch if report.estimate else 0
        hp = spec.hyperparameters
        from ...data.estimate import auto_epochs

        epochs = hp.n_epochs if isinstance(hp.n_epochs, int) else auto_epochs(examples)
        batch = hp.batch_size if isinstance(hp.batch_size, int) else max(1, min(256, examples // 50 or 1))
        lrm = hp.learning_rate_multiplier if isinstance(hp.learning_rate_multiplier, (int, float)) else 1.8
        with self._lock:
            validated = max(now + self.timings.validation, training.ready_at,
                            validation.ready_at if validation is not None else 0.0)
            seed = spec.seed if spec.seed is not None else self._rng.randrange(2**31)
            rec = _JobRec(spec=spec, id=job_id, created=now, examples=examples, tokens_per_epoch=tokens,
                          epochs=epochs, batch_size=batch, lrm=float(lrm), seed=seed, validated_at=validated,
                          started_at=validated + self.timings.queue, file_problems=file_problems)
            if job_id in self._jobs:  # created meanwhile: files are validated outside the lock
                raise ConflictError(f"A job with id {job_id!r} already exists.", provider=self.name, status_code=409,
                                    code=flavor.codes.get("already_exists", "already_exists"), param="job_id")
            if self._next_outcomes:
                rec.fail_at_step, rec.fail_message = self._next_outcomes.pop(0)
            self._event(rec, now, flavor.message("created", file=spec.training_file), moment="created")
            self._jobs[job_id] = rec
            return self._to_job(rec)

    def _job(self, job_id: str) -> _JobRec:
        rec = self._jobs.get(job_id)
        if rec is None:
            raise NotFoundError(f"Could not find fine-tune: {job_id}", provider=self.name, status_code=404,
                                code=self.flavor.codes["job_not_found"], param="fine_tuning_job_id")
        return rec

    def get_job(self, job_id: str) -> Job:
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            return self._to_job(rec)

    def list_jobs(self, *, limit: int | None = None, metadata: dict[str, str] | None = None) -> list[Job]:
        with self._lock:
            recs = sorted(self._jobs.values(), key=lambda r: (r.created, r.id), reverse=True)
            out = []
            for rec in recs:
                if metadata and any(rec.spec.metadata.get(k) != v for k, v in metadata.items()):
                    continue
                self._advance(rec)
                out.append(self._to_job(rec))
                if limit is not None and len(out) >= limit:
                    break
            return out

    def cancel_job(self, job_id: str) -> Job:
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            if _PHASE_STATUS[rec.phase].is_terminal:
                raise BadRequestError(f"Job {job_id} has already {self.raw_status(rec)}; it cannot be cancelled.",
                                      provider=self.name, status_code=400, code=self.flavor.codes["invalid_state"])
            now = self.clock.now()
            if self.flavor.gradual_cancel:
                if rec.phase != "cancelling":  # asking twice changes nothing
                    rec.phase, rec.cancel_at = "cancelling", now
                    self._event(rec, now, self.flavor.message("cancel_requested"), moment="cancel_requested")
            else:
                rec.phase, rec.finished_at = "cancelled", now
                self._event(rec, now, self.flavor.message("cancelled"), status=JobStatus.CANCELLED, moment="cancelled")
            return self._to_job(rec)

    def pause_job(self, job_id: str) -> Job:
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            flavor = self.flavor
            if not flavor.pausable:
                raise BadRequestError(f"Job {job_id} cannot be paused: this service does not pause jobs.",
                                      provider=self.name, status_code=400, code=flavor.codes["invalid_state"])
            if rec.phase != "running" or (flavor.pause_needs_a_step and rec.steps_done < 1):
                raise BadRequestError(
                    f"Job {job_id} is {self.raw_status(rec)}; only running jobs"
                    + (" that have trained for at least one step" if flavor.pause_needs_a_step else "")
                    + " can be paused.", provider=self.name, status_code=400, code=flavor.codes["invalid_state"])
            now = self.clock.now()
            rec.paused_at = now
            if flavor.gradual_pause:
                rec.phase = "pausing"
                self._event(rec, now, flavor.message("pausing"), moment="pausing")
            else:
                rec.phase = "paused"
                self._event(rec, now, flavor.message("pausing"), status=JobStatus.PAUSED, moment="pausing")
            return self._to_job(rec)

    def resume_job(self, job_id: str) -> Job:
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            if rec.paused_at is None:
                raise BadRequestError(f"Job {job_id} is {self.raw_status(rec)}; only paused jobs can be resumed.",
                                      provider=self.name, status_code=400, code=self.flavor.codes["invalid_state"])
            now = self.clock.now()
            rec.paused_total += now - rec.paused_at
            rec.paused_at = None
            rec.phase = "running"
            self._event(rec, now, self.flavor.message("resumed"), status=JobStatus.RUNNING, moment="resumed")
            return self._to_job(rec)

    def list_events(self, job_id: str, *, after: str | None = None) -> list[Event]:
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            events = list(rec.events)
        if after is not None:
            ids = [e.id for e in events]
            events = events[ids.index(after) + 1:] if after in ids else events
        return events

    def progress(self, job_id: str) -> tuple[int, int, int]:
        """(steps done, total steps, steps per epoch) of a job."""
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            return rec.steps_done, rec.total_steps, rec.steps_per_epoch

    def raw_event_types(self, job_id: str) -> dict[str, str]:
        """Event id -> the type word this flavor files the event under (for services that
        type their events; events of moments it gives no type are left out)."""
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            types = self.flavor.event_types
            return {eid: types[moment] for eid, moment in rec.moments.items() if moment in types}

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            return list(rec.checkpoints)

    def metrics(self, job_id: str) -> list[MetricPoint]:
        with self._lock:
            rec = self._job(job_id)
            self._advance(rec)
            return list(rec.metrics)

    # ------------------------------------------------------------------ the timeline
    def _event(self, rec: _JobRec, at: float, message: str, *, moment: str, level: str = "info",
               data: dict[str, Any] | None = None, status: JobStatus | None = None,
               checkpoint: int | None = None) -> None:
        """One event; its kind comes from what happened, never from the message text. A
        moment the flavor writes nothing for (an empty message) makes no event."""
        if not message:
            return
        eid = self.flavor.event_id(self._rng)
        kind: EventKind = "metrics" if data else "status" if status else "checkpoint" if checkpoint else "message"
        payload = data or ({"status": status.value} if status else {"step": checkpoint} if checkpoint else {})
        rec.events.append(Event(id=eid, created_at=from_timestamp(at), level=level, message=message,  # type: ignore[arg-type]
                                kind=kind, data=payload))
        rec.moments[eid] = moment

    def _fail(self, rec: _JobRec, at: float, code: str, message: str, param: str | None = None) -> None:
        rec.phase, rec.finished_at = "failed", at
        rec.error = JobError(code=code, message=message, param=param)
        self._event(rec, at, message, level="error", status=JobStatus.FAILED, moment="failed")

    def _advance(self, rec: _JobRec) -> None:
        """Bring a job's state up to the clock's now, emitting what happened in between."""
        now = self.clock.now()
        flavor = self.flavor
        if rec.phase == "cancelling":
            if rec.cancel_at is not None and now >= rec.cancel_at + self.timings.cancelling:
                rec.phase, rec.finished_at = "cancelled", rec.cancel_at + self.timings.cancelling
                self._event(rec, rec.finished_at, flavor.message("cancelled"), status=JobStatus.CANCELLED,
                            moment="cancelled")
            return
        if not rec.validated and now >= rec.validated_at and rec.phase == "validating":
            rec.validated = True
            for param, fid in (("training_file", rec.spec.training_file),
                               ("validation_file", rec.spec.validation_file)):
                if fid is None:
                    continue
                kind = param.split("_")[0]
                f = self._files.get(fid)
                if f is None:
                    problem: str | None = f"The {kind} file was deleted."
                elif param == "training_file":
                    problem = f.problem or rec.file_problems.get(param)
                else:  # the upload-time check took it for training data; trust the job-time one
                    problem = rec.file_problems.get(param)
                if problem:
                    self._fail(rec, rec.validated_at, flavor.codes[f"invalid_{param}"],
                               f"The job failed due to a file format error in the {kind} file. {problem}", param)
                    return
            rec.phase = "queued"
            self._event(rec, rec.validated_at, flavor.message("validated"), status=JobStatus.QUEUED, moment="validated")
        if rec.validated and rec.phase == "queued" and now >= rec.started_at:
            rec.phase = "running"
            self._event(rec, rec.started_at, flavor.message("started"), status=JobStatus.RUNNING, moment="started")
        if rec.phase == "pausing" and rec.paused_at is not None and now >= rec.paused_at + self.timings.pausing:
            rec.phase = "paused"
            self._event(rec, rec.paused_at + self.timings.pausing, flavor.message("paused"), status=JobStatus.PAUSED,
                        moment="paused")
        if rec.phase not in ("running", "pausing", "paused", "finalizing"):
            return
        origin = rec.started_at + rec.paused_total
        if rec.fail_at_step is not None and rec.steps_done >= rec.fail_at_step:
            self._fail(rec, max(origin + rec.steps_done * self.timings.step, rec.started_at),
                       flavor.codes["internal"], rec.fail_message)
            return
        horizon = rec.paused_at if rec.paused_at is not None else now
        due = min(rec.total_steps, int(max(0.0, horizon - origin) // self.timings.step))
        while rec.steps_done < due:
            step = rec.steps_done + 1
            at = origin + step * self.timings.step
            self._step(rec, step, at)
            if rec.fail_at_step is not None and step >= rec.fail_at_step:
                self._fail(rec, at, flavor.codes["internal"], rec.fail_message)
                return
        done_at = origin + rec.total_steps * self.timings.step + self.timings.finalize
        if rec.steps_done == rec.total_steps and rec.paused_at is None:
            if not rec.trained:
                rec.trained = True
                self._event(rec, done_at - self.timings.finalize, flavor.message("trained"), moment="trained")
            if now >= done_at:
                self._succeed(rec, done_at)
            else:
                rec.phase = "finalizing"  # trained; the weights are being written

    def _point(self, rec: _JobRec, step: int) -> MetricPoint:
        p = step / rec.total_steps
        jitter = random.Random(f"{rec.seed}:{step}").uniform(-0.04, 0.04)
        train_loss = round(0.12 + 2.1 * math.exp(-4.0 * p) + jitter, 4)
        acc = round(min(0.999, 0.5 + 0.45 * (1 - math.exp(-4.0 * p)) - jitter / 2), 4)
        point = MetricPoint(step=step, epoch=round(step / rec.steps_per_epoch, 4), train_loss=train_loss,
                            train_token_accuracy=acc)
        if rec.spec.validation_file:
            point.valid_loss = round(train_loss * 1.12 + 0.03, 4)
            point.valid_token_accuracy = round(acc * 0.97, 4)
            if step % rec.steps_per_epoch == 0:
                point.full_valid_loss = round(train_loss * 1.1 + 0.05, 4)
                point.full_valid_token_accuracy = round(acc * 0.96, 4)
        return point

    def _step(self, rec: _JobRec, step: int, at: float) -> None:
        point = self._point(rec, step)
        rec.metrics.append(point)
        rec.steps_done = step
        data: dict[str, Any] = {"step": step, "train_loss": point.train_loss, "total_steps": rec.total_steps,
                                "train_mean_token_accuracy": point.train_token_accuracy}
        msg = f"Step {step}/{rec.total_steps}: training loss={point.train_loss:.2f}"
        if point.valid_loss is not None:
            data.update(valid_loss=point.valid_loss, valid_mean_token_accuracy=point.valid_token_accuracy)
            msg += f", validation loss={point.valid_loss:.2f}"
        if point.full_valid_loss is not None:
            data.update(full_valid_loss=point.full_valid_loss,
                        full_valid_mean_token_accuracy=point.full_valid_token_accuracy)
            msg += f", full validation loss={point.full_valid_loss:.2f}"
        if self.flavor.step_events:
            self._event(rec, at, msg, data=data, moment="step")
        if step % rec.steps_per_epoch == 0:
            if rec.fine_tuned_model is None:
                rec.fine_tuned_model = self._ft_name(rec)
            ckpt = Checkpoint(id=self.flavor.checkpoint_id(self._rng), step=step, created_at=from_timestamp(at),
                              model=f"{rec.fine_tuned_model}:ckpt-step-{step}", metrics=point)
            rec.checkpoints = (rec.checkpoints + [ckpt])[-3:]
            self._event(rec, at, self.flavor.message("checkpoint", step=step), checkpoint=step, moment="checkpoint")

    def _succeed(self, rec: _JobRec, at: float) -> None:
        rec.fine_tuned_model = rec.fine_tuned_model or self._ft_name(rec)
        rec.phase, rec.finished_at = "succeeded", at
        if self.flavor.results_file:
            rec.result_file = self._store_bytes(self.flavor.results_file, self._results_csv(rec), "fine-tune-results")
        self._event(rec, at, self.flavor.message("model_created", model=rec.fine_tuned_model), moment="model_created")
        self._event(rec, at, self.flavor.message("succeeded"), status=JobStatus.SUCCEEDED, moment="succeeded")

    def _results_csv(self, rec: _JobRec) -> bytes:
        cols = [column for column, _ in self.flavor.results_columns]
        attrs = [attr for _, attr in self.flavor.results_columns]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for point in rec.metrics:
            writer.writerow(["" if getattr(point, a) is None else getattr(point, a) for a in attrs])
        return buf.getvalue().encode()

    def _to_job(self, rec: _JobRec) -> Job:
        started = rec.phase not in ("validating", "queued") or rec.steps_done > 0
        hp = rec.spec.hyperparameters
        hyper: dict[str, Any] = {
            "n_epochs": rec.epochs if started else (hp.n_epochs or "auto"),
            "batch_size": rec.batch_size if started else (hp.batch_size or "auto"),
            "learning_rate_multiplier": rec.lrm if started else (hp.learning_rate_multiplier or "auto"),
        }
        if rec.spec.method == "dpo":
            hyper["beta"] = hp.beta if hp.beta is not None else ("auto" if not started else 0.1)
        eta = None
        if rec.phase in ("running", "finalizing") and rec.paused_at is None:
            eta = from_timestamp(int(rec.started_at + rec.paused_total + rec.total_steps * self.timings.step
                                     + self.timings.finalize))
        succeeded = rec.phase == "succeeded"
        raw = self.raw_status(rec)
        return Job(
            id=rec.id, provider=self.name, status=self.job_status(raw), raw_status=raw,
            model=rec.spec.model, fine_tuned_model=rec.fine_tuned_model if succeeded else None,
            created_at=from_timestamp(int(rec.created)),
            finished_at=from_timestamp(int(rec.finished_at)) if rec.finished_at else None, estimated_finish=eta,
            training_file=rec.spec.training_file, validation_file=rec.spec.validation_file, method=rec.spec.method,
            hyperparameters=hyper, suffix=rec.spec.suffix, seed=rec.seed,
            trained_tokens=rec.tokens_per_epoch * rec.epochs if succeeded else None, error=rec.error,
            metadata=dict(rec.spec.metadata), integrations=list(rec.spec.integrations),
            result_files=[rec.result_file] if rec.result_file else [],
        )

    # ------------------------------------------------------------------ models and chat
    def _ft_models(self) -> dict[str, _JobRec]:
        models: dict[str, _JobRec] = {}
        for rec in self._jobs.values():
            self._advance(rec)
            if rec.phase == "succeeded" and rec.fine_tuned_model and rec.fine_tuned_model not in self._deleted_models:
                models[rec.fine_tuned_model] = rec
                for ck in rec.checkpoints:
                    if ck.model:
                        models[ck.model] = rec
        return models

    def list_models(self) -> list[ModelInfo]:
        with self._lock:
            base = [ModelInfo(id=m, created_at=from_timestamp(_CREATED), owned_by="system")
                    for m in self.flavor.fine_tunable]
            tuned = [ModelInfo(id=name, created_at=from_timestamp(int(rec.finished_at or rec.created)),
                               owned_by=self.settings.organization, fine_tuned=True)
                     for name, rec in self._ft_models().items() if ":ckpt-step-" not in name]
            return base + tuned

    def delete_model(self, model: str) -> None:
        with self._lock:
            if model in self.flavor.fine_tunable:
                raise PermissionDeniedError("You have insufficient permissions for this operation: base models "
                                            "cannot be deleted.", provider=self.name, status_code=403,
                                            code="insufficient_permissions", param="model")
            if model not in self._ft_models():
                raise NotFoundError(f"The model '{model}' does not exist", provider=self.name, status_code=404,
                                    code="model_not_found", param="model")
            self._deleted_models.add(model)

    def _require_model(self, model: str) -> bool:
        """True for a fine-tune, False for a base model; NotFoundError otherwise."""
        if model in self.flavor.fine_tunable:
            return False
        if model in self._ft_models():
            return True
        raise NotFoundError(f"The model `{model}` does not exist or you do not have access to it.",
                            provider=self.name, status_code=404, code="model_not_found", param="model")

    def _reply(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> tuple[str, str, Usage]:
        with self._lock:
            tuned = self._require_model(model)
        last = next((m.get("content") for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
                    "")
        if isinstance(last, list):
            last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
        text = f"{'Fine-tuned' if tuned else 'Base'} model {model} (simulated) answers: {str(last)[:200]}"
        finish = "stop"
        for stop in ([params["stop"]] if isinstance(params.get("stop"), str) else params.get("stop") or []):
            if stop and stop in text:
                text = text[: text.index(stop)]
        words = text.split(" ")
        limit = params.get("max_completion_tokens") or params.get("max_tokens")
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        text = " ".join(words)
        prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in messages if isinstance(m, dict))
        return text, finish, Usage(prompt_tokens=prompt, completion_tokens=len(words),
                                   total_tokens=prompt + len(words))

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        text, finish, usage = self._reply(model, messages, params)
        return ChatResponse(content=text, model=model, finish_reason=finish, usage=usage)

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        text, finish, usage = self._reply(model, messages, params)
        words = text.split(" ")
        for i, word in enumerate(words):
            yield ChatDelta(content=word if i == len(words) - 1 else word + " ")
        yield ChatDelta(finish_reason=finish, usage=usage)

    # ------------------------------------------------------------------ deployments (Azure-like)
    def _to_deployment(self, rec: _DeployRec) -> Deployment:
        t, age, words = self.timings, self.clock.now() - rec.created, self.flavor.deployment_states
        if age < t.deploy_accepted:
            raw, status = words["accepted"], "creating"
        elif age < t.deploy_accepted + t.deploy_creating:
            raw, status = words["creating"], "creating"
        else:
            raw, status = words["succeeded"], "succeeded"
        ready = age >= t.deploy_accepted + t.deploy_creating + t.deploy_warmup
        return Deployment(name=rec.name, model=rec.model, provider=self.name, status=status,  # type: ignore[arg-type]
                          raw_status=raw, ready=ready, created_at=from_timestamp(int(rec.created)), sku=rec.sku,
                          capacity=rec.capacity)

    def deploy(self, model: str, spec: DeploySpec) -> Deployment:
        with self._lock:
            if model not in self._ft_models() and model not in self.flavor.fine_tunable:
                raise BadRequestError(f"The model '{model}' was not found or is not a fine-tuned model of this "
                                      f"resource.", provider=self.name, status_code=400, code="DeploymentModelNotFound",
                                      param="properties.model.name")
            name = spec.name or model.replace(":", "-")
            existing = self._deployments.get(name)
            if existing is not None and existing.model == model:
                existing.sku, existing.capacity = spec.sku or existing.sku, spec.capacity or existing.capacity
                return self._to_deployment(existing)
            rec = _DeployRec(name=name, model=model, created=self.clock.now(), sku=spec.sku or "Standard",
                             capacity=spec.capacity or 1)
            self._deployments[name] = rec
            return self._to_deployment(rec)

    def get_deployment(self, name: str) -> Deployment:
        with self._lock:
            rec = self._deployments.get(name)
            if rec is None:
                raise NotFoundError(f"The deployment '{name}' was not found.", provider=self.name, status_code=404,
                                    code="DeploymentNotFound")
            return self._to_deployment(rec)

    def list_deployments(self) -> list[Deployment]:
        with self._lock:
            return [self._to_deployment(r) for r in self._deployments.values()]

    def delete_deployment(self, name: str) -> None:
        with self._lock:
            if self._deployments.pop(name, None) is None:
                raise NotFoundError(f"The deployment '{name}' was not found.", provider=self.name, status_code=404,
                                    code="DeploymentNotFound")
