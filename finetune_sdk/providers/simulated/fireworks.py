"""Fireworks AI's vocabulary for the simulated backend.

Facts from the official ``fireworks-ai`` SDK's types and the public docs (see the
Fireworks section of docs/providers.md for what is verified):

- Resources are named ``accounts/{account}/{collection}/{id}``. The flavor gives the ids;
  the emulator's dialect (``finetune_sdk.server.fireworks``) builds the full names. A job
  id the caller does not choose is "a random UUID" (SDK docstring of
  ``supervised_fine_tuning_job_id``).
- Job states are ``JOB_STATE_*``. Fireworks has no pause call: ``JOB_STATE_PAUSED`` comes
  from "account suspension or manual intervention" and ``:resume`` ends it. No
  ``JOB_STATE_CREATING`` phase is imitated; jobs start validating.
- Error codes are gRPC status names (``NOT_FOUND``, ``INVALID_ARGUMENT``, ...), as in the
  nested ``status`` of resources.
- A fine-tuned model is ``accounts/{account}/models/{outputModel or job id}``; the dialect
  passes ``outputModel`` as the job's suffix.
- Fireworks publishes no job events. The messages below are kept by the backend only to date
  each change of state (the dialect's ``updateTime``); no wire route shows them.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .flavors import FLAVORS, Flavor, alnum_id, hex_id

__all__ = ["FIREWORKS", "FINE_TUNABLE", "PUBLIC_ACCOUNT"]

#: The account that owns Fireworks' own base models.
PUBLIC_ACCOUNT = "fireworks"

#: Tunable base models (managed fine-tuning docs, via the reference's allow-list, 2026).
FINE_TUNABLE = tuple(f"accounts/{PUBLIC_ACCOUNT}/models/{m}" for m in (
    "qwen3-8b", "qwen3-4b", "qwen3-32b", "qwen3-30b-a3b", "llama-v3p3-70b-instruct", "qwen3p5-9b",
    "gemma-4-31b-it"))


def uuid_id() -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        h = "".join(rng.choice("0123456789abcdef") for _ in range(32))
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"

    return make


def _is_fine_tune(model: str) -> bool:
    return model.startswith("accounts/") and not model.startswith(f"accounts/{PUBLIC_ACCOUNT}/")


FIREWORKS = Flavor(
    name="fireworks",
    fine_tunable=FINE_TUNABLE,
    raw={"validating": "JOB_STATE_VALIDATING", "queued": "JOB_STATE_PENDING", "running": "JOB_STATE_RUNNING",
         "pausing": "JOB_STATE_PAUSED", "paused": "JOB_STATE_PAUSED", "finalizing": "JOB_STATE_WRITING_RESULTS",
         "succeeded": "JOB_STATE_COMPLETED", "failed": "JOB_STATE_FAILED", "cancelled": "JOB_STATE_CANCELLED"},
    file_id=hex_id("file-", 24), job_id=uuid_id(), event_id=hex_id("ev-", 24), checkpoint_id=alnum_id("ckpt-", 16),
    codes={"file_not_found": "NOT_FOUND", "job_not_found": "NOT_FOUND", "invalid_state": "FAILED_PRECONDITION",
           "model_not_available": "INVALID_ARGUMENT", "internal": "INTERNAL",
           "invalid_training_file": "INVALID_ARGUMENT", "invalid_validation_file": "INVALID_ARGUMENT",
           "already_exists": "ALREADY_EXISTS"},
    messages={"created": "created", "validated": "validated", "started": "running", "pausing": "paused",
              "paused": "paused", "resumed": "resumed", "cancelled": "cancelled", "succeeded": "completed"},
    ft_name=lambda base, suffix, job_id, account: f"accounts/{account}/models/{suffix or job_id}",
    is_fine_tune=_is_fine_tune,
    results_file="results.csv",
    results_columns=(("step", "step"), ("epoch", "epoch"), ("train_loss", "train_loss"),
                     ("train_mean_token_accuracy", "train_token_accuracy"), ("eval_loss", "full_valid_loss")),
    model_error="Model {model} is not tunable, or does not exist.",
    base_model_of=lambda model: model,  # a fine-tune's name does not say its base model
    names_by_account=True,
)

FLAVORS[FIREWORKS.name] = FIREWORKS
