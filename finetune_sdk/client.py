"""``FineTuneClient``: one API over every provider. Orchestration only — providers translate,
the core (validation, waiting, retries, idempotency, the ledger) is shared.

::

    client = FineTuneClient.from_config(profile="azure")     # or FineTuneClient(provider="openai", api_key=...)
    report = client.validate("train.jsonl", model="gpt-4o-mini-2024-07-18")
    job = client.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="train.jsonl", suffix="recipes")
    for event in client.jobs.follow(job.id): print(event.message)
    job = client.jobs.wait(job.id, timeout=3600)
    deployment = client.deployments.create(job, name="recipes")
    print(client.chat(deployment, "What goes with basil?"))
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from ._secrets import get_logger
from .config import Profile, finetune_home, load_profile
from .data.validate import validate as validate_dataset
from .errors import ConfigurationError, DatasetError, FineTuneError, IdempotencyError, ProviderConnectionError
from .ledger import Ledger
from .metrics import Metrics
from .polling import Poller, PollSchedule
from .providers.base import Capability, Provider, get_provider_class
from .retry import RetryPolicy, create_exactly_once
from .types import (IDEMPOTENCY_KEY, REQUEST_DIGEST_KEY, ChatDelta, ChatResponse, Checkpoint, DatasetReport,
                    Deployment, DeploySpec, Event, File, Hyperparameters, Job, JobSpec, ModelInfo)
from .waiting import Waiter

if TYPE_CHECKING:  # pragma: no cover
    from .evaluation import Evaluation
    from .migration import Migration

__all__ = ["FineTuneClient", "IDEMPOTENCY_KEY", "REQUEST_DIGEST_KEY"]

_log = get_logger(__name__)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _looks_like_path(value: Any) -> bool:
    if isinstance(value, Path):
        return True
    return isinstance(value, str) and (os.path.exists(value) or value.endswith((".jsonl", ".json")) or os.sep in value)


class Files:
    """``client.files``: upload (validated), get, list, delete, content."""

    def __init__(self, client: FineTuneClient) -> None:
        self._c = client
        self._uploaded: dict[str, str] = {}  # content digest -> file id, for this client

    def upload(self, path: str | os.PathLike[str], *, purpose: str = "fine-tune") -> File:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"No such file: {p}")
        return self._c.provider.upload(p, purpose=purpose)

    def get(self, file_id: str) -> File:
        return self._c.provider.get_file(file_id)

    def list(self, *, purpose: str | None = None) -> list[File]:
        return self._c.provider.list_files(purpose=purpose)

    def delete(self, file_id: str) -> None:
        self._c.provider.delete_file(file_id)

    def content(self, file_id: str) -> bytes:
        return self._c.provider.file_content(file_id)

    def wait_processed(self, file_id: str, *, timeout: float = 600.0) -> File:
        """Wait until the service has processed a file (one request per poll, outages ridden
        out as for jobs); DatasetError if it rejected the file, WaitTimeout after ``timeout``."""
        if Capability.FILES not in self._c.provider.capabilities:
            return File(id=file_id, filename="", bytes=0, purpose="fine-tune")
        poller: Poller[File] = Poller(replace(self._c.poll, initial=0.5, maximum=10.0, growth=1.5),
                                      sleep=self._c._sleep, clock=self._c._clock)
        f = poller.until(lambda: self.get(file_id), lambda f: f.status in ("processed", "error"),
                         what=f"waiting for {file_id} to be processed", timeout=timeout,
                         on_timeout=lambda _: f"File {file_id} is still being processed after {timeout:g} s.")
        if f.status == "error":
            raise DatasetError(f"The provider rejected {f.filename or file_id}: {f.status_details or 'no details'}")
        return f

    def _resolve(self, value: str | os.PathLike[str], *, model: str, method: str, validate: bool,
                 role: str) -> tuple[str, str | None]:
        """A file id for ``value`` (a path is validated and uploaded once), and its content digest."""
        if not _looks_like_path(value):
            return str(value), None
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"No such {role} file: {path}")
        digest = _digest(path)
        if digest in self._uploaded:
            return self._uploaded[digest], digest
        if validate:
            report = self._c.validate(path, model=model, method=None if method == "supervised" else method,
                                      is_validation_file=role == "validation")
            if not report.ok:
                first = "; ".join(str(i) for i in report.errors[:3])
                raise DatasetError(f"{path} has {report.error_count} error(s), so nothing was uploaded. "
                                   f"First: {first}. "
                                   f"Run `finetune validate {path}` for the full report.", report=report)
        f = self.upload(path)
        f = self.wait_processed(f.id) if f.status != "processed" else f
        self._uploaded[digest] = f.id
        return f.id, digest


class Jobs:
    """``client.jobs``: create, get, list, cancel, pause, resume, events, follow, wait, checkpoints, metrics."""

    def __init__(self, client: FineTuneClient) -> None:
        self._c = client

    @property
    def _p(self) -> Provider:
        return self._c.provider

    def create(self, *, training_file: str | os.PathLike[str], model: str | None = None,
               validation_file: str | os.PathLike[str] | None = None, method: str = "supervised",
               hyperparameters: Mapping[str, Any] | Hyperparameters | None = None, suffix: str | None = None,
               seed: int | None = None, metadata: Mapping[str, str] | None = None,
               integrations: list[dict[str, Any]] | None = None, idempotency_key: str | None = None,
               validate: bool = True, extra: Mapping[str, Any] | None = None) -> Job:
        """Create a fine-tuning job — exactly one per call.

        ``training_file`` / ``validation_file``: a path (validated, then uploaded) or a file
        id. Each call carries an idempotency key in the job's metadata: a fresh random one,
        or ``idempotency_key`` if given. When a create request fails in a way that may still
        have created the job (timeout, dropped connection, lost response, 5xx), the client
        looks the key up before trying again and returns the job it already created; after
        a 4xx or 429 nothing was created, so it simply tries again. Calling ``create`` twice
        makes two jobs — unless both calls pass the same ``idempotency_key`` (for a script
        that may be re-run): the second call then returns the first call's job, whatever its
        status, and raises :class:`IdempotencyError` if the key was used for a different
        request. Use a new key to train again.

        Raises:
            DatasetError: the dataset has errors (nothing is uploaded).
            ConfigurationError: no model given and no ``base_model`` in the profile.
            IdempotencyError: ``idempotency_key`` was used for a different request.
            ProviderError: the provider refused the job.
        """
        model = model or self._c.default_model
        if not model:
            raise ConfigurationError("No model: pass model=... or set base_model in your finetune.toml profile.")
        if method not in ("supervised", "dpo", "reinforcement"):
            raise ValueError(f"method must be supervised, dpo or reinforcement, not {method!r}")
        if idempotency_key is not None and not (isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 64):
            raise ValueError("idempotency_key must be a non-empty string of at most 64 characters")
        hp = hyperparameters if isinstance(hyperparameters, Hyperparameters) \
            else Hyperparameters(**(hyperparameters or {}))
        train_id, train_digest = self._c.files._resolve(training_file, model=model, method=method, validate=validate,
                                                        role="training")
        val_id, val_digest = (None, None) if validation_file is None else self._c.files._resolve(
            validation_file, model=model, method=method, validate=validate, role="validation")
        digest = hashlib.sha256(json.dumps(
            [model, train_digest or train_id, val_digest or val_id, method, hp.model_dump(mode="json"), suffix, seed,
             dict(metadata or {})], sort_keys=True, default=str).encode()).hexdigest()[:32]
        key = idempotency_key or uuid.uuid4().hex
        spec = JobSpec(model=model, training_file=train_id, validation_file=val_id, method=method,  # type: ignore[arg-type]
                       hyperparameters=hp, suffix=suffix, seed=seed,
                       metadata={**dict(metadata or {}), IDEMPOTENCY_KEY: key, REQUEST_DIGEST_KEY: digest},
                       integrations=integrations or [], idempotency_key=key, extra=dict(extra or {}))
        existing = self._find(key) if idempotency_key is not None else None
        if existing is not None:
            job = self._reuse(existing, key, digest)
        else:
            c = self._c
            job = create_exactly_once(
                lambda: self._p.create_job(spec), lambda: self._find(key), self._p.retry, clock=c._clock,
                settle=lambda exc: c._timeout if isinstance(exc, ProviderConnectionError) and exc.timed_out else 0.0,
                describe=f"{self._p.name}: creating a job")
        self._c._record(job, idempotency_key=key, training_file=str(training_file))
        return job

    @staticmethod
    def _reuse(job: Job, key: str, digest: str) -> Job:
        recorded = job.metadata.get(REQUEST_DIGEST_KEY)
        # A provider that cannot store metadata keeps only a prefix of the digest (Together: in the suffix).
        if recorded is not None and not (recorded and digest.startswith(recorded)):
            raise IdempotencyError(f"The idempotency key {key!r} was already used for job {job.id}, created with "
                                   f"different arguments (model, data, method, hyperparameters, suffix, seed or "
                                   f"metadata). Use a new key for a new job.", job=job)
        _log.info("create: returning job %s, created earlier with idempotency key %s (%s)", job.id, key,
                  job.status.value)
        return job

    def _find(self, key: str) -> Job | None:
        """The job created with idempotency key ``key``, if any (a filtered list where the
        provider can filter by metadata, else its 100 newest jobs)."""
        if Capability.METADATA_FILTER in self._p.capabilities:
            jobs = self._p.list_jobs(metadata={IDEMPOTENCY_KEY: key}, limit=10)
        else:
            jobs = self._p.list_jobs(limit=100)
        matches = [j for j in jobs if j.metadata.get(IDEMPOTENCY_KEY) == key]
        return matches[0] if matches else None

    def get(self, job_id: str) -> Job:
        job = self._p.get_job(job_id)
        self._c._record(job)
        return job

    def list(self, *, limit: int | None = None, metadata: Mapping[str, str] | None = None) -> list[Job]:
        return self._p.list_jobs(limit=limit, metadata=dict(metadata) if metadata else None)

    def cancel(self, job_id: str) -> Job:
        job = self._p.cancel_job(job_id)
        self._c._record(job)
        return job

    def pause(self, job_id: str) -> Job:
        return self._p.pause_job(job_id)

    def resume(self, job_id: str) -> Job:
        return self._p.resume_job(job_id)

    def events(self, job_id: str, *, after: str | None = None) -> builtins.list[Event]:
        """Events newer than ``after`` (an event id), oldest first."""
        return self._p.list_events(job_id, after=after)

    def follow(self, job_id: str, *, after: str | None = None) -> Iterator[Event]:
        """Every event exactly once, oldest first, until the job ends."""
        return self._c.waiter.follow(job_id, after=after)

    def wait(self, job_id: str, *, timeout: float | None = None, progress: bool | None = None) -> Job:
        """Block until the job ends (progress bar in terminals and notebooks).

        Raises JobFailedError (failed or cancelled) or WaitTimeout; on Ctrl-C the job
        keeps running and the re-attach command is printed.
        """
        try:
            job = self._c.waiter.wait(job_id, timeout=timeout, progress=progress)
        except FineTuneError as exc:
            failed = getattr(exc, "job", None)
            if failed is not None:
                self._c._record(failed)
            raise
        self._c._record(job)
        return job

    def migrate(self, job_id: str, *, to: FineTuneClient | str, model: str | None = None,
                training_file: str | os.PathLike[str] | None = None,
                validation_file: str | os.PathLike[str] | None = None,
                hyperparameters: dict[str, Any] | None = None, dry_run: bool = False, strict: bool = False,
                again: bool = False, wait: bool = False) -> Migration:
        """Carry job ``job_id`` of this client's provider to another: ``to`` is a client or a
        profile name. See :mod:`finetune_sdk.migration` (and ``finetune migrate``).

        ``model``: the target's base model when it does not have the source's; ``training_file`` /
        ``validation_file``: local copies when the source's files are gone; ``dry_run``: plan
        only; ``strict``: refuse when a hyperparameter cannot be carried; ``again``: a new
        job even if this migration already made one.
        """
        from .migration import migrate

        target = FineTuneClient.from_config(to) if isinstance(to, str) else to
        return migrate(self._c, job_id, target, dry_run=dry_run, strict=strict, wait=wait, model=model,
                       training_file=training_file, validation_file=validation_file,
                       hyperparameters=hyperparameters, again=again)

    def checkpoints(self, job_id: str) -> builtins.list[Checkpoint]:
        return self._p.list_checkpoints(job_id)

    def export(self, job_id: str, *, format: str = "adapter", out: str | os.PathLike[str], **options: Any) -> Any:
        """Write a local fine-tune for other engines: ``adapter`` (vLLM --lora-modules), ``merged``
        (safetensors for vLLM/TGI/...), or ``gguf`` (llama.cpp / Ollama, with a Modelfile).
        Returns an ExportResult whose ``commands`` say how to serve it."""
        return self._p.export(job_id, format=format, out=Path(out), **options)

    def push_to_hub(self, job_id: str, repo_id: str, *, private: bool = False, merged: bool = False,
                    token: str | None = None) -> Any:
        """Publish a local fine-tune (adapter, or the merged model) with a model card to the Hugging Face Hub."""
        return self._p.push_to_hub(job_id, repo_id, private=private, merged=merged, token=token)

    def metrics(self, job_id: str) -> Metrics:
        """Metric points (train/valid loss and accuracy per step), exportable with ``.to_csv()``
        and plottable with ``.plot()``."""
        return Metrics(self._p.metrics(job_id))


class Deployments:
    """``client.deployments``: make a fine-tuned model callable."""

    def __init__(self, client: FineTuneClient) -> None:
        self._c = client

    def create(self, target: Job | str, *, name: str | None = None, sku: str | None = None,
               capacity: int | None = None, **extra: Any) -> Deployment:
        """Deploy a succeeded job (or a model / checkpoint id). OpenAI: ready at once; Azure:
        an ARM deployment, waited on until provisioned."""
        if isinstance(target, Job):
            job = target
        elif isinstance(target, str) and self._c.provider.is_job_id(target):
            job = self._c.jobs.get(target)
        else:
            job = None
        if job is not None:
            if not job.fine_tuned_model:
                raise FineTuneError(f"Job {job.id} is {job.status.value} and has no fine-tuned model to deploy yet. "
                                    f"Wait for it: client.jobs.wait({job.id!r}).")
            model = job.fine_tuned_model
        else:
            model = str(target)
        dep = self._c.provider.deploy(model, DeploySpec(name=name, sku=sku, capacity=capacity, extra=extra))
        if job is not None:
            dep.job_id = job.id
        return dep

    def get(self, name: str) -> Deployment:
        return self._c.provider.get_deployment(name)

    def list(self) -> list[Deployment]:
        return self._c.provider.list_deployments()

    def delete(self, name: str | Deployment) -> None:
        self._c.provider.delete_deployment(name.name if isinstance(name, Deployment) else name)


class Models:
    """``client.models``: what the provider can serve; delete fine-tunes."""

    def __init__(self, client: FineTuneClient) -> None:
        self._c = client

    def list(self) -> list[ModelInfo]:
        return self._c.provider.list_models()

    def delete(self, model: str) -> None:
        self._c.provider.delete_model(model)


def _compare(client: FineTuneClient, examples: Any, tuned: Any, base: Any, **kwargs: Any) -> Any:
    from .evaluation import compare, load_examples

    items = load_examples(Path(examples)) if isinstance(examples, (str, os.PathLike)) else list(examples)
    return compare(client, items, tuned=tuned, base=base, **kwargs)


class FineTuneClient:
    """One client for every backend. Choose the backend by profile or by name."""

    def __init__(self, provider: str | Provider | None = None, *, profile: str | None = None,
                 config: str | os.PathLike[str] | None = None, credential: Any = None, http_client: Any = None,
                 ledger: bool | Ledger = True, poll: PollSchedule | None = None, retry: RetryPolicy | None = None,
                 env: Mapping[str, str] | None = None, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None, **settings: Any) -> None:
        """
        Args:
            provider: a registered provider name ("openai", "azure", "local", ...) or a
                Provider instance. Optional when a profile names it.
            profile: a profile of finetune.toml (default: FINETUNE_PROFILE, then the
                file's ``default``).
            config: the config file (default: FINETUNE_CONFIG, then ./finetune.toml).
            credential: for Azure, any azure-identity TokenCredential.
            http_client: an ``httpx.Client`` for HTTP providers (proxies, custom TLS, test transports).
            ledger: record jobs under FINETUNE_HOME (True), not at all (False), or in a
                given Ledger.
            poll: how waits poll (intervals, and the outage budget: how long polling rides
                out a failing service before it raises).
            retry: the retry policy of every request (default: 5 attempts, jittered
                exponential backoff from 0.5 s, honouring Retry-After).
            sleep, clock: for tests — drive every wait and retry with a simulated clock
                (e.g. the emulator's ``clock.advance`` and ``clock.now``).
            **settings: provider settings (api_key, base_url, endpoint, ...); they
                override the environment, which overrides the profile.
        """
        self.profile: Profile | None = None
        if isinstance(provider, Provider):
            if settings:
                raise ConfigurationError("Pass settings to the Provider you construct, not to FineTuneClient.")
            self.provider = provider
        else:
            prof = load_profile(profile, config=config, provider=provider, env=env)
            if prof.provider is None:
                raise ConfigurationError("No provider chosen: pass provider='openai' (or azure, local, ...), or "
                                         "profile=..., or create finetune.toml with a [profiles.NAME] table "
                                         "holding provider = \"...\". Looked: " + prof.where)
            cls = get_provider_class(prof.provider)
            resolved = cls.Settings.resolve(provider=prof.provider, explicit=settings, profile=prof, env=env)
            self.provider = cls(resolved, credential=credential, http_client=http_client, retry=retry)
            self.profile = prof
        self._sleep = sleep or (retry.sleep if retry else time.sleep)
        self._clock = clock or time.monotonic
        # One retry policy, owned by the provider, which sends every request under it.
        if retry is not None or sleep is not None:
            self.provider.retry = replace(retry or self.provider.retry, sleep=self._sleep)
        if clock is not None:
            self.provider.poll_clock = clock
        self.poll = poll or PollSchedule()
        self._timeout = float(getattr(self.provider.settings, "timeout", 60.0))
        if ledger is True:
            self.ledger: Ledger | None = Ledger(finetune_home(env) / "ledger.jsonl")
        else:
            self.ledger = ledger or None
        hint = "finetune jobs wait {job_id}" + (f" --profile {self.profile.name}" if self.profile and
                                                self.profile.name else f" --provider {self.provider.name}")
        self.waiter = Waiter(self.provider, schedule=self.poll, reattach_hint=hint, sleep=self._sleep,
                             clock=clock or time.time)
        self.files = Files(self)
        self.jobs = Jobs(self)
        self.deployments = Deployments(self)
        self.models = Models(self)

    @classmethod
    def from_config(cls, profile: str | None = None, *, config: str | os.PathLike[str] | None = None,
                    **overrides: Any) -> FineTuneClient:
        """The client a finetune.toml profile describes (explicit overrides win)."""
        return cls(profile=profile, config=config, **overrides)

    def __repr__(self) -> str:
        name = self.profile.name if self.profile and self.profile.name else None
        return f"<FineTuneClient provider={self.provider.name!r}{f' profile={name!r}' if name else ''}>"

    def __enter__(self) -> FineTuneClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.provider.close()

    @property
    def default_model(self) -> str | None:
        return getattr(self.provider.settings, "base_model", None)

    def _record(self, job: Job, **kwargs: Any) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.record(job, profile=self.profile.name if self.profile else None, **kwargs)
        except OSError as exc:  # the ledger is a convenience: never fail a job over it
            _log.warning("could not write the job ledger %s: %s", self.ledger.path, exc)

    def validate(self, path: str | os.PathLike[str], *, model: str | None = None, method: str | None = None,
                 validation_file: str | os.PathLike[str] | None = None, is_validation_file: bool = False,
                 **kwargs: Any) -> DatasetReport:
        """Validate a dataset against this provider's rules (hosted providers: at least 10
        examples, no reserved tokens; a text-only backend: no image parts)."""
        rules = {**self.provider.dataset_rules(), **kwargs}
        report = validate_dataset(path, model=model or self.default_model, method=method,
                                  validation_file=validation_file, **rules)
        if is_validation_file and not report.valid and set(report.error_counts) == {"too_few_examples"}:
            report.valid = True  # a validation file has no minimum size
        return report

    def evaluate(self, data: str | os.PathLike[str] | list[dict[str, Any]], models: list[str],
                 **options: Any) -> Evaluation:
        """Answer ``data``'s examples with every model and compare them (see
        :func:`finetune_sdk.evaluation.evaluate`); a model without ``@PROFILE`` answers
        through this client."""
        from .evaluation import evaluate

        return evaluate(data, models, client=self, **options)

    def compare(self, examples: str | os.PathLike[str] | list[dict[str, Any]], *, tuned: Deployment | Job | str,
                base: Deployment | str | None = None, max_tokens: int = 64) -> Any:
        """Answer held-out chat examples with the base model and the fine-tune; score both.

        ``examples``: a JSONL path or a list of chat examples whose last assistant message is
        the expected answer. ``base`` defaults to the tuned job's base model. Returns a
        :class:`~finetune_sdk.evaluation.Comparison` (exact-match and JSON-value scores).
        """
        if base is None:
            if isinstance(tuned, Job):
                base = tuned.model
            elif isinstance(tuned, Deployment) and tuned.job_id:
                base = self.jobs.get(tuned.job_id).model
            else:
                raise ValueError("pass base=... (the base model or its deployment) to compare against")
        return _compare(self, examples, tuned, base, max_tokens=max_tokens)

    def _model_for(self, target: Deployment | Job | str) -> str:
        if isinstance(target, Deployment):
            return self.provider.chat_target(target)
        if isinstance(target, Job):
            if not target.fine_tuned_model:
                raise FineTuneError(f"Job {target.id} has no fine-tuned model yet ({target.status.value}).")
            return target.fine_tuned_model
        return target

    @overload
    def chat(self, target: Deployment | Job | str, messages: str | list[dict[str, Any]], *,
             stream: Literal[False] = False, **params: Any) -> ChatResponse: ...

    @overload
    def chat(self, target: Deployment | Job | str, messages: str | list[dict[str, Any]], *, stream: Literal[True],
             **params: Any) -> Iterator[ChatDelta]: ...

    def chat(self, target: Deployment | Job | str, messages: str | list[dict[str, Any]], *, stream: bool = False,
             **params: Any) -> ChatResponse | Iterator[ChatDelta]:
        """Chat with a deployment, a succeeded job's model, or a model id.

        ``messages`` may be a plain string (one user message). ``stream=True`` returns an
        iterator of :class:`ChatDelta`. Extra ``params``: temperature, top_p, max_tokens,
        stop, seed, ...
        """
        model = self._model_for(target)
        msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        if not msgs:
            raise ValueError("messages must not be empty")
        if stream:
            return self.provider.chat_stream(model, msgs, **params)
        return self.provider.chat(model, msgs, **params)
