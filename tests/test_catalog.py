"""The model catalog beyond OpenAI: open models on Together AI and Fireworks AI bring their
service's dataset rules, approximate token counts that say so, and a price only where one
is published (unknown stays unknown)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_sdk import estimate, validate
from finetune_sdk.data import catalog

ROW = {"messages": [{"role": "user", "content": "Maria is 34 and lives in Lisbon."},
                    {"role": "assistant", "content": '{"name": "Maria", "age": 34, "city": "Lisbon"}'}]}


def write(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(ROW) + "\n" for _ in range(n)))
    return path


def test_a_fireworks_model_is_priced_from_its_size_bracket(tmp_path: Path) -> None:
    est = estimate(write(tmp_path, 20), model="accounts/fireworks/models/qwen3-8b", n_epochs=2)
    assert est.price_per_million_tokens == 0.50 and est.cost is not None
    assert est.cost == pytest.approx(est.billed_tokens / 1e6 * 0.50, abs=1e-4)
    assert "fireworks.ai/pricing" in (est.price_source or "") and est.price_as_of == "undated"
    big = catalog.lookup("accounts/fireworks/models/llama-v3p3-70b-instruct")
    assert big is not None and big.price is not None and big.price.per_million_tokens == 3.00


def test_a_together_models_cost_stays_unknown_and_says_why(tmp_path: Path) -> None:
    est = estimate(write(tmp_path, 20), model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", n_epochs=1)
    assert est.cost is None and est.price_per_million_tokens is None
    assert any("estimate-price" in note and "evaluation tokens" in note for note in est.notes)


def test_open_models_bring_their_services_rules_and_say_counts_are_approximate(tmp_path: Path) -> None:
    two = write(tmp_path, 2)
    together = validate(two, model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference")
    assert together.ok, [str(i) for i in together.errors]  # Together takes 1 example
    assert together.tokens is not None and not together.tokens.exact
    assert "available offline" in (together.tokens.note or "")
    fireworks = validate(two, model="accounts/fireworks/models/qwen3-8b")
    assert [i.code for i in fireworks.errors] == ["too_few_examples"]
    assert "Fireworks AI requires at least 3" in fireworks.errors[0].message
    openai = validate(two, model="gpt-4o-mini-2024-07-18")
    assert [i.code for i in openai.errors] == ["too_few_examples"] and openai.tokens and openai.tokens.exact


@pytest.mark.parametrize("name", ["", "no-such-model", "accounts/fireworks/models/not-tunable"])
def test_unknown_names_are_not_invented(name: str) -> None:
    assert catalog.lookup(name) is None
