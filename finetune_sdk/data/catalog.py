"""Facts about hosted base models: tokenizer encoding, training context limit, price.

One table, each fact with its source. Where a fact is not known it is ``None`` and the
SDK says "unknown" rather than inventing a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ModelFacts", "Price", "InferencePrice", "lookup", "base_model_of", "is_hosted_model",
           "inference_price", "MIN_HOSTED_EXAMPLES"]

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
    encoding: str | None  # a tiktoken encoding; None: no offline tokenizer (counts are estimates)
    context_limit: int | None
    context_source: str | None
    price: Price | None = None
    legacy_completions: bool = False
    methods: tuple[str, ...] = ("supervised",)
    service: str = "openai"  # whose dataset rules apply (finetune_sdk.data.rules.RULES)
    price_note: str | None = None  # why the price is unknown, or how the service bills beyond it
    inference: InferencePrice | None = None  # answering with the base model
    tuned_inference: InferencePrice | None = None  # answering with a fine-tune of it


@dataclass(frozen=True)
class InferencePrice:
    """What answering costs, per 1M prompt and completion tokens."""

    prompt: float
    completion: float
    currency: str
    source: str
    as_of: str


_GUIDE_2024 = "OpenAI fine-tuning guide (public copy, late 2024)"
_MINI_USAGE = ("third-party price table (goitreels.com, 2026-04), matching OpenAI's 2024 pricing page; not "
               "checked against OpenAI itself")
_AZURE_TABLE = "Azure OpenAI fine-tunable models table (MicrosoftDocs, 2025)"

# Longest prefix wins. Azure spells GPT-3.5 as gpt-35-turbo.
_FACTS: list[tuple[str, ModelFacts]] = [
    ("gpt-4.1-nano", ModelFacts("gpt-4.1-nano", "o200k_base", 32768, _AZURE_TABLE, methods=("supervised", "dpo"))),
    ("gpt-4.1-mini", ModelFacts("gpt-4.1-mini", "o200k_base", 65536, _AZURE_TABLE, methods=("supervised", "dpo"))),
    ("gpt-4.1", ModelFacts("gpt-4.1", "o200k_base", 65536, _AZURE_TABLE, methods=("supervised", "dpo"))),
    ("gpt-4o-mini", ModelFacts("gpt-4o-mini", "o200k_base", 65536, _GUIDE_2024,
                               Price(3.00, "USD", _GUIDE_2024 + ": 100,000 tokens x 3 epochs ~ $0.90", "2024-12"),
                               methods=("supervised", "dpo"),
                               inference=InferencePrice(0.15, 0.60, "USD", _MINI_USAGE, "2026-04"),
                               tuned_inference=InferencePrice(0.30, 1.20, "USD", _MINI_USAGE, "2026-04"))),
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

_FIREWORKS_PRICING = ("fireworks.ai/pricing, stored copy (undated; it still lists Mixtral 8x7B tuning): "
                      "models up to 16B parameters $0.50, 16.1B-80B $3.00 per 1M training tokens, billed on "
                      "dataset tokens x epochs")
_TOGETHER_PRICE_NOTE = ("Together bills per token by model size, SFT or DPO, and LoRA or full fine-tuning, counting "
                        "training and evaluation tokens (n_epochs x train + n_evals x validation); the per-token "
                        "rates (together.ai/pricing) are not captured here, so the cost is unknown. The service's "
                        "own estimate: POST /fine-tunes/estimate-price.")
_T_SK = "Together skills supported-models.md (2026-08)"

# Open models on Together AI and Fireworks AI: exact names, no tokenizer offline.
_OPEN: dict[str, ModelFacts] = {
    "meta-llama/meta-llama-3.1-8b-instruct-reference": ModelFacts(
        "llama-3.1-8b", None, 131072, _T_SK, methods=("supervised", "dpo"), service="together",
        price_note=_TOGETHER_PRICE_NOTE),
    "meta-llama/llama-3.3-70b-instruct-reference": ModelFacts(
        "llama-3.3-70b", None, None, None, methods=("supervised", "dpo"), service="together",
        price_note=_TOGETHER_PRICE_NOTE),
    "qwen/qwen2.5-7b-instruct": ModelFacts("qwen2.5-7b", None, None, None, methods=("supervised", "dpo"),
                                           service="together", price_note=_TOGETHER_PRICE_NOTE),
    "qwen/qwen3-8b": ModelFacts("qwen3-8b", None, None, None, methods=("supervised", "dpo"), service="together",
                                price_note=_TOGETHER_PRICE_NOTE),
    "accounts/fireworks/models/qwen3-4b": ModelFacts(
        "qwen3-4b", None, None, None, Price(0.50, "USD", _FIREWORKS_PRICING, "undated"),
        methods=("supervised", "dpo"), service="fireworks"),
    "accounts/fireworks/models/qwen3-8b": ModelFacts(
        "qwen3-8b", None, None, None, Price(0.50, "USD", _FIREWORKS_PRICING, "undated"),
        methods=("supervised", "dpo"), service="fireworks"),
    "accounts/fireworks/models/llama-v3p3-70b-instruct": ModelFacts(
        "llama-3.3-70b", None, None, None, Price(3.00, "USD", _FIREWORKS_PRICING, "undated"),
        methods=("supervised", "dpo"), service="fireworks"),
}

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
    if model.strip().lower() in _OPEN:
        return _OPEN[model.strip().lower()]
    base = base_model_of(model).lower()
    for prefix, facts in _FACTS:
        if base == prefix or base.startswith((prefix + "-", prefix + ".")):
            return facts
    return None


def is_hosted_model(model: str | None) -> bool:
    return lookup(model) is not None


def inference_price(model: str | None, *, fine_tuned: bool) -> InferencePrice | None:
    """What answering with ``model`` costs per 1M tokens, if known (a fine-tune's own rate)."""
    facts = lookup(model)
    if facts is None:
        return None
    return facts.tuned_inference if fine_tuned else facts.inference
