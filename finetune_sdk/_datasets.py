"""The public dataset functions, with the provider registry's tokenizers.

:mod:`finetune_sdk.data` imports no provider; these wrappers lend it the tokenizers of
the registered providers (for example the local backend's model aliases) so that
``finetune_sdk.validate("train.jsonl", model="smollm2-135m-instruct")`` counts tokens with
that model's chat template.
"""

from __future__ import annotations

import functools
from typing import Any

from .data import estimate as _estimate
from .data import validate as _validate
from .providers.base import resolve_tokenizer
from .types import DatasetReport, Estimate

__all__ = ["validate", "estimate"]


@functools.wraps(_validate)
def validate(*args: Any, **kwargs: Any) -> DatasetReport:
    kwargs.setdefault("tokenizer", resolve_tokenizer)
    return _validate(*args, **kwargs)


@functools.wraps(_estimate)
def estimate(*args: Any, **kwargs: Any) -> Estimate:
    kwargs.setdefault("tokenizer", resolve_tokenizer)
    return _estimate(*args, **kwargs)
