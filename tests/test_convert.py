"""Conversion from alpaca / ShareGPT / prompt-completion, de-duplication and splitting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_sdk.data import convert, deduplicate, split, validate


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_alpaca(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "a.jsonl", [
        {"instruction": "Translate", "input": "chat", "output": "cat", "system": "You translate."},
        {"instruction": "Say hi", "output": "hi"},
        {"instruction": "Broken", "output": 3},
    ])
    r = convert(src, tmp_path / "out.jsonl", from_format="alpaca")
    assert r.written == 2 and r.skipped_count == 1
    assert r.skipped[0].line == 3 and r.skipped[0].path == "output"
    rows = read(tmp_path / "out.jsonl")
    assert rows[0]["messages"] == [{"role": "system", "content": "You translate."},
                                   {"role": "user", "content": "Translate\n\nchat"},
                                   {"role": "assistant", "content": "cat"}]
    assert rows[1]["messages"][0] == {"role": "user", "content": "Say hi"}


def test_sharegpt(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "s.jsonl", [
        {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                           {"from": "gpt", "value": "A"}]},
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "observation", "value": "?"}]},
        {"conversations": []},
        {"system": "sys", "conversations": [{"from": "user", "value": "u"}, {"from": "assistant", "value": "a"}],
         "tools": json.dumps([{"name": "f", "parameters": {"type": "object"}}])},
    ])
    r = convert(src, tmp_path / "out.jsonl", from_format="sharegpt")
    assert r.written == 2 and [i.line for i in r.skipped] == [2, 3]
    assert "observation" in r.skipped[0].message
    rows = read(tmp_path / "out.jsonl")
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert rows[1]["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_completion_and_dedupe(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "c.jsonl", [{"prompt": "p", "completion": "c"}] * 3 + ["not json", [1]])
    r = convert(src, tmp_path / "out.jsonl", from_format="completion")
    assert (r.written, r.duplicates, r.skipped_count) == (1, 2, 2)
    r = convert(src, tmp_path / "out2.jsonl", from_format="completion", dedupe=False)
    assert r.written == 3


def test_converted_output_validates(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "a.jsonl", [{"instruction": f"i{i}", "output": f"o{i}"} for i in range(12)])
    convert(src, tmp_path / "out.jsonl", from_format="alpaca")
    report = validate(tmp_path / "out.jsonl", model="gpt-4o-mini-2024-07-18")
    assert report.valid and report.examples == 12


def test_bad_arguments(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "a.jsonl", [{"instruction": "i", "output": "o"}])
    with pytest.raises(ValueError, match="from_format"):
        convert(src, tmp_path / "o.jsonl", from_format="csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ"):
        convert(src, src, from_format="alpaca")
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "missing.jsonl", tmp_path / "o.jsonl", from_format="alpaca")
    for bad in (0, 1, -0.1, 1.5, True, "0.2"):
        with pytest.raises(ValueError, match="validation_fraction"):
            split(src, validation_fraction=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        split(src, validation_fraction=0.5)  # one example cannot be split
    with pytest.raises(FileNotFoundError):
        deduplicate(tmp_path / "missing.jsonl", tmp_path / "o.jsonl")


def test_failed_conversion_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = jsonl(tmp_path / "a.jsonl", [{"instruction": "i", "output": "o"}] * 2)
    import importlib

    mod = importlib.import_module("finetune_sdk.data.convert")

    def boom(obj: dict) -> dict:
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(mod._CONVERTERS, "alpaca", boom)
    with pytest.raises(RuntimeError):
        convert(src, tmp_path / "out.jsonl", from_format="alpaca")
    assert list(tmp_path.iterdir()) == [src]


def test_split_is_seeded_deduplicated_and_disjoint(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(100)]
    src = jsonl(tmp_path / "d.jsonl", rows + rows[:10] + ["garbage"])
    a = split(src, validation_fraction=0.1, seed=3)
    first = (a.train.read_text(), a.validation.read_text())
    assert (a.train_examples, a.validation_examples, a.duplicates_removed, a.skipped_lines) == (90, 10, 10, 1)
    b = split(src, validation_fraction=0.1, seed=3)
    assert (b.train.read_text(), b.validation.read_text()) == first
    c = split(src, validation_fraction=0.1, seed=4, train_output=tmp_path / "t.jsonl",
              validation_output=tmp_path / "v.jsonl")
    assert c.validation.read_text() != first[1]
    assert not set(first[0].splitlines()) & set(first[1].splitlines())


def test_deduplicate_is_canonical(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "d.jsonl", ['{"a": 1, "b": 2}', '{"b":2,"a":1}', '{"a": 2}'])
    r = deduplicate(src, tmp_path / "o.jsonl")
    assert (r.written, r.duplicates) == (2, 1)
