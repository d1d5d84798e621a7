"""What a training run will bill and cost, from token counts.

Billing tokens follow the providers' documented formula: the sum over examples of
``min(context_limit, tokens)``, times the number of epochs (validation data is not
billed). When epochs are "auto", the number hosted providers pick is approximated by the
OpenAI cookbook's heuristic (constants below). Prices come from a dated table with its
source (:mod:`finetune_sdk.data.catalog`); where no price is known the cost is ``None``
— never an invented number.
"""

from __future__ import annotations

import os

from ..types import Estimate
from . import catalog
from .tokens import TokenizerResolver

__all__ = ["estimate", "estimate_tokens", "auto_epochs"]

# The OpenAI cookbook "Data preparation and analysis for chat model fine-tuning".
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def auto_epochs(n_examples: int) -> int:
    """The number of epochs hosted providers are believed to choose for "auto"."""
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def estimate_tokens(tokens_per_epoch: int, n_examples: int, *, model: str | None,
                    n_epochs: int | None = None) -> Estimate:
    """An estimate from already-counted billing tokens (sum of min(limit, tokens))."""
    if tokens_per_epoch < 0 or n_examples < 0:
        raise ValueError("token and example counts cannot be negative")
    if n_epochs is not None and (not isinstance(n_epochs, int) or isinstance(n_epochs, bool) or n_epochs < 1):
        raise ValueError(f"n_epochs must be a positive integer or None (auto), not {n_epochs!r}")
    epochs = n_epochs if n_epochs is not None else auto_epochs(n_examples)
    billed = tokens_per_epoch * epochs
    notes: list[str] = []
    if n_epochs is None:
        notes.append(f"{epochs} epochs: the heuristic hosted providers use for n_epochs='auto' "
                     f"({n_examples:,} examples); not a provider guarantee.")
    facts = catalog.lookup(model)
    price = facts.price if facts else None
    cost = None
    if price is not None:
        cost = round(billed / 1_000_000 * price.per_million_tokens, 4)
    elif model is None:
        notes.append("No model given, so no price: pass a model for a cost estimate.")
    elif facts is not None:
        notes.append(facts.price_note or f"No published per-token training price is known for {model}; "
                                         f"cost unknown.")
    else:
        notes.append(f"{model} is not a hosted OpenAI/Azure model: no per-token price applies "
                     f"(local training costs your hardware time).")
    return Estimate(model=model, tokens_per_epoch=tokens_per_epoch, n_epochs=epochs,
                    epochs_source="given" if n_epochs is not None else "auto", billed_tokens=billed,
                    price_per_million_tokens=price.per_million_tokens if price else None,
                    currency=price.currency if price else "USD",
                    price_source=price.source if price else None, price_as_of=price.as_of if price else None,
                    cost=cost, notes=notes)


def estimate(path: str | os.PathLike[str], *, model: str, n_epochs: int | None = None,
             workers: int | None = None, tokenizer: TokenizerResolver | None = None) -> Estimate:
    """Count a dataset's tokens and estimate the training bill on ``model``.

    ``tokenizer``: as for :func:`~finetune_sdk.data.validate.validate`.

    A file with errors is still estimated (on the examples that could be counted), and
    the estimate's notes say how many errors the provider would reject it for.

    Raises:
        DatasetError: the file holds no examples at all.
        FileNotFoundError: no such file.
    """
    from ..errors import DatasetError
    from .validate import validate

    report = validate(path, model=model, n_epochs=n_epochs, workers=workers, tokenizer=tokenizer)
    if report.estimate is None:
        raise DatasetError(f"{path}: no examples to estimate.", report=report)
    result = report.estimate
    if not report.valid:
        result.notes.append(f"The file has {report.error_count:,} error(s) and would be rejected as it is; "
                            f"run `finetune validate {path}` to see them.")
    return result
