"""The OpenAI-compatible HTTP face over any provider (see app.py).

Over the ``simulated`` provider it is the emulator of OpenAI and Azure OpenAI; over the
``local`` provider it is a self-hosted fine-tuning and inference service.
Requires the ``serve`` extra (fastapi, uvicorn).
"""

from .app import AZURE_API_VERSIONS, ServerConfig, create_app
from .faults import FaultPlan, FaultRule, FaultSequence

__all__ = ["create_app", "ServerConfig", "FaultPlan", "FaultRule", "FaultSequence", "AZURE_API_VERSIONS"]
