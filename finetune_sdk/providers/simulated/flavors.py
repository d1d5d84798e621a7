"""The services the simulated backend imitates: what each one says.

A :class:`Flavor` is the vocabulary of one service — its ids, its raw job statuses for each
phase of a job's life, the text of its events, its error codes, how it names fine-tuned
models and result files. The lifecycle itself (phases, timing, metrics, checkpoints) is
the backend's, the same for every flavor. The emulator's dialects (``finetune_sdk.server``)
render these objects in each service's wire format.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ...data import catalog

__all__ = ["Flavor", "FLAVORS", "PHASES", "OPENAI", "AZURE"]

#: The phases of a simulated job, in order; a flavor gives each it can reach its raw status word.
PHASES = ("validating", "queued", "running", "pausing", "paused", "cancelling", "finalizing", "succeeded", "failed",
          "cancelled")

_ARM_STATES = {"accepted": "Accepted", "creating": "Creating", "succeeded": "Succeeded"}
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def hex_id(prefix: str, length: int = 32) -> Callable[[random.Random], str]:
    return lambda rng: prefix + "".join(rng.choice("0123456789abcdef") for _ in range(length))


def alnum_id(prefix: str, length: int = 24) -> Callable[[random.Random], str]:
    return lambda rng: prefix + "".join(rng.choice(_ALNUM) for _ in range(length))


@dataclass(frozen=True)
class Flavor:
    """One imitated service's vocabulary. ``messages`` maps a moment of a job's life to the
    event text the service writes then (an empty string: the service writes none), and
    ``event_types`` to the event type word it files that event under (services that type
    their events).

    Moments: created, validated, started, pausing, paused, resumed, cancel_requested,
    cancelled, checkpoint, trained (the last step is done), model_created, succeeded,
    failed, step (a metrics event)."""

    name: str
    fine_tunable: tuple[str, ...]
    raw: Mapping[str, str]
    file_id: Callable[[random.Random], str]
    job_id: Callable[[random.Random], str]
    event_id: Callable[[random.Random], str]
    checkpoint_id: Callable[[random.Random], str]
    codes: Mapping[str, str]
    messages: Mapping[str, str]
    ft_name: Callable[[str, str | None, str, str], str]  # (base model, suffix, job id, organization|account)
    is_fine_tune: Callable[[str], bool]
    results_file: str | None  # None: the service keeps no result file
    results_columns: tuple[tuple[str, str], ...]  # (CSV column, MetricPoint field)
    model_error: str = "Model {model} is not available for fine-tuning or does not exist."
    pausable: bool = True  # the service can pause and resume a job
    gradual_pause: bool = False  # pausing -> paused takes a while (Azure)
    pause_needs_a_step: bool = False  # only a job that trained at least one step can pause (Azure)
    gradual_cancel: bool = False  # cancelling -> cancelled takes a while (Together's cancel_requested)
    step_events: bool = True  # one metrics event per step (services without one publish metrics elsewhere)
    event_types: Mapping[str, str] = field(default_factory=dict)
    #: Words of a deployment's provisioning states: accepted, creating, succeeded (default: ARM's).
    deployment_states: Mapping[str, str] = field(default_factory=lambda: dict(_ARM_STATES))
    #: Base models whose fine-tunes answer chat without a deployment (None: every fine-tune does).
    serves_fine_tunes_of: tuple[str, ...] | None = None
    names_by_account: bool = False  # ft_name's owner is the account, not the organization (Fireworks)
    base_model_of: Callable[[str], str] = catalog.base_model_of

    def __post_init__(self) -> None:
        optional = {"pausing", "paused"} if not self.pausable else set()
        optional |= {"cancelling"} if not self.gradual_cancel else set()
        missing = [p for p in PHASES if p not in self.raw and p not in optional]
        if missing:
            raise ValueError(f"flavor {self.name}: no raw status for {', '.join(missing)}")
        if set(self.deployment_states) != set(_ARM_STATES):
            raise ValueError(f"flavor {self.name}: deployment_states needs exactly {', '.join(_ARM_STATES)}")

    def message(self, moment: str, **values: object) -> str:
        return self.messages.get(moment, "").format(**values)


OPENAI = Flavor(
    name="openai",
    fine_tunable=("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14",
                  "gpt-4.1-nano-2025-04-14", "gpt-3.5-turbo-0125", "gpt-3.5-turbo-1106", "o4-mini-2025-04-16",
                  "babbage-002", "davinci-002"),
    raw={"validating": "validating_files", "queued": "queued", "running": "running", "pausing": "paused",
         "paused": "paused", "finalizing": "running", "succeeded": "succeeded", "failed": "failed",
         "cancelled": "cancelled"},
    file_id=alnum_id("file-", 22), job_id=alnum_id("ftjob-"), event_id=alnum_id("ftevent-"),
    checkpoint_id=alnum_id("ftckpt_"),
    codes={"file_not_found": "file_not_found", "job_not_found": "fine_tune_not_found", "invalid_state": "invalid_state",
           "model_not_available": "model_not_available", "internal": "internal_error",
           "invalid_training_file": "invalid_training_file", "invalid_validation_file": "invalid_validation_file"},
    messages={"created": "Validating training file: {file}", "validated": "Files validated, moving job to queued state",
              "started": "Fine-tuning job started", "pausing": "Fine-tuning job paused",
              "resumed": "Fine-tuning job resumed", "cancelled": "Fine-tuning job cancelled",
              "checkpoint": "Checkpoint created at step {step}",
              "model_created": "New fine-tuned model created: {model}",
              "succeeded": "The job has successfully completed"},
    ft_name=lambda base, suffix, job_id, org: f"ft:{base}:{org}:{suffix or ''}:{job_id.removeprefix('ftjob-')[-8:]}",
    is_fine_tune=lambda model: model.startswith("ft:"),
    results_file="step_metrics.csv",
    results_columns=(("step", "step"), ("train_loss", "train_loss"), ("train_accuracy", "train_token_accuracy"),
                     ("valid_loss", "valid_loss"), ("valid_mean_token_accuracy", "valid_token_accuracy")),
)

AZURE = Flavor(
    name="azure",
    fine_tunable=("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14",
                  "gpt-4.1-nano-2025-04-14", "gpt-35-turbo-0125", "gpt-35-turbo-1106", "o4-mini-2025-04-16"),
    raw={"validating": "pending", "queued": "pending", "running": "running", "pausing": "pausing", "paused": "paused",
         "finalizing": "running", "succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"},
    file_id=hex_id("file-"), job_id=hex_id("ftjob-"), event_id=hex_id("ftevent-"), checkpoint_id=alnum_id("ftckpt_"),
    codes={"file_not_found": "notFound", "job_not_found": "notFound", "invalid_state": "unexpectedEntityState",
           "model_not_available": "invalidPayload", "internal": "internalFailure",
           "invalid_training_file": "jsonlValidationFailed", "invalid_validation_file": "jsonlValidationFailed"},
    messages={"created": "Job enqueued. Waiting for jobs ahead to complete.", "started": "Job started.",
              "pausing": "Job pausing.", "paused": "Job paused.", "resumed": "Job resumed.",
              "cancelled": "Job cancelled.", "succeeded": "Job succeeded."},
    ft_name=lambda base, suffix, job_id, org: f"{base}.ft-{job_id.removeprefix('ftjob-')[-32:]}",
    is_fine_tune=lambda model: ".ft-" in model,
    results_file="results.csv",
    results_columns=(("step", "step"), ("train_loss", "train_loss"),
                     ("train_mean_token_accuracy", "train_token_accuracy"), ("valid_loss", "valid_loss"),
                     ("validation_mean_token_accuracy", "valid_token_accuracy"), ("full_valid_loss", "full_valid_loss"),
                     ("full_valid_mean_token_accuracy", "full_valid_token_accuracy")),
    model_error="The specified base model does not support fine-tuning.",
    gradual_pause=True,
    pause_needs_a_step=True,
)

#: Every flavor by name; the emulator's dialects add theirs here.
FLAVORS: dict[str, Flavor] = {f.name: f for f in (OPENAI, AZURE)}

# The other services' vocabularies live next to this one and add themselves to FLAVORS.
from . import fireworks as _fireworks  # noqa: E402,F401
from . import together as _together  # noqa: E402,F401
