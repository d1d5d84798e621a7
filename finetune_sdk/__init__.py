"""finetune-sdk: fine-tune chat LLMs on OpenAI, Azure OpenAI or your own hardware, through one API.

The public face; everything here is a re-export.
"""

from ._datasets import estimate, validate
from .client import FineTuneClient
from .config import Profile, ProviderSettings, finetune_home, load_profile
from .data import convert, split
from .evaluation import Evaluation, evaluate
from .errors import (AuthenticationError, BadRequestError, ConfigurationError, ConflictError, DatasetError,
                     FineTuneError, IdempotencyError, JobFailedError, NotFoundError, PermissionDeniedError,
                     ProviderConnectionError, ProviderError, RateLimitError, ServerError, UnsupportedOperation,
                     WaitTimeout)
from .providers import Capability, Provider, available_providers, get_provider_class, register_provider
from .types import (ChatResponse, Checkpoint, DatasetReport, Deployment, Estimate, Event, Hyperparameters, Issue, Job,
                    JobSpec, JobStatus, MetricPoint, TokenStats)

__version__ = "0.1.0"

from ._secrets import scrub_third_party_logs as _scrub_third_party_logs

_scrub_third_party_logs()

__all__ = [
    "__version__",
    "FineTuneClient",
    # datasets
    "validate", "estimate", "convert", "split",
    # evaluation
    "evaluate", "Evaluation",
    # configuration and providers
    "Profile", "ProviderSettings", "load_profile", "finetune_home",
    "Capability", "Provider", "available_providers", "get_provider_class", "register_provider",
    # types
    "ChatResponse", "Checkpoint", "DatasetReport", "Deployment", "Estimate", "Event", "Hyperparameters", "Issue",
    "Job", "JobSpec", "JobStatus", "MetricPoint", "TokenStats",
    # errors
    "FineTuneError", "ConfigurationError", "DatasetError", "ProviderError", "BadRequestError",
    "AuthenticationError", "PermissionDeniedError", "NotFoundError", "ConflictError", "RateLimitError",
    "ServerError", "ProviderConnectionError", "IdempotencyError", "JobFailedError", "WaitTimeout",
    "UnsupportedOperation",
]
