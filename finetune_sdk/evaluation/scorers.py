"""Scorers: how well one answer matches the expected one, from 0 to 1.

Built in: ``exact`` (same text, whitespace trimmed), ``json`` (both parse as JSON and are
equal), ``contains`` (the expected text appears in the answer, case-insensitively),
``similarity`` (a normalised text similarity: 1 - edit distance / length, on lower-cased
words), ``python:module:function`` (your code: ``fn(answer, expected, example) -> float |
bool``), and ``judge:MODEL[@PROFILE]`` (an LLM judge with the rubric below). A scorer that
cannot score an answer (user code raising, a judge giving no grade) returns ``None``: the
report counts it as a scorer failure, never as a zero.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

__all__ = ["Scorer", "make_scorer", "JUDGE_RUBRIC", "BUILTIN"]

#: The judge's instructions. Its reply must hold one integer grade; grade g scores (g - 1) / 4.
JUDGE_RUBRIC = (
    "You grade an AI assistant's answer against a reference answer.\n"
    "Grade 5: the answer means the same as the reference (wording may differ).\n"
    "Grade 4: the same, with a minor omission or harmless addition.\n"
    "Grade 3: partly right: some required facts missing or wrong.\n"
    "Grade 2: mostly wrong, with a little of the reference in it.\n"
    "Grade 1: wrong, irrelevant or empty.\n"
    "Reply with the grade only: a single integer from 1 to 5."
)


@dataclass(frozen=True)
class Scorer:
    name: str
    fn: Callable[[str, str, dict[str, Any]], float | None]

    def __call__(self, answer: str, expected: str, example: dict[str, Any]) -> float | None:
        return self.fn(answer, expected, example)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text.strip())
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def _exact(answer: str, expected: str, _: dict[str, Any]) -> float:
    return float(answer.strip() == expected.strip())


def _json(answer: str, expected: str, _: dict[str, Any]) -> float:
    want = _parse_json(expected)
    got = _parse_json(answer)
    return float(want is not _NOT_JSON and got is not _NOT_JSON and got == want)


def _contains(answer: str, expected: str, _: dict[str, Any]) -> float:
    return float(expected.strip().lower() in answer.lower())


_WORD = re.compile(r"\w+", re.UNICODE)


def _similarity(answer: str, expected: str, _: dict[str, Any]) -> float:
    a, b = _WORD.findall(answer.lower()), _WORD.findall(expected.lower())
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio()


BUILTIN: dict[str, Callable[[str, str, dict[str, Any]], float | None]] = {
    "exact": _exact, "json": _json, "contains": _contains, "similarity": _similarity}


def _python(spec: str) -> Callable[[str, str, dict[str, Any]], float | None]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"scorer python:{spec} must be python:module:function")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"scorer python:{spec} could not be loaded ({type(exc).__name__}: {exc})") from None
    if not callable(fn):
        raise ConfigurationError(f"scorer python:{spec} is not callable")

    def score(answer: str, expected: str, example: dict[str, Any]) -> float | None:
        value = fn(answer, expected, example)
        if isinstance(value, bool) or isinstance(value, (int, float)) and 0 <= value <= 1:
            return float(value)
        raise ValueError(f"python:{spec} returned {value!r}; a scorer returns a number from 0 to 1 or a bool")

    return score


_GRADE = re.compile(r"\b([1-5])\b")


def judge_grade(reply: str) -> float | None:
    """The judge's grade as a score, or None if the reply holds no grade from 1 to 5."""
    m = _GRADE.search(reply or "")
    return (int(m.group(1)) - 1) / 4 if m else None


def make_scorer(spec: str, *, judge: Callable[[str, list[dict[str, Any]]], str] | None = None) -> Scorer:
    """The scorer named by ``spec``. ``judge(target, messages) -> reply`` asks a model (for
    ``judge:TARGET``); the evaluation supplies one that uses the right profile's client."""
    if spec in BUILTIN:
        return Scorer(spec, BUILTIN[spec])
    if spec.startswith("python:"):
        return Scorer(spec, _python(spec[len("python:"):]))
    if spec.startswith("judge:"):
        target = spec[len("judge:"):]
        if not target:
            raise ConfigurationError("scorer judge: needs a model: judge:MODEL or judge:MODEL@PROFILE")
        if judge is None:
            raise ConfigurationError("a judge scorer needs a client to ask the judge model")
        asker = judge

        def grade(answer: str, expected: str, example: dict[str, Any]) -> float | None:
            question = next((str(m.get("content")) for m in reversed(example.get("prompt", []))
                             if m.get("role") == "user"), "")
            reply = asker(target, [{"role": "system", "content": JUDGE_RUBRIC},
                                   {"role": "user", "content": f"Question:\n{question}\n\nReference answer:\n"
                                                               f"{expected}\n\nAnswer to grade:\n{answer}"}])
            return judge_grade(reply)

        return Scorer(spec, grade)
    known = ", ".join([*BUILTIN, "python:module:function", "judge:MODEL[@PROFILE]"])
    raise ConfigurationError(f"unknown scorer {spec!r}; use one of {known}")
