"""What the Together dialect keeps besides the simulated backend: Together's own job fields
(learning rate, LoRA, n_evals, ...), files announced but not yet uploaded, endpoints, and
the model limits it answers with."""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...providers.simulated import SimulatedProvider
from ..app import ServerConfig

__all__ = ["TogetherState", "Staged", "Endpoint", "limits_for", "HARDWARE"]

#: Hardware the emulator offers endpoints on (ids in Together's style; illustrative).
HARDWARE = ("1x_nvidia_h100_80gb_sxm", "2x_nvidia_h100_80gb_sxm", "8x_nvidia_h200_140gb_sxm")
# Limits are illustrative except the LoRA rank cap of 64 (16 for the Kimi-K2, GLM-5 and
# DeepSeek R1/V3 families), from Together's fine-tuning guide.
_SMALL_RANK = ("moonshotai/kimi-k2", "zai-org/glm-5", "deepseek-ai/deepseek-r1", "deepseek-ai/deepseek-v3")


def limits_for(model: str) -> dict[str, Any]:
    """``GET /fine-tunes/models/limits`` of a fine-tunable model."""
    rank = 16 if model.lower().startswith(_SMALL_RANK) else 64
    return {"model_name": model, "max_num_epochs": 20, "max_num_evals": 100, "max_num_checkpoints": 20,
            "max_learning_rate": 1.0, "min_learning_rate": 1e-8,
            "full_training": {"max_batch_size": 96, "max_batch_size_dpo": 48, "min_batch_size": 1},
            "lora_training": {"max_batch_size": 128, "max_batch_size_dpo": 64, "min_batch_size": 1,
                              "max_rank": rank, "default_rank": min(rank, 16),
                              "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"]},
            "supports_vision": False, "supports_tools": True, "supports_reasoning": False,
            "supports_full_training": True, "merge_output_lora": True, "min_max_seq_length": 512,
            "max_seq_length_sft": 131072, "max_seq_length_dpo": 65536, "default_gradient_accumulation_steps": 1}


@dataclass
class Staged:
    """A file announced by ``POST /files`` whose bytes are still to be PUT."""

    id: str
    filename: str
    purpose: str
    file_type: str
    checksum: str | None
    created: float
    path: Path | None = None


@dataclass
class Endpoint:
    id: str
    name: str
    display_name: str
    model: str
    hardware: str
    min_replicas: int
    max_replicas: int
    created: float
    stopped: bool = False


@dataclass
class _Uploads:
    """Bytes of announced files; ``close`` removes them (the emulator calls it when it stops)."""

    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="finetune-together-")))
    staged: dict[str, Staged] = field(default_factory=dict)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class TogetherState:
    """The dialect's bookkeeping over one simulated backend."""

    def __init__(self, provider: SimulatedProvider, config: ServerConfig) -> None:
        self.provider = provider
        self.config = config
        self.namespace = provider.settings.organization
        self.uploads = _Uploads()
        self.jobs: dict[str, dict[str, Any]] = {}  # job id -> Together's fields of its create request
        self.endpoints: dict[str, Endpoint] = {}
        self.line_counts: dict[str, int] = {}
        self.lock = threading.RLock()
        self._key = secrets.token_bytes(32)
        self._rng = random.Random(f"together-endpoints-{provider.settings.seed}")

    def now(self) -> float:
        return self.provider.clock.now()

    # -- presigned upload URLs
    def signature(self, file_id: str) -> str:
        return hmac.new(self._key, file_id.encode(), hashlib.sha256).hexdigest()

    def signed(self, file_id: str, signature: str | None) -> bool:
        return signature is not None and hmac.compare_digest(self.signature(file_id), signature)

    # -- ids and names
    def endpoint_ids(self, model: str) -> tuple[str, str]:
        """(id, name) of a new endpoint: ``endpoint-<uuid>`` and ``{owner}/{model}-{8 hex}``."""
        with self.lock:
            value = uuid.UUID(int=self._rng.getrandbits(128), version=4)
        return f"endpoint-{value}", f"{self.namespace}/{model}-{value.hex[:8]}"

    def output_name(self, job_id: str, model: str, suffix: str | None) -> str:
        flavor = self.provider.flavor
        return flavor.ft_name(flavor.base_model_of(model), suffix, job_id, self.namespace)

    def params(self, job_id: str) -> dict[str, Any]:
        """Together's fields of a job's request, with its defaults for a job made otherwise."""
        return self.jobs.get(job_id) or {"n_epochs": None, "n_checkpoints": 1, "n_evals": 0, "learning_rate": 1e-5,
                                         "warmup_ratio": 0.0, "max_grad_norm": 1.0, "weight_decay": 0.0,
                                         "training_type": {"type": "Lora", "lora_r": 16, "lora_alpha": 32,
                                                           "lora_dropout": 0.0,
                                                           "lora_trainable_modules": "all-linear"},
                                         "lr_scheduler": {"lr_scheduler_type": "linear",
                                                          "lr_scheduler_args": {"min_lr_ratio": 0.0}},
                                         "packing": True}
