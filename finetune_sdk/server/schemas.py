"""Request bodies, with the bounds of the OpenAI OpenAPI description.

They validate incoming JSON (a violation becomes a 400 in the service's envelope, in the
style of the real API: ``invalid n_epochs: 100, input should be less than or equal to
50``) and they describe the server in its own OpenAPI document (``/openapi.json``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Auto = Literal["auto"]
StrictInt = Annotated[int, Field(strict=True)]
Number = Annotated[float, Field(strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SupervisedHyperparameters(_Strict):
    batch_size: Auto | Annotated[int, Field(strict=True, ge=1, le=256)] | None = None
    learning_rate_multiplier: Auto | Annotated[float, Field(strict=True, gt=0)] | None = None
    n_epochs: Auto | Annotated[int, Field(strict=True, ge=1, le=50)] | None = None


class DpoHyperparameters(SupervisedHyperparameters):
    beta: Auto | Annotated[float, Field(strict=True, gt=0, le=2)] | None = None


class ReinforcementHyperparameters(SupervisedHyperparameters):
    compute_multiplier: Auto | Annotated[float, Field(strict=True, gt=0.00001, le=10)] | None = None
    eval_interval: Auto | Annotated[int, Field(strict=True, ge=1)] | None = None
    eval_samples: Auto | Annotated[int, Field(strict=True, ge=1)] | None = None
    reasoning_effort: Literal["default", "low", "medium", "high"] | None = None


class SupervisedMethod(_Strict):
    hyperparameters: SupervisedHyperparameters | None = None


class DpoMethod(_Strict):
    hyperparameters: DpoHyperparameters | None = None


class ReinforcementMethod(_Strict):
    grader: dict[str, Any]
    hyperparameters: ReinforcementHyperparameters | None = None
    response_format: dict[str, Any] | None = None


class Method(_Strict):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: ReinforcementMethod | None = None

    @model_validator(mode="after")
    def _one_block(self) -> Method:
        for other in ("supervised", "dpo", "reinforcement"):
            if other != self.type and getattr(self, other) is not None:
                raise ValueError(f"method.{other} given but method.type is {self.type!r}")
        if self.type == "reinforcement" and self.reinforcement is None:
            raise ValueError("method.reinforcement with a grader is required for reinforcement fine-tuning")
        return self

    def hyperparameters(self) -> dict[str, Any]:
        block = getattr(self, self.type)
        hp = block.hyperparameters if block is not None else None
        return hp.model_dump(exclude_none=True) if hp is not None else {}


class WandbSettings(_Strict):
    project: Annotated[str, StringConstraints(min_length=1)]
    name: str | None = None
    entity: str | None = None
    tags: list[str] | None = None


class Integration(_Strict):
    type: Literal["wandb"]
    wandb: WandbSettings


MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class CreateFineTuningJobRequest(_Strict):
    model: Annotated[str, StringConstraints(min_length=1)]
    training_file: Annotated[str, StringConstraints(min_length=1)]
    validation_file: str | None = None
    hyperparameters: SupervisedHyperparameters | None = Field(default=None, description="Deprecated: use method.")
    method: Method | None = None
    suffix: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    seed: Annotated[int, Field(strict=True, ge=0, le=2147483647)] | None = None
    integrations: list[Integration] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None
    # Azure: the training tier, sent in the body (see hosted-apis.md §3.3).
    trainingType: str | StrictInt | None = None


class ExpiresAfter(_Strict):
    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(strict=True, ge=3600, le=2592000)]


FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]


class CreateUploadRequest(_Strict):
    bytes: Annotated[int, Field(strict=True, ge=0, le=8 * 1024 ** 3)]
    filename: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    mime_type: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    purpose: FilePurpose
    expires_after: ExpiresAfter | None = None


class CompleteUploadRequest(_Strict):
    part_ids: Annotated[list[Annotated[str, StringConstraints(min_length=1)]], Field(min_length=1)]
    md5: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatCompletionRequest(_Strict):
    model: Annotated[str, StringConstraints(min_length=1)] | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(strict=True, ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(strict=True, ge=1)] | None = None
    n: Annotated[int, Field(strict=True, ge=1, le=128)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: StrictInt | None = None
    user: str | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(strict=True, ge=0, le=20)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


class ArmSku(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: Annotated[str, StringConstraints(min_length=1)]
    capacity: Annotated[int, Field(strict=True, ge=1, le=100000)] | None = None


class ArmModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: str | None = None
    name: Annotated[str, StringConstraints(min_length=1)]
    version: str | None = None


class ArmProperties(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: ArmModel


class ArmDeploymentRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    sku: ArmSku | None = None
    properties: ArmProperties
