"""Request bodies of Together's API, as its OpenAPI description and official SDKs write them.

Fine-tuning and endpoint bodies refuse unknown fields, so that a client (ours included)
that misspells one hears about it; chat requests accept any of the many sampling options.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CreateFineTune", "EstimatePrice", "CreateEndpoint", "UpdateEndpoint", "ChatRequest"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FullTraining(_Strict):
    type: Literal["Full"]


class LoraTraining(_Strict):
    type: Literal["Lora"]
    lora_r: int = Field(ge=1)
    lora_alpha: int = Field(ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_trainable_modules: str = "all-linear"


class MethodSFT(_Strict):
    method: Literal["sft"]
    train_on_inputs: bool | Literal["auto"] = "auto"


class MethodDPO(_Strict):
    method: Literal["dpo"]
    dpo_beta: float | None = Field(None, gt=0)
    rpo_alpha: float | None = Field(None, ge=0)
    simpo_gamma: float | None = Field(None, ge=0)
    dpo_normalize_logratios_by_length: bool = False
    dpo_reference_free: bool = False


class LRScheduler(_Strict):
    lr_scheduler_type: Literal["linear", "cosine"]
    lr_scheduler_args: dict[str, float] | None = None


class CreateFineTune(_Strict):
    """``POST /fine-tunes``: the spec's fields, and the ones the SDKs send besides (``wandb_key``,
    early stopping, gradient accumulation)."""

    training_file: str = Field(min_length=1)
    model: str | None = None
    validation_file: str | None = ""  # the SDKs send "" for none
    n_epochs: int = Field(1, ge=1)
    n_checkpoints: int = Field(1, ge=1)
    n_evals: int = Field(0, ge=0)
    batch_size: int | Literal["max"] = "max"
    learning_rate: float = Field(1e-5, gt=0)
    lr_scheduler: LRScheduler | None = None
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    suffix: str | None = Field(None, max_length=40)  # 40: Together's SDK docstring
    random_seed: int | None = None
    packing: bool = True
    max_seq_length: int | None = Field(None, ge=1)
    gradient_accumulation_steps: int | None = Field(None, ge=0)
    train_on_inputs: bool | Literal["auto"] | None = None  # deprecated at the top level
    training_type: Annotated[FullTraining | LoraTraining, Field(discriminator="type")] | None = None
    training_method: Annotated[MethodSFT | MethodDPO, Field(discriminator="method")] = Field(
        default_factory=lambda: MethodSFT(method="sft"))
    multimodal_params: dict[str, Any] | None = None
    wandb_key: str | None = None
    wandb_api_key: str | None = None
    wandb_base_url: str | None = None
    wandb_project_name: str | None = None
    wandb_name: str | None = None
    wandb_entity: str | None = None
    early_stopping_enabled: bool | None = None
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_min_delta: float | None = Field(None, ge=0)
    early_stopping_warmup_evals: int | None = Field(None, ge=0)
    from_checkpoint: str | None = None
    from_hf_model: str | None = None
    hf_model_revision: str | None = None
    hf_api_token: str | None = None
    hf_output_repo_name: str | None = None


class EstimatePrice(_Strict):
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    model: str | None = None
    n_epochs: int = Field(1, ge=1)
    n_evals: int = Field(0, ge=0)
    training_type: dict[str, Any] | None = None
    training_method: dict[str, Any] | None = None
    from_checkpoint: str | None = None


class Autoscaling(_Strict):
    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=1)


class CreateEndpoint(_Strict):
    model: str = Field(min_length=1)
    hardware: str = Field(min_length=1)
    autoscaling: Autoscaling
    display_name: str | None = None
    state: Literal["STARTED", "STOPPED"] = "STARTED"
    inactive_timeout: int | None = Field(None, ge=0)
    disable_speculative_decoding: bool = False
    disable_prompt_cache: bool = False
    availability_zone: str | None = None


class UpdateEndpoint(_Strict):
    display_name: str | None = None
    state: Literal["STARTED", "STOPPED"] | None = None
    autoscaling: Autoscaling | None = None
    inactive_timeout: int | None = Field(None, ge=0)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = None
    n: int | None = Field(None, ge=1)
    stream: bool = False
