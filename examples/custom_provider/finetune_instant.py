"""A worked example of a finetune-sdk provider, written as a third party would write one.

``instant`` keeps everything in memory and finishes a job within three polls: each
``get_job`` moves it one state along (``accepted`` -> ``training`` -> ``done``), emitting
a status event, a metrics event per "step" and a checkpoint event. Its fine-tuned model
answers by echoing. What it shows:

- settings, with a secret read from the environment (``INSTANT_TOKEN``), never the file;
- ``capabilities``: what the backend does; everything else raises UnsupportedOperation;
- ``statuses``: the backend's raw words mapped to the SDK's statuses (an unknown word
  would surface as ``unknown``, never as another state);
- events with a structured ``kind``, so waiting and progress never parse English;
- registration through the ``finetune_sdk.providers`` entry point (see pyproject.toml).

The retries, waiting, progress, idempotent create, validation and the CLI come from the
SDK. A provider over an HTTP API would subclass ``finetune_sdk.providers.HTTPProvider``
instead and write only routes, bodies and parsing (see ``finetune_sdk/providers/openai.py``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr

from finetune_sdk import Capability, Provider, ProviderSettings
from finetune_sdk.config import setting
from finetune_sdk.errors import NotFoundError
from finetune_sdk.types import ChatResponse, Event, File, Job, JobSpec, JobStatus, Usage, from_timestamp

_STEPS = 3


class InstantSettings(ProviderSettings):
    token: SecretStr = setting(..., env=("INSTANT_TOKEN",), secret=True, example="export INSTANT_TOKEN=...")
    speed: int = setting(1, description="States a job moves per poll.")


class InstantProvider(Provider[InstantSettings]):
    """Jobs that finish while you watch."""

    name = "instant"
    hosted = False  # datasets follow the local rules (no 10-example minimum)
    capabilities = frozenset({Capability.UPLOAD, Capability.FILES, Capability.CREATE_JOB, Capability.EVENTS,
                              Capability.METADATA_FILTER, Capability.CHAT})
    statuses: ClassVar[Mapping[str, JobStatus]] = {"accepted": JobStatus.QUEUED, "training": JobStatus.RUNNING,
                                                   "done": JobStatus.SUCCEEDED, "broken": JobStatus.FAILED}
    Settings = InstantSettings

    def __init__(self, settings: InstantSettings | None = None, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._ids = itertools.count(1)
        self._files: dict[str, File] = {}
        self._jobs: dict[str, dict[str, Any]] = {}

    # -- files
    def upload(self, path: Path, *, purpose: str = "fine-tune") -> File:
        f = File(id=f"file-{next(self._ids)}", filename=path.name, bytes=path.stat().st_size, purpose=purpose)
        self._files[f.id] = f
        return f

    def get_file(self, file_id: str) -> File:
        if file_id not in self._files:
            raise NotFoundError(f"No file {file_id}", provider=self.name, status_code=404)
        return self._files[file_id]

    # -- jobs
    def create_job(self, spec: JobSpec) -> Job:
        self.get_file(spec.training_file)
        job_id = f"instant-{next(self._ids)}"
        self._jobs[job_id] = {"spec": spec, "raw": "accepted", "events": [], "created": time.time()}
        self._event(job_id, "status", "Job accepted", {"status": "queued"})
        return self._job(job_id)

    def _event(self, job_id: str, kind: str, message: str, data: dict[str, Any]) -> None:
        events = self._jobs[job_id]["events"]
        events.append(Event(id=f"{job_id}-ev{len(events) + 1}", created_at=from_timestamp(time.time()),
                            kind=kind, message=message, data=data))  # type: ignore[arg-type]

    def _advance(self, job_id: str) -> None:
        rec = self._jobs[job_id]
        for _ in range(self.settings.speed):
            if rec["raw"] == "accepted":
                rec["raw"] = "training"
                self._event(job_id, "status", "Training started", {"status": "running"})
                for step in range(1, _STEPS + 1):
                    self._event(job_id, "metrics", f"step {step}",
                                {"step": step, "total_steps": _STEPS, "train_loss": round(2.0 / step, 3)})
            elif rec["raw"] == "training":
                rec["raw"] = "done"
                self._event(job_id, "checkpoint", "Checkpoint saved", {"step": _STEPS})
                self._event(job_id, "status", "Job done", {"status": "succeeded"})

    def _job(self, job_id: str) -> Job:
        if job_id not in self._jobs:
            raise NotFoundError(f"No job {job_id}", provider=self.name, status_code=404)
        rec = self._jobs[job_id]
        spec: JobSpec = rec["spec"]
        done = rec["raw"] == "done"
        return Job(id=job_id, provider=self.name, status=self.job_status(rec["raw"]), raw_status=rec["raw"],
                   model=spec.model, fine_tuned_model=f"{spec.model}:instant:{job_id}" if done else None,
                   created_at=from_timestamp(rec["created"]), training_file=spec.training_file,
                   metadata=dict(spec.metadata), suffix=spec.suffix)

    def get_job(self, job_id: str) -> Job:
        self._job(job_id)
        self._advance(job_id)
        return self._job(job_id)

    def list_jobs(self, *, limit: int | None = None, metadata: dict[str, str] | None = None) -> list[Job]:
        jobs = [self._job(j) for j in reversed(self._jobs)]
        jobs = [j for j in jobs if all(j.metadata.get(k) == v for k, v in (metadata or {}).items())]
        return jobs[:limit]

    def list_events(self, job_id: str, *, after: str | None = None) -> list[Event]:
        self._job(job_id)
        events: list[Event] = self._jobs[job_id]["events"]
        ids = [e.id for e in events]
        return events[ids.index(after) + 1:] if after in ids else list(events)

    # -- chat
    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        text = str(messages[-1].get("content", ""))
        return ChatResponse(content=f"{model} says: {text}", model=model, finish_reason="stop",
                            usage=Usage(prompt_tokens=len(text.split()), completion_tokens=len(text.split()) + 2,
                                        total_tokens=2 * len(text.split()) + 2))
