"""Evaluation examples: chat lines whose last assistant message is the expected answer."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError

__all__ = ["EvalExample", "load_eval_examples", "pick_shots", "with_shots"]


@dataclass(frozen=True)
class EvalExample:
    """One example: where it came from, the prompt (every message before the expected
    answer) and the expected answer."""

    line: int
    prompt: list[dict[str, Any]]
    expected: str

    @property
    def key(self) -> str:
        """Identifies the example by content, to keep few-shot examples out of the evaluated ones."""
        blob = json.dumps([self.prompt, self.expected], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "prompt": self.prompt, "expected": self.expected}


def _parse(obj: Any, line: int, where: str) -> EvalExample | str:
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list) or not obj["messages"]:
        return f"{where} line {line}: not a chat example (an object with a non-empty \"messages\" list)"
    messages = obj["messages"]
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        return (f"{where} line {line}: the last message is not an assistant message with text content, so there "
                f"is no expected answer")
    if len(messages) < 2:
        return f"{where} line {line}: there is no prompt before the expected answer"
    return EvalExample(line=line, prompt=[dict(m) for m in messages[:-1]], expected=last["content"])


def load_eval_examples(source: str | os.PathLike[str] | Iterable[dict[str, Any]], *,
                       limit: int | None = None) -> list[EvalExample]:
    """Examples from a JSONL file or a list of chat examples.

    Raises:
        DatasetError: naming every line (up to 20) that has no expected answer or is not JSON.
        FileNotFoundError: no such file.
    """
    problems: list[str] = []
    out: list[EvalExample] = []
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"No such evaluation file: {path}")
        rows: list[tuple[int, Any]] = []
        with open(path, encoding="utf-8-sig") as f:
            for n, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    rows.append((n, json.loads(text)))
                except json.JSONDecodeError as exc:
                    problems.append(f"{path} line {n}: invalid JSON ({exc.msg})")
        where = str(path)
    else:
        rows = list(enumerate(source, 1))
        where = "example"
    for n, obj in rows:
        parsed = _parse(obj, n, where)
        if isinstance(parsed, str):
            problems.append(parsed)
        else:
            out.append(parsed)
        if limit is not None and len(out) >= limit:
            break
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetError(f"{len(problems)} evaluation example(s) cannot be used:\n  {shown}{more}")
    if not out:
        raise DatasetError(f"{where}: no evaluation examples")
    return out


def pick_shots(pool: list[EvalExample], k: int, evaluated: list[EvalExample], *, seed: int = 0) -> list[EvalExample]:
    """``k`` few-shot examples from ``pool``, never one of the evaluated examples."""
    if k < 1:
        raise ValueError("the number of shots must be at least 1")
    taken = {e.key for e in evaluated}
    candidates = [e for e in pool if e.key not in taken]
    if len(candidates) < k:
        raise DatasetError(f"{k} shots asked for, but the shots file has only {len(candidates)} example(s) that "
                           f"are not also evaluated; give a larger --shots file (examples are never taken from "
                           f"the evaluated data)")
    rng = random.Random(seed)
    return rng.sample(candidates, k)


def with_shots(prompt: list[dict[str, Any]], shots: list[EvalExample]) -> list[dict[str, Any]]:
    """The prompt with each shot's conversation and answer before it (after a leading system message)."""
    lead = prompt[:1] if prompt and prompt[0].get("role") == "system" else []
    demo: list[dict[str, Any]] = []
    for shot in shots:
        demo += [m for m in shot.prompt if m.get("role") != "system"]
        demo.append({"role": "assistant", "content": shot.expected})
    return lead + demo + prompt[len(lead):]
