"""Dataset tooling: validation, token counting, cost estimates and conversion. No network."""

from .convert import convert, deduplicate, split
from .estimate import estimate, estimate_tokens
from .validate import validate

__all__ = ["validate", "estimate", "estimate_tokens", "convert", "split", "deduplicate"]
