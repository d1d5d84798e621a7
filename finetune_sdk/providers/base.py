"""The provider protocol, capability flags, and the provider registry.

A provider is a translation table between this protocol and one backend. Everything
cross-cutting (validation, waiting, retries, progress, idempotency) lives in the core.
A call a provider cannot serve raises :class:`~finetune_sdk.errors.UnsupportedOperation`
naming the capability — never a generic error, never a silent no-op.

Providers register through the entry-point group ``finetune_sdk.providers``
(``name = "package.module:ProviderClass"``); the built-in ones are registered the same
way in this package's ``pyproject.toml``. Tests and applications can also call
:func:`register_provider` at run time.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from .._secrets import get_logger
from ..config import ProviderSettings
from ..data.rules import RULES, rules_for
from ..errors import ConfigurationError, UnsupportedOperation
from ..retry import RetryPolicy
from ..types import (ChatDelta, ChatResponse, Checkpoint, Deployment, DeploySpec, Event, File, Hyperparameters, Job,
                     JobSpec, JobStatus, MetricPoint, ModelInfo)

__all__ = ["Capability", "Provider", "ENTRY_POINT_GROUP", "register_provider", "unregister_provider",
           "available_providers", "get_provider_class", "resolve_tokenizer"]

_log = get_logger(__name__)
S = TypeVar("S", bound=ProviderSettings)

ENTRY_POINT_GROUP = "finetune_sdk.providers"


class Capability(str, enum.Enum):
    """What a provider can do. Checked before every call."""

    UPLOAD = "upload"
    FILES = "files"
    MODELS = "models"
    CREATE_JOB = "create_job"
    EVENTS = "events"
    CHECKPOINTS = "checkpoints"
    METRICS = "metrics"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    DEPLOY = "deploy"
    CHAT = "chat"
    DELETE_MODEL = "delete_model"
    METADATA_FILTER = "metadata_filter"
    EXPORT = "export"
    PUSH_TO_HUB = "push_to_hub"


class Provider(Generic[S]):
    """Base class of every backend, generic over its settings type.

    Override what the backend supports and declare it in ``capabilities``; everything
    else raises :class:`UnsupportedOperation`. Declare the backend's raw job statuses in
    ``statuses`` (raw value, lower-cased -> :class:`JobStatus`): :meth:`job_status` maps
    them, and a raw value missing from the table is surfaced as ``JobStatus.UNKNOWN``
    with a warning, never taken for another state.
    """

    name: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: True for hosted services (OpenAI, Azure): datasets then follow their hard rules.
    hosted: ClassVar[bool] = True
    #: False for backends whose models read text only: image parts are refused, never dropped.
    accepts_images: ClassVar[bool] = True
    #: False for backends that keep no metadata with a job (a migration's lineage then lives in the ledger only).
    stores_metadata: ClassVar[bool] = True
    #: False for backends whose jobs take no seed (a migration then says the source's is not carried).
    takes_seed: ClassVar[bool] = True
    #: The backend's raw job statuses (lower-cased) and what each means.
    statuses: ClassVar[Mapping[str, JobStatus]] = {}
    Settings: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self, settings: S | None = None, *, retry: RetryPolicy | None = None, **_: Any) -> None:
        self.settings: S = settings if settings is not None else self.Settings()  # type: ignore[assignment]
        #: The one retry policy for this provider's requests (providers without requests ignore it).
        self.retry = retry or RetryPolicy(attempts=int(getattr(self.settings, "max_retries", 5)))
        #: The clock provider-side waits (e.g. a deployment being provisioned) measure time with.
        self.poll_clock: Callable[[], float] = time.monotonic
        self._unknown_statuses: set[str] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"

    def job_status(self, raw: str | None) -> JobStatus:
        """The normalised status for one of this backend's raw statuses."""
        key = (raw or "").strip().lower()
        status = self.statuses.get(key)
        if status is None:
            if key not in self._unknown_statuses:
                self._unknown_statuses.add(key)
                _log.warning("The %s provider reported the job status %r, which this version of finetune-sdk does "
                             "not know; it is shown as 'unknown' (non-terminal) with the raw value.", self.name, raw)
            return JobStatus.UNKNOWN
        return status

    def is_fine_tuned(self, model: str) -> bool:
        """Whether ``model`` names a fine-tune on this backend (not a base model)."""
        return False

    def fine_tunable_models(self) -> list[str] | None:
        """The base models this backend can fine-tune, as far as it can tell (None: unknown)."""
        if Capability.MODELS not in self.capabilities:
            return None
        return [m.id for m in self.list_models() if not m.fine_tuned]

    def map_hyperparameters(self, hp: Hyperparameters, method: str) -> tuple[dict[str, Any], dict[str, str]]:
        """What this backend makes of ``hp``: (the values it will send, under its own names;
        the names it cannot take, each with why). Creating a job refuses anything in the
        second; a migration lists it. The default: the portable names as they are, no extras."""
        sent = {k: v for k, v in hp.portable().items() if k != "beta" or method == "dpo"}
        refused = dict.fromkeys(hp.extras(), f"{self.name} has no such setting")
        return sent, refused

    @classmethod
    def dataset_rules(cls) -> dict[str, Any]:
        """The keyword arguments of :func:`finetune_sdk.data.validate` that make it check a
        dataset by this backend's rules (``client.validate`` and ``finetune validate
        --provider`` use them): the service's rules of :data:`finetune_sdk.data.rules.RULES`
        where it has some, else generic ones from ``hosted`` and ``accepts_images``."""
        rules = RULES.get(cls.name) or rules_for(None, hosted=cls.hosted, images=cls.accepts_images)
        return {"rules": rules, "tokenizer": cls.tokenizer}

    @classmethod
    def tokenizer(cls, model: str) -> tuple[Any, str] | None:
        """``(tokenizer, label)`` to count tokens of ``model`` when this backend serves it
        with a chat template of its own (local models); None otherwise."""
        return None

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def _unsupported(self, capability: Capability, hint: str | None = None) -> UnsupportedOperation:
        return UnsupportedOperation(capability.value, self.name, hint)

    def require(self, capability: Capability) -> None:
        """Raise :class:`UnsupportedOperation` unless the provider declares ``capability``."""
        if capability not in self.capabilities:
            raise self._unsupported(capability)

    # -- files
    def upload(self, path: Path, *, purpose: str = "fine-tune") -> File:
        raise self._unsupported(Capability.UPLOAD)

    def get_file(self, file_id: str) -> File:
        raise self._unsupported(Capability.FILES)

    def list_files(self, *, purpose: str | None = None) -> list[File]:
        """All files, oldest first."""
        raise self._unsupported(Capability.FILES)

    def delete_file(self, file_id: str) -> None:
        raise self._unsupported(Capability.FILES)

    def file_content(self, file_id: str) -> bytes:
        raise self._unsupported(Capability.FILES)

    # -- jobs
    def create_job(self, spec: JobSpec) -> Job:
        raise self._unsupported(Capability.CREATE_JOB)

    def get_job(self, job_id: str) -> Job:
        raise self._unsupported(Capability.CREATE_JOB)

    def list_jobs(self, *, limit: int | None = None, metadata: dict[str, str] | None = None) -> list[Job]:
        raise self._unsupported(Capability.CREATE_JOB)

    def cancel_job(self, job_id: str) -> Job:
        raise self._unsupported(Capability.CANCEL)

    def pause_job(self, job_id: str) -> Job:
        raise self._unsupported(Capability.PAUSE)

    def resume_job(self, job_id: str) -> Job:
        raise self._unsupported(Capability.RESUME)

    def list_events(self, job_id: str, *, after: str | None = None) -> list[Event]:
        """Events newer than ``after`` (an event id), oldest first."""
        raise self._unsupported(Capability.EVENTS)

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        raise self._unsupported(Capability.CHECKPOINTS)

    def metrics(self, job_id: str) -> list[MetricPoint]:
        raise self._unsupported(Capability.METRICS)

    # -- models and deployments
    def list_models(self) -> list[ModelInfo]:
        """Base models and fine-tunes this provider can serve."""
        raise self._unsupported(Capability.MODELS)

    def deploy(self, model: str, spec: DeploySpec) -> Deployment:
        """Make ``model`` (a fine-tuned model or checkpoint id) callable."""
        raise self._unsupported(Capability.DEPLOY)

    def get_deployment(self, name: str) -> Deployment:
        raise self._unsupported(Capability.DEPLOY)

    def list_deployments(self) -> list[Deployment]:
        raise self._unsupported(Capability.DEPLOY)

    def delete_deployment(self, name: str) -> None:
        raise self._unsupported(Capability.DEPLOY)

    def delete_model(self, model: str) -> None:
        raise self._unsupported(Capability.DELETE_MODEL)

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        raise self._unsupported(Capability.CHAT)

    def is_job_id(self, value: str) -> bool:
        """Whether ``value``, given where a job or a model is accepted (what to deploy),
        names one of this backend's jobs rather than a model."""
        return value.startswith("ftjob-")

    def chat_target(self, deployment: Deployment) -> str:
        """What to pass as ``model`` to chat with a deployment (Azure: its name)."""
        return deployment.model

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        """Stream a reply. Providers without native streaming yield the whole reply at once."""
        reply = self.chat(model, messages, **params)
        yield ChatDelta(content=reply.content or "")
        yield ChatDelta(finish_reason=reply.finish_reason or "stop", usage=reply.usage)

    def export(self, job_id: str, *, format: str, out: Path, **options: Any) -> Any:
        """Write a fine-tune's weights for other engines (adapter, merged, gguf)."""
        raise self._unsupported(Capability.EXPORT, "Hosted providers keep the weights; only local jobs export.")

    def push_to_hub(self, job_id: str, repo_id: str, **options: Any) -> Any:
        """Publish a fine-tune to the Hugging Face Hub."""
        raise self._unsupported(Capability.PUSH_TO_HUB, "Only local fine-tunes have weights to publish.")

    def close(self) -> None:
        """Release connections and background resources."""


# --------------------------------------------------------------------------- registry

_lock = threading.Lock()
_runtime: dict[str, type[Provider[Any]] | str] = {}


def register_provider(name: str, provider: type[Provider[Any]] | str) -> None:
    """Register a provider class (or ``"module:Class"``) under ``name`` for this process."""
    if not name or not isinstance(name, str):
        raise ValueError("a provider name must be a non-empty string")
    with _lock:
        _runtime[name] = provider


def unregister_provider(name: str) -> None:
    with _lock:
        _runtime.pop(name, None)


def _entry_points() -> Iterator[Any]:
    yield from entry_points(group=ENTRY_POINT_GROUP)


def available_providers() -> list[str]:
    """Names of every registered provider (entry points and run-time registrations)."""
    names = {ep.name for ep in _entry_points()}
    with _lock:
        names.update(_runtime)
    return sorted(names)


def _load(name: str, target: Any) -> type[Provider[Any]]:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        try:
            import importlib

            obj: Any = importlib.import_module(module)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except Exception as exc:
            raise ConfigurationError(f"Provider {name!r} ({target}) could not be loaded: "
                                     f"{type(exc).__name__}: {exc}") from exc
        target = obj
    if not (isinstance(target, type) and issubclass(target, Provider)):
        raise ConfigurationError(f"Provider {name!r} does not name a subclass of finetune_sdk.providers.Provider.")
    return target


def resolve_tokenizer(model: str) -> tuple[Any, str] | None:
    """A tokenizer for ``model`` from whichever registered provider knows it (see
    :meth:`Provider.tokenizer`): how dataset code, which imports no provider, counts the
    tokens of a local model. Providers that fail to load are skipped."""
    for name in available_providers():
        try:
            cls = get_provider_class(name)
        except ConfigurationError as exc:
            _log.debug("provider %s skipped while looking for a tokenizer: %s", name, exc)
            continue
        if cls.tokenizer.__func__ is Provider.tokenizer.__func__:  # type: ignore[attr-defined]
            continue
        found = cls.tokenizer(model)
        if found is not None:
            return found
    return None


def get_provider_class(name: str) -> type[Provider[Any]]:
    """The provider class registered as ``name``.

    Raises:
        ConfigurationError: unknown name (the message lists the registered ones) or a
            plugin that fails to import.
    """
    with _lock:
        runtime = _runtime.get(name)
    if runtime is not None:
        return _load(name, runtime)
    for ep in _entry_points():
        if ep.name == name:
            try:
                target = ep.load()
            except Exception as exc:
                raise ConfigurationError(f"Provider {name!r} (entry point {ep.value}) could not be loaded: "
                                         f"{type(exc).__name__}: {exc}") from exc
            return _load(name, target)
    known = available_providers()
    raise ConfigurationError(f"Unknown provider {name!r}. Registered providers: {', '.join(known) or 'none'}. "
                             f"Third-party providers register under the entry-point group '{ENTRY_POINT_GROUP}'.")
