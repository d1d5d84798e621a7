"""Together AI's vocabulary for the simulated backend.

Facts from Together's public OpenAPI description and its official SDKs (see
docs/providers.md, "Together AI"): ``ft-``/``file-`` ids with a UUID, the job statuses
``pending → queued → running → uploading → completed`` (``error``, ``cancel_requested →
cancelled``), typed events, no pause, no result file, metrics at their own route (no
metrics events), fine-tunes named ``{namespace}/{BaseBasename}[-{suffix}]-{8 hex}``,
dedicated endpoints ``PENDING → STARTING → STARTED``, and serverless LoRA inference for a
few base models.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable

from .flavors import FLAVORS, Flavor, hex_id

__all__ = ["TOGETHER", "SERVERLESS_LORA_BASES"]

#: Bases whose LoRA fine-tunes Together served without an endpoint (docs: lora-inference,
#: adapter-upload). Unverified since 2026-03, when Together's own guides dropped it.
SERVERLESS_LORA_BASES = ("meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
                         "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference", "Qwen/Qwen2.5-72B-Instruct")

_OUTPUT_TAIL = re.compile(r"-[0-9a-f]{8}$")


def _uuid_id(prefix: str) -> Callable[[random.Random], str]:
    # A UUID drawn from the seeded generator, so that the same seed gives the same ids.
    return lambda rng: prefix + str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _output_name(base: str, suffix: str | None, job_id: str, namespace: str) -> str:
    tail = job_id.removeprefix("ft-").replace("-", "")[-8:]
    return f"{namespace}/" + "-".join([base.rsplit("/", 1)[-1], *([suffix] if suffix else []), tail])


TOGETHER = Flavor(
    name="together",
    fine_tunable=("meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference",
                  "meta-llama/Llama-3.3-70B-Instruct-Reference", "Qwen/Qwen2.5-7B-Instruct",
                  "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen3-8B", "Qwen/Qwen3-32B", "google/gemma-3-4b-it",
                  "openai/gpt-oss-20b", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"),
    raw={"validating": "pending", "queued": "queued", "running": "running", "cancelling": "cancel_requested",
         "finalizing": "uploading", "succeeded": "completed", "failed": "error", "cancelled": "cancelled"},
    file_id=_uuid_id("file-"), job_id=_uuid_id("ft-"), event_id=hex_id("", 32), checkpoint_id=hex_id("ckpt-", 16),
    # Together documents no error codes; these are this emulator's words.
    codes={"file_not_found": "not_found", "job_not_found": "not_found", "invalid_state": "invalid_request",
           "model_not_available": "invalid_request", "internal": "internal_error",
           "invalid_training_file": "invalid_format", "invalid_validation_file": "invalid_format"},
    # Event texts are illustrative; the types are the lower-case words of Together's FinetuneEventType.
    messages={"created": "Fine-tuning job created", "started": "Training started",
              "checkpoint": "Checkpoint saved at step {step}", "trained": "Training completed",
              "model_created": "Model uploaded: {model}", "succeeded": "Job finished successfully",
              "cancel_requested": "Cancellation requested", "cancelled": "Job cancelled"},
    event_types={"created": "job_pending", "started": "training_start", "checkpoint": "checkpoint_save",
                 "trained": "training_complete", "model_created": "model_upload_complete",
                 "succeeded": "job_complete", "cancel_requested": "cancel_requested", "cancelled": "job_stopped",
                 "failed": "job_error"},
    ft_name=_output_name,
    is_fine_tune=lambda model: bool(_OUTPUT_TAIL.search(model)),
    results_file=None,
    results_columns=(),
    model_error="Model {model} is not supported for fine-tuning.",
    pausable=False,
    gradual_cancel=True,
    step_events=False,
    deployment_states={"accepted": "PENDING", "creating": "STARTING", "succeeded": "STARTED"},
    serves_fine_tunes_of=SERVERLESS_LORA_BASES,
)

FLAVORS[TOGETHER.name] = TOGETHER
