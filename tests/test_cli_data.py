"""The dataset commands of the CLI, run as real subprocesses: output, --json, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "finetune_sdk", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


GOOD = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello."}]}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def good_file(tmp_path: Path, n: int = 12, name: str = "good.jsonl") -> Path:
    lines = []
    for i in range(n):
        ex = json.loads(json.dumps(GOOD))
        ex["messages"][1]["content"] = f"Question {i}?"
        lines.append(json.dumps(ex))
    return write_lines(tmp_path / name, lines)


def test_validate_valid_file_exits_0(tmp_path: Path) -> None:
    r = run("validate", str(good_file(tmp_path)), "--model", "gpt-4o-mini-2024-07-18")
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout and "12 examples" in r.stdout
    assert "o200k_base" in r.stdout and "Estimate" in r.stdout and "USD" in r.stdout


def test_validate_errors_exit_1_with_line_numbers(tmp_path: Path) -> None:
    f = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD)] * 3 + ["{not json", json.dumps({"messages": []})])
    r = run("validate", str(f), "--model", "gpt-4o-mini-2024-07-18")
    assert r.returncode == 1
    assert "line 4" in r.stdout and "invalid_json" in r.stdout
    assert "line 5" in r.stdout and "missing_messages" in r.stdout
    assert "too_few_examples" in r.stdout


def test_validate_by_a_providers_rules(tmp_path: Path) -> None:
    """--provider local: the local trainer reads text only, so image lines are errors, with
    their line numbers; --provider openai: a vision example is fine."""
    vision = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                        {"type": "image_url",
                                                         "image_url": {"url": "https://example.com/a.png"}}]},
                           {"role": "assistant", "content": "A cat."}]}
    f = write_lines(tmp_path / "mixed.jsonl", [json.dumps(GOOD)] * 11 + [json.dumps(vision)])
    r = run("validate", str(f), "--provider", "local", "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert [(i["line"], i["code"]) for i in doc["errors"]] == [(12, "images_not_supported_by_model")]
    r = run("validate", str(f), "--provider", "openai", "--model", "gpt-4o-2024-08-06")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("validate", str(f), "--provider", "no-such-provider")
    assert r.returncode == 2 and "no-such-provider" in r.stderr


def test_validate_json_document_shape(tmp_path: Path) -> None:
    f = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD), "[1]", json.dumps(GOOD)])
    r = run("validate", str(f), "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["valid"] is False and doc["examples"] == 2
    assert {"line": 2, "code": "not_an_object"}.items() <= doc["errors"][0].items()
    for issue in doc["errors"] + doc["warnings"]:
        assert set(issue) >= {"line", "code", "path", "message"}
    assert doc["tokens"]["total_tokens"] > 0 and "estimate" in doc


def test_validate_with_validation_file_reports_overlap(tmp_path: Path) -> None:
    train = good_file(tmp_path, 12)
    val = write_lines(tmp_path / "val.jsonl", [train.read_text().splitlines()[0]])
    r = run("validate", str(train), "--validation", str(val), "--json")
    doc = json.loads(r.stdout)
    assert doc["validation"]["warnings"][0]["code"] == "train_validation_overlap"


@pytest.mark.parametrize("args", [
    ["validate"],                                  # missing FILE
    ["validate", "/no/such/file.jsonl"],          # missing file
    ["validate", "{f}", "--method", "rlhf"],       # bad method
    ["validate", "{f}", "--workers", "0"],         # bad workers
    ["estimate", "{f}"],                           # --model required
    ["convert", "{f}", "{o}", "--from", "csv"],    # unknown source format
    ["split", "{f}", "--validation-fraction", "1.5"],
    ["nonsense-command"],
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    f = good_file(tmp_path)
    r = run(*[a.format(f=f, o=tmp_path / "o.jsonl") for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)


def test_estimate_json(tmp_path: Path) -> None:
    r = run("estimate", str(good_file(tmp_path, 50)), "--model", "gpt-4o-mini-2024-07-18", "--epochs", "2", "--json")
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)
    assert est["n_epochs"] == 2 and est["epochs_source"] == "given"
    assert est["billed_tokens"] == 2 * est["tokens_per_epoch"]
    assert est["cost"] == pytest.approx(est["billed_tokens"] / 1e6 * 3.0, abs=1e-4)


def test_estimate_unknown_price_says_unknown(tmp_path: Path) -> None:
    r = run("estimate", str(good_file(tmp_path)), "--model", "gpt-4.1-2025-04-14")
    assert r.returncode == 0 and "cost unknown" in r.stdout


def test_convert_and_split_roundtrip(tmp_path: Path) -> None:
    alpaca = write_lines(tmp_path / "alpaca.jsonl", [
        json.dumps({"instruction": f"Add {i} and 1", "input": "", "output": str(i + 1)}) for i in range(30)
    ] + [json.dumps({"instruction": "Add 0 and 1", "input": "", "output": "1"}), "oops"])
    chat = tmp_path / "chat.jsonl"
    r = run("convert", str(alpaca), str(chat), "--from", "alpaca")
    assert r.returncode == 0, r.stderr
    assert "wrote 30 examples" in r.stdout and "1 duplicates" in r.stdout and "line 32" in r.stdout
    r = run("split", str(chat), "--validation-fraction", "0.2", "--seed", "7")
    assert r.returncode == 0, r.stderr
    train, val = tmp_path / "chat.train.jsonl", tmp_path / "chat.val.jsonl"
    assert len(train.read_text().splitlines()) == 24 and len(val.read_text().splitlines()) == 6
    r = run("validate", str(train), "--validation", str(val))
    assert r.returncode == 0 and "overlap" not in r.stdout


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("finetune-sdk ")
