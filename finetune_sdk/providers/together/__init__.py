"""Together AI: fine-tuning jobs, serverless LoRA and dedicated endpoints (see :mod:`.provider`)."""

from .provider import SERVERLESS_LORA_MODELS, TogetherProvider, TogetherSettings

__all__ = ["TogetherProvider", "TogetherSettings", "SERVERLESS_LORA_MODELS"]
