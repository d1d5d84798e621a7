"""The local trainer's settings, from portable hyperparameters plus local extras.

Portable (the same names hosted providers take): ``n_epochs``, ``batch_size`` (examples
per optimizer step), ``learning_rate_multiplier`` (over a base rate of 2e-4 for LoRA and
2e-5 for full fine-tuning), ``beta`` (DPO). Everything else is a local extra, validated
here so a typo fails before a process starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ....errors import BadRequestError
from ....types import Hyperparameters

__all__ = ["TrainConfig", "train_config", "BASE_LR_LORA", "BASE_LR_FULL"]

BASE_LR_LORA = 2e-4
BASE_LR_FULL = 2e-5


class TrainConfig(BaseModel):
    """Every knob of the local trainer, with its default."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["supervised", "dpo"] = "supervised"
    n_epochs: int = Field(3, ge=1, le=1000)
    batch_size: int = Field(8, ge=1, le=4096, description="Examples per optimizer step.")
    learning_rate_multiplier: float = Field(1.0, gt=0, le=1e9)
    beta: float = Field(0.1, gt=0, le=10, description="DPO strength; higher is more conservative.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    # -- adapter
    lora: bool = Field(True, description="LoRA adapters (True) or full fine-tuning (False).")
    lora_rank: int = Field(16, ge=1, le=1024)
    lora_alpha: float = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input. 0 (PEFT's default): "
                                "on CPU a non-zero dropout cost ~15% speed and more activation memory.")
    target_modules: str | list[str] = "all-linear"
    qlora: bool = Field(False, description="4-bit base weights through bitsandbytes (CUDA only).")
    # -- sequence handling
    max_length: int = Field(2048, ge=8, description="Longer examples are truncated (counted in an event).")
    micro_batch_tokens: int | None = Field(None, ge=8, description="Tokens per packed micro-batch (default: "
                                                                   "1024 on CPU, 16384 on GPU; at least max_length).")
    packing: bool = True
    # -- optimisation
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    gradient_checkpointing: bool = False
    loss_chunk: int | None = Field(None, ge=16, description="Positions per chunk of the vocabulary projection "
                                   "(default 256 on CPU, 1024 on GPU).")
    seed: int = 0
    # -- runtime
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: str = "auto"
    trust_remote_code: bool = False
    # -- observation
    eval_every: int | None = Field(None, ge=1, description="Steps between validations (default: 10 per run).")
    eval_max_examples: int = Field(200, ge=1)
    checkpoint_every: int | None = Field(None, ge=1, description="Steps between checkpoints (default: each epoch).")
    keep_checkpoints: int = Field(3, ge=1)
    metrics_every: int = Field(1, ge=1)

    @property
    def learning_rate(self) -> float:
        return (BASE_LR_LORA if self.lora else BASE_LR_FULL) * self.learning_rate_multiplier


def train_config(method: str, hp: Hyperparameters, seed: int | None = None) -> TrainConfig:
    """Map portable hyperparameters (+ local extras) to a TrainConfig; BadRequestError if invalid."""
    if method not in ("supervised", "dpo"):
        raise BadRequestError(f"The local trainer supports the supervised and dpo methods, not {method!r}.",
                              provider="local", status_code=400, param="method")
    values: dict[str, Any] = {"method": method}
    for key, value in {**hp.portable(), **hp.extras()}.items():
        if value is not None and value != "auto":
            values[key] = value
    if seed is not None:
        values["seed"] = seed
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "hyperparameters"
        known = ", ".join(sorted(TrainConfig.model_fields))
        hint = f" Known settings: {known}." if first["type"] == "extra_forbidden" else ""
        raise BadRequestError(f"invalid {name}: {first.get('input')!r}, {first['msg'].lower()}.{hint}",
                              provider="local", status_code=400, param=f"hyperparameters.{name}") from None
