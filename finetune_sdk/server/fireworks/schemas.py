"""Request bodies of the Fireworks control plane, as the official SDK's ``*_params`` types
describe them (camelCase). Unknown fields are refused, as a gRPC-gateway does by default
(``unknown field``); fields the emulator accepts without acting on them are typed ``Any``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..schemas import ChatCompletionRequest

__all__ = ["CreateDataset", "UploadEndpointRequest", "CreateSftJob", "CreateDpoJob", "CreateDeployment",
           "LoadLora", "ChatRequest", "Empty"]

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Rate = Annotated[float, Field(gt=0, le=1)]
Rank = Annotated[int, Field(strict=True, ge=1, le=64)]  # PeftDetails.r: 4-64 in the SDK; Kiln's help says <= 32
Epochs = Annotated[int, Field(strict=True, ge=1, le=50)]  # the real upper bound is unverified
DisplayName = Annotated[str, Field(max_length=63)]  # "fewer than 64 characters" (Model, Deployment); jobs assumed


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Empty(_Wire):
    """``{}``: the body of ``:cancel``, ``:resume``, ``:validateUpload``."""


class DatasetBody(_Wire):
    displayName: DisplayName | None = None
    exampleCount: Annotated[str, Field(pattern=r"^\d+$")] | None = None  # int64: a JSON string
    format: Literal["FORMAT_UNSPECIFIED", "CHAT", "COMPLETION", "RL"] | None = None
    userUploaded: dict[str, Any] | None = None
    externalUrl: str | None = None
    sourceJobName: str | None = None
    evalProtocol: Any = None
    evaluationResult: Any = None
    splitted: Any = None
    transformed: Any = None


class CreateDataset(_Wire):
    datasetId: str
    dataset: DatasetBody
    sourceDatasetId: str | None = None


class UploadEndpointRequest(_Wire):
    filenameToSize: dict[str, Annotated[str, Field(pattern=r"^\d+$")]]
    readMask: str | None = None


class _Training(_Wire):
    """What supervised jobs take at the top level and DPO jobs in ``trainingConfig``."""

    baseModel: str | None = None
    warmStartFrom: str | None = None
    outputModel: str | None = None
    epochs: Epochs | None = None
    learningRate: Rate | None = None
    loraRank: Rank | None = None
    maxContextLength: PositiveInt | None = None
    batchSize: PositiveInt | None = None  # tokens per packed batch
    batchSizeSamples: PositiveInt | None = None  # examples per gradient batch
    gradientAccumulationSteps: PositiveInt | None = None
    learningRateWarmupSteps: Annotated[int, Field(strict=True, ge=0)] | None = None
    optimizerWeightDecay: Annotated[float, Field(ge=0)] | None = None
    jinjaTemplate: str | None = None
    region: str | None = None
    samplerCheckpointSaveIntervalSteps: Annotated[int, Field(strict=True, ge=0)] | None = None


class _Job(_Wire):
    dataset: str
    displayName: DisplayName | None = None
    wandbConfig: dict[str, Any] | None = None
    awsS3Config: dict[str, Any] | None = None
    azureBlobStorageConfig: dict[str, Any] | None = None
    rendererHuggingFaceRepoId: str | None = None
    reservationTarget: str | None = None
    useReservation: bool | None = None


class CreateSftJob(_Job, _Training):
    evaluationDataset: str | None = None
    evalAutoCarveout: bool | None = None
    earlyStop: bool | None = None
    isTurbo: bool | None = None
    nodes: Any = None
    mtpEnabled: Any = None
    mtpFreezeBaseModel: Any = None
    mtpNumDraftTokens: Any = None
    metricsFileSignedUrl: Any = None
    usePurpose: str | None = None


class DpoConfig(_Wire):
    beta: float | None = None
    refCacheConcurrency: int | None = None
    refCacheBatchSize: int | None = None


class LossConfig(_Wire):
    method: Literal["METHOD_UNSPECIFIED", "GRPO", "DAPO", "DPO", "ORPO", "GSPO_TOKEN"] | None = None
    dpo: DpoConfig | None = None
    klBeta: float | None = None


class CreateDpoJob(_Job):
    trainingConfig: _Training | None = None
    lossConfig: LossConfig | None = None


class CreateDeployment(_Wire):
    baseModel: str
    displayName: DisplayName | None = None
    description: str | None = None
    minReplicaCount: Annotated[int, Field(strict=True, ge=0)] | None = None
    maxReplicaCount: Annotated[int, Field(strict=True, ge=0)] | None = None
    acceleratorType: str | None = None
    acceleratorCount: PositiveInt | None = None
    enableAddons: bool | None = None
    deploymentShape: str | None = None
    precision: str | None = None
    maxContextLength: Annotated[int, Field(strict=True, ge=0)] | None = None
    autoscalingPolicy: dict[str, Any] | None = None
    # Accepted, not acted on:
    activeModelVersion: Any = None
    autoTune: Any = None
    deploymentTemplate: Any = None
    directRouteApiKeys: Any = None
    directRouteType: Any = None
    disableDeploymentSizeValidation: Any = None
    draftModel: Any = None
    draftTokenCount: Any = None
    enableHotLoad: Any = None
    enableHotReloadLatestAddon: Any = None
    enableMtp: Any = None
    enableSessionAffinity: Any = None
    expireTime: Any = None
    hotLoadBucketType: Any = None
    hotLoadBucketUrl: Any = None
    maxWithRevocableReplicaCount: Any = None
    ngramSpeculationLength: Any = None
    placement: Any = None
    pricingPlanId: Any = None
    targetModelVersion: Any = None


class LoadLora(_Wire):
    model: str
    deployment: str
    displayName: DisplayName | None = None
    description: str | None = None
    default: bool | None = None
    public: bool | None = None
    serverless: bool | None = None


class ChatRequest(ChatCompletionRequest):
    """OpenAI's chat body; Fireworks' own sampling options (``top_k``, ``min_p``, ...) are
    taken and ignored rather than refused (whether the service refuses unknown ones is
    unverified)."""

    model_config = ConfigDict(extra="ignore")
