"""Facts about hosted base models: tokenizer encoding, training context limit, price.

One table, each fact with its source. Where a fact is not known it is ``None`` and the
SDK says "unknown" rather than inventing a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ModelFacts", "Price", "lookup", "base_model_of", "is_hosted_model", "MIN_HOSTED_EXAMPLES"]

#: "To fine-tune a model, you are required to provide at least 10 examples" (OpenAI guide);
#: "Fine-tuning jobs won't proceed without at least 10 training examples" (Azure docs).
MIN_HOSTED_EXAMPLES = 10


@dataclass(frozen=True)
class Price:
    per_million_tokens: float
    currency: str
    source: str
    as_of: str


@dataclass(frozen=True)
class ModelFacts:
    family: str
    encoding: str
    context_limit: int | None
    context_source: str | None
    price: Price | None = None
    legacy_completions: bool = False
    methods: tuple[str, ...] = ("supervised",)


_GUIDE_2024 = "OpenAI fine-tuning guide (public copy, late 2024)"
_AZURE_TABLE = "Azure OpenAI fine-tunable models table (MicrosoftDocs, 2025)"

# Longest prefix wins. Azure spells GPT-3.5 as gpt-35-turbo.
_FACTS: list[tuple[str, ModelFacts]] = [
    ("gpt-4.1-nano", ModelFacts("gpt-4.1-nano", "o200k_base", 32768, _AZURE_TABLE, methods=("supervised", "dpo"))),
    ("gpt-4.1-mini", ModelFacts("gpt-4.1-mini", "o200k_base", 65536, _AZURE_TABLE, methods=("supervised", "dpo"))),
    ("gpt-4.1", ModelFacts("gpt-4.1", "o200k_base", 65536, _AZURE_TABLE, methods=("supervised", "dpo"))),
    ("gpt-4o-mini", ModelFacts("gpt-4o-mini", "o200k_base", 65536, _GUIDE_2024,
                               Price(3.00, "USD", _GUIDE_2024 + ": 100,000 tokens x 3 epochs ~ $0.90", "2024-12"),
                               methods=("supervised", "dpo"))),
    ("gpt-4o", ModelFacts("gpt-4o", "o200k_base", 65536, _GUIDE_2024,
                          Price(25.00, "USD", "third-party report (tokenmix.ai); not an official OpenAI table",
                                "2026-04"),
                          methods=("supervised", "dpo"))),
    ("o4-mini", ModelFacts("o4-mini", "o200k_base", 65536, _AZURE_TABLE, methods=("reinforcement",))),
    ("gpt-3.5-turbo-0613", ModelFacts("gpt-3.5-turbo", "cl100k_base", 4096, _GUIDE_2024)),
    ("gpt-35-turbo-0613", ModelFacts("gpt-3.5-turbo", "cl100k_base", 4096, _GUIDE_2024)),
    ("gpt-3.5-turbo-1106", ModelFacts("gpt-3.5-turbo", "cl100k_base", 16385, _GUIDE_2024)),
    ("gpt-35-turbo-1106", ModelFacts("gpt-3.5-turbo", "cl100k_base", 16385, _GUIDE_2024)),
    ("gpt-3.5-turbo-0125", ModelFacts("gpt-3.5-turbo", "cl100k_base", 16385, _GUIDE_2024,
                                      Price(8.00, "USD", _GUIDE_2024 + ": 100,000 tokens x 3 epochs ~ $2.40",
                                            "2024-12"))),
    ("gpt-35-turbo-0125", ModelFacts("gpt-3.5-turbo", "cl100k_base", 16385, _GUIDE_2024)),
    ("gpt-3.5-turbo", ModelFacts("gpt-3.5-turbo", "cl100k_base", 16385, _GUIDE_2024)),
    ("gpt-35-turbo", ModelFacts("gpt-3.5-turbo", "cl100k_base", 16385, _GUIDE_2024)),
    ("gpt-4", ModelFacts("gpt-4", "cl100k_base", None, None)),
    ("babbage-002", ModelFacts("babbage-002", "cl100k_base", None, None, legacy_completions=True)),
    ("davinci-002", ModelFacts("davinci-002", "cl100k_base", None, None, legacy_completions=True)),
]

_AZURE_FT = re.compile(r"^(?P<base>.+?)\.ft-[0-9a-f]{8,}.*$")


def base_model_of(model: str) -> str:
    """The base snapshot behind a model name, including continued fine-tunes.

    ``ft:gpt-4o-mini-2024-07-18:org:suffix:id`` and Azure's
    ``gpt-4o-mini-2024-07-18.ft-0e20...`` both give ``gpt-4o-mini-2024-07-18``.
    """
    name = model.strip()
    if name.startswith("ft:"):
        parts = name.split(":")
        if len(parts) > 1 and parts[1]:
            return parts[1]
    m = _AZURE_FT.match(name)
    if m:
        return m.group("base")
    return name


def lookup(model: str | None) -> ModelFacts | None:
    """Facts for a hosted model name (base, ``ft:`` or Azure fine-tune), or None if unknown."""
    if not model:
        return None
    base = base_model_of(model).lower()
    for prefix, facts in _FACTS:
        if base == prefix or base.startswith((prefix + "-", prefix + ".")):
            return facts
    return None


def is_hosted_model(model: str | None) -> bool:
    return lookup(model) is not None
