"""Carrying a fine-tune from one provider to another: ``client.jobs.migrate`` and ``finetune migrate``.

The plan reads the source job (its training and validation files, downloaded through the
source's files API; method, hyperparameters, suffix, seed), maps the base model (the same
one where the target has it, else the one you name), translates the hyperparameters to
the target's (listing what it cannot take — never dropping it silently), re-validates the
data by the target's rules, and estimates tokens and cost there. Nothing is uploaded until
the plan holds. The new job carries its lineage (``finetune_migrated_from`` in its metadata
and in the ledger) and an idempotency key derived from the source job, so running the same
migration again returns the job it already made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import finetune_home
from .data import catalog
from .errors import ConfigurationError, DatasetError, FineTuneError, NotFoundError
from .types import DatasetReport, Hyperparameters, Job

if TYPE_CHECKING:  # pragma: no cover
    from .client import FineTuneClient

__all__ = ["MigrationPlan", "Migration", "plan_migration", "migrate", "LINEAGE_KEY"]

#: The metadata key naming the job a migrated job came from (``provider:job_id``).
LINEAGE_KEY = "finetune_migrated_from"


@dataclass
class MigrationPlan:
    """What a migration will do. ``to_json()`` is the ``plan`` of ``finetune migrate --json``."""

    source: Job
    source_provider: str
    target_provider: str
    target_profile: str | None
    model: str
    model_source: str  # "same" (the target has the source's base model) or "given"
    method: str
    training_file: Path
    validation_file: Path | None
    hyperparameters: dict[str, Any]  # what is carried, portable names
    target_hyperparameters: dict[str, Any]  # the same, as the target will receive them
    refused: dict[str, str]  # what the target cannot take, and why
    report: DatasetReport
    idempotency_key: str
    seed: int | None = None  # the source's seed, when the target takes one
    notes: list[str] = field(default_factory=list)

    @property
    def lineage(self) -> str:
        return f"{self.source_provider}:{self.source.id}"

    def to_json(self) -> dict[str, Any]:
        est = self.report.estimate
        return {
            "from": {"provider": self.source_provider, "job": self.source.id, "model": self.source.model},
            "to": {"provider": self.target_provider, "profile": self.target_profile, "model": self.model,
                   "model_source": self.model_source},
            "method": self.method, "seed": self.seed,
            "files": {"training": str(self.training_file),
                      "validation": str(self.validation_file) if self.validation_file else None,
                      "examples": self.report.examples,
                      "validation_examples": self.report.validation.examples if self.report.validation else None},
            "hyperparameters": {"carried": self.hyperparameters, "as_sent": self.target_hyperparameters,
                                "refused": self.refused},
            "estimate": None if est is None else {"tokens_per_epoch": est.tokens_per_epoch, "n_epochs": est.n_epochs,
                                                  "billed_tokens": est.billed_tokens, "cost": est.cost,
                                                  "currency": est.currency, "notes": est.notes},
            "tokens": {"encoding": self.report.tokens.encoding, "exact": self.report.tokens.exact}
            if self.report.tokens else None,
            "lineage": {LINEAGE_KEY: self.lineage}, "idempotency_key": self.idempotency_key, "notes": self.notes,
        }


@dataclass
class Migration:
    """A migration's plan and the job it created (None for a dry run)."""

    plan: MigrationPlan
    job: Job | None


def _download(client: FineTuneClient, file_id: str | None, role: str, override: str | os.PathLike[str] | None,
              into: Path) -> Path | None:
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"No such {role} file: {path}")
        return path
    if file_id is None:
        return None
    try:
        data = client.files.content(file_id)
    except NotFoundError:
        raise FineTuneError(f"The source job's {role} file {file_id} is gone from {client.provider.name} (files can "
                            f"expire or be deleted). Pass the data yourself: --{role}-file PATH "
                            f"({role}_file=PATH in Python).") from None
    into.mkdir(parents=True, exist_ok=True)
    path = into / f"{role}.jsonl"
    path.write_bytes(data)
    return path


def _same_model(base: str, offered: list[str]) -> str | None:
    """The target's name for ``base``: itself, or Azure's spelling of GPT-3.5 (and back)."""
    variants = {base, base.replace("gpt-3.5-", "gpt-35-"), base.replace("gpt-35-", "gpt-3.5-")}
    return next((m for m in offered if m in variants), None)


def plan_migration(source: FineTuneClient, job_id: str, target: FineTuneClient, *, model: str | None = None,
                   training_file: str | os.PathLike[str] | None = None,
                   validation_file: str | os.PathLike[str] | None = None,
                   hyperparameters: Mapping[str, Any] | None = None, again: bool = False,
                   workdir: str | os.PathLike[str] | None = None) -> MigrationPlan:
    """Everything a migration will do, checked, with nothing created on the target.
    ``hyperparameters`` set (or, with ``None`` values, leave out) hyperparameters of the new
    job over the source's — e.g. an absolute ``learning_rate`` where the target takes no
    multiplier.

    Raises:
        ConfigurationError: the target does not have the base model and no ``model`` was
            given (the message lists what it can fine-tune).
        FineTuneError: a source file is gone (the message says how to pass it).
        DatasetError: the data breaks the target's rules (nothing is uploaded).
    """
    job = source.jobs.get(job_id)
    base = catalog.base_model_of(job.model)
    offered = target.provider.fine_tunable_models()
    notes: list[str] = []
    if model is not None:
        chosen, how = model, "given"
    else:
        same = _same_model(base, offered) if offered is not None else base
        if same is None:
            listing = ", ".join(offered or []) or "none listed"
            raise ConfigurationError(f"{target.provider.name} does not fine-tune {base} (the base model of {job.id}); "
                                     f"choose one with --model (model= in Python). It can fine-tune: {listing}.")
        chosen, how = same, "same"
        if offered is None:
            notes.append(f"{target.provider.name} does not list its fine-tunable models; {base} is assumed to be "
                         f"one of them (the target refuses the job otherwise).")
    method = job.method or "supervised"
    carried = {k: v for k, v in job.hyperparameters.items() if v not in (None, "auto")}
    for name, value in (hyperparameters or {}).items():
        if value is None:
            carried.pop(name, None)
        else:
            carried[name] = value
    hp = Hyperparameters(**carried)
    sent, refused = target.provider.map_hyperparameters(hp, method)
    seed = job.seed
    if seed is not None and not target.provider.takes_seed:
        refused["seed"] = (f"{target.provider.name} jobs take no seed ({seed}): the data will be shuffled "
                           f"differently from the source's run")
        seed = None
    into = Path(workdir) if workdir is not None else finetune_home() / "migrations" / f"{source.provider.name}-{job.id}"
    train = _download(source, job.training_file, "training", training_file, into)
    if train is None:
        raise FineTuneError(f"{job.id} names no training file; pass one with --training-file PATH.")
    valid = _download(source, job.validation_file, "validation", validation_file, into)
    n_epochs = carried.get("n_epochs")
    report = target.validate(train, model=chosen, method=None if method == "supervised" else method,
                             validation_file=valid, n_epochs=n_epochs if isinstance(n_epochs, int) else None)
    if not report.ok:
        problems = report.errors + (report.validation.errors if report.validation else [])
        first = "; ".join(str(i) for i in problems[:3])
        raise DatasetError(f"The data of {job.id} breaks {target.provider.name}'s rules, so nothing was uploaded: "
                           f"{first}. Fix the files and pass them with --training-file / --validation-file.",
                           report=report)
    if not target.provider.stores_metadata:
        notes.append(f"{target.provider.name} keeps no metadata with a job: the lineage ({LINEAGE_KEY}) is kept in "
                     f"the local ledger only, and the source job's metadata is not carried.")
    if target.provider.name == "azure" and report.estimate is not None and report.estimate.cost is not None:
        notes.append("The cost is at OpenAI's per-token training price; Azure OpenAI prices training by its own "
                     "table (and some tiers by the hour): check it before relying on the number.")
    key = f"migrate:{source.provider.name}:{job.id}"
    if again:
        key += ":" + uuid.uuid4().hex[:8]
    return MigrationPlan(source=job, source_provider=source.provider.name, target_provider=target.provider.name,
                         target_profile=target.profile.name if target.profile else None, model=chosen,
                         model_source=how, method=method, training_file=train, validation_file=valid,
                         hyperparameters={k: v for k, v in carried.items() if k not in refused},
                         target_hyperparameters=sent, refused=refused, report=report, idempotency_key=key[:64],
                         seed=seed, notes=notes)


def migrate(source: FineTuneClient, job_id: str, target: FineTuneClient, *, dry_run: bool = False,
            strict: bool = False, wait: bool = False, **options: Any) -> Migration:
    """Plan, then (unless ``dry_run``) create the job on the target; ``strict``: refuse to
    migrate when any hyperparameter cannot be carried."""
    plan = plan_migration(source, job_id, target, **options)
    if strict and plan.refused:
        listing = "; ".join(f"{k}: {why}" for k, why in plan.refused.items())
        raise ConfigurationError(f"{plan.target_provider} cannot take every hyperparameter of {job_id} ({listing}); "
                                 f"migrate without --strict to carry the rest.")
    if dry_run:
        return Migration(plan, None)
    metadata: dict[str, str] = {}
    if target.provider.stores_metadata:  # else the lineage lives in the ledger (and the plan says so)
        metadata = {k: v for k, v in plan.source.metadata.items() if not k.startswith("finetune_")}
        metadata[LINEAGE_KEY] = plan.lineage
    job = target.jobs.create(training_file=plan.training_file, validation_file=plan.validation_file, model=plan.model,
                             method=plan.method, hyperparameters=plan.hyperparameters, suffix=plan.source.suffix,
                             seed=plan.seed, metadata=metadata, idempotency_key=plan.idempotency_key)
    target._record(job, migrated_from=plan.lineage)
    if wait:
        job = target.jobs.wait(job.id)
    return Migration(plan, job)
