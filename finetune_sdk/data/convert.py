"""Converting other dataset formats to chat JSONL, splitting, and de-duplicating.

- ``alpaca``: ``{"instruction", "input"?, "output", "system"?}``
- ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt"|"system"|..., "value": ...}], "system"?, "tools"?}``
- ``completion``: ``{"prompt", "completion"}`` (the legacy OpenAI format)

All functions stream (constant memory apart from one 16-byte digest per example for
de-duplication) and write their outputs atomically: a failure leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..types import Issue

__all__ = ["convert", "split", "deduplicate", "ConvertResult", "SplitResult", "SOURCE_FORMATS"]

SourceFormat = Literal["alpaca", "sharegpt", "completion"]
SOURCE_FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "completion")

_SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "model": "assistant", "bard": "assistant", "bing": "assistant", "system": "system",
}
_MAX_LISTED = 1000


class _Unconvertible(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class ConvertResult:
    """What a conversion wrote and what it skipped (each skip with line and reason)."""

    output: Path
    written: int = 0
    duplicates: int = 0
    skipped: list[Issue] = field(default_factory=list)
    skipped_count: int = 0


@dataclass
class SplitResult:
    train: Path
    validation: Path
    train_examples: int
    validation_examples: int
    duplicates_removed: int
    skipped_lines: int


def _need_str(obj: dict, key: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Unconvertible(key, f"\"{key}\" must be a string, not {type(value).__name__}")
    return value


def _from_alpaca(obj: dict) -> dict:
    instruction = _need_str(obj, "instruction")
    extra = _need_str(obj, "input", optional=True)
    output = _need_str(obj, "output")
    system = _need_str(obj, "system", optional=True)
    user = instruction if not extra else f"{instruction}\n\n{extra}"
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _from_sharegpt(obj: dict) -> dict:
    turns = obj.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise _Unconvertible("conversations", "\"conversations\" must be a non-empty list of {from, value} turns")
    messages: list[dict[str, Any]] = []
    system = _need_str(obj, "system", optional=True)
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise _Unconvertible(f"conversations[{i}]", f"conversations[{i}] is not an object")
        speaker = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        role = _SHAREGPT_ROLES.get(str(speaker).lower()) if speaker is not None else None
        if role is None:
            raise _Unconvertible(f"conversations[{i}].from",
                                 f"conversations[{i}].from is {speaker!r}; known speakers are "
                                 f"{', '.join(sorted(_SHAREGPT_ROLES))} (tool turns need manual conversion)")
        if not isinstance(value, str):
            raise _Unconvertible(f"conversations[{i}].value", f"conversations[{i}].value must be a string")
        messages.append({"role": role, "content": value})
    out: dict[str, Any] = {"messages": messages}
    tools = obj.get("tools")
    if isinstance(tools, str):
        with contextlib.suppress(ValueError):
            tools = json.loads(tools)
    if isinstance(tools, list) and tools:
        out["tools"] = [t if isinstance(t, dict) and "function" in t else {"type": "function", "function": t}
                        for t in tools]
    return out


def _from_completion(obj: dict) -> dict:
    prompt = _need_str(obj, "prompt")
    completion = _need_str(obj, "completion")
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]}


_CONVERTERS: dict[str, Callable[[dict], dict]] = {
    "alpaca": _from_alpaca, "sharegpt": _from_sharegpt, "completion": _from_completion}


@contextlib.contextmanager
def _atomic_writer(path: Path) -> Iterator[Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            yield f
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _read_objects(path: Path) -> Iterator[tuple[int, Any, Issue | None]]:
    """(line number, parsed object or None, problem or None) for each non-blank line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            raw = raw.strip()
            if not raw:
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                code = "invalid_utf8" if isinstance(exc, UnicodeDecodeError) else "invalid_json"
                yield lineno, None, Issue(line=lineno, code=code, message=f"Skipped: {str(exc)[:120]}.")
                continue
            if not isinstance(obj, dict):
                yield lineno, None, Issue(line=lineno, code="not_an_object", message="Skipped: not a JSON object.")
                continue
            yield lineno, obj, None


def convert(source: str | os.PathLike[str], output: str | os.PathLike[str], *, from_format: SourceFormat,
            dedupe: bool = True) -> ConvertResult:
    """Convert ``source`` (alpaca, sharegpt or completion JSONL) into chat-format JSONL.

    Lines that cannot be converted are skipped and listed with their reason; exact
    duplicates (after conversion) are dropped when ``dedupe`` is true. Validate the
    result with :func:`finetune_sdk.data.validate`.

    Raises:
        ValueError: unknown ``from_format`` or ``source`` and ``output`` are the same file.
        FileNotFoundError: ``source`` does not exist.
    """
    if from_format not in _CONVERTERS:
        raise ValueError(f"from_format must be one of {', '.join(SOURCE_FORMATS)}, not {from_format!r}")
    src, dst = Path(source), Path(output)
    if not src.is_file():
        raise FileNotFoundError(f"No such file: {src}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError("output must differ from source (the source would be overwritten)")
    fn = _CONVERTERS[from_format]
    result = ConvertResult(output=dst)
    seen: set[bytes] = set()

    def skip(issue: Issue) -> None:
        result.skipped_count += 1
        if len(result.skipped) < _MAX_LISTED:
            result.skipped.append(issue)

    with _atomic_writer(dst) as out:
        for lineno, obj, problem in _read_objects(src):
            if problem is not None:
                skip(problem)
                continue
            try:
                converted = fn(obj)
            except _Unconvertible as exc:
                skip(Issue(line=lineno, code="unconvertible", path=exc.path, message=f"Skipped: {exc}."))
                continue
            line = json.dumps(converted, ensure_ascii=False)
            if dedupe:
                d = _digest(line.encode())
                if d in seen:
                    result.duplicates += 1
                    continue
                seen.add(d)
            out.write(line + "\n")
            result.written += 1
    return result


def deduplicate(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> ConvertResult:
    """Copy ``source`` to ``output`` without exact duplicate examples (JSON compared canonically)."""
    src, dst = Path(source), Path(output)
    if not src.is_file():
        raise FileNotFoundError(f"No such file: {src}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError("output must differ from source")
    result = ConvertResult(output=dst)
    seen: set[bytes] = set()
    with _atomic_writer(dst) as out:
        for _lineno, obj, problem in _read_objects(src):
            if problem is not None:
                result.skipped_count += 1
                if len(result.skipped) < _MAX_LISTED:
                    result.skipped.append(problem)
                continue
            d = _digest(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode())
            if d in seen:
                result.duplicates += 1
                continue
            seen.add(d)
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            result.written += 1
    return result


def split(source: str | os.PathLike[str], *, validation_fraction: float, seed: int = 0,
          train_output: str | os.PathLike[str] | None = None,
          validation_output: str | os.PathLike[str] | None = None) -> SplitResult:
    """Split a JSONL file into training and validation files, reproducibly.

    Exact duplicates are removed first, so no example lands in both files. The same
    ``seed`` always gives the same split. Defaults write ``NAME.train.jsonl`` and
    ``NAME.val.jsonl`` beside the source.

    Raises:
        ValueError: ``validation_fraction`` outside (0, 1), or too few examples to
            put at least one in each file.
        FileNotFoundError: ``source`` does not exist.
    """
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)) \
            or not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be between 0 and 1 (exclusive), not {validation_fraction!r}")
    src = Path(source)
    if not src.is_file():
        raise FileNotFoundError(f"No such file: {src}")
    stem = src.name[:-6] if src.name.endswith(".jsonl") else src.stem
    train_path = Path(train_output) if train_output else src.with_name(f"{stem}.train.jsonl")
    val_path = Path(validation_output) if validation_output else src.with_name(f"{stem}.val.jsonl")
    if len({src.resolve(), train_path.resolve(), val_path.resolve()}) != 3:
        raise ValueError("the source, training and validation paths must all differ")

    # Pass 1: which lines are first occurrences of a valid object.
    keep = array("I")
    seen: set[bytes] = set()
    duplicates = skipped = 0
    for lineno, obj, problem in _read_objects(src):
        if problem is not None:
            skipped += 1
            continue
        d = _digest(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode())
        if d in seen:
            duplicates += 1
            continue
        seen.add(d)
        keep.append(lineno)
    del seen
    n = len(keep)
    n_val = round(n * validation_fraction)
    if n < 2 or n_val < 1 or n_val >= n:
        raise ValueError(f"{src} has {n} unique example(s); a {validation_fraction:.0%} split would leave one "
                         f"file empty. Use a different fraction or more data.")
    chosen = set(random.Random(seed).sample(range(n), n_val))
    val_lines = {keep[i] for i in chosen}
    keep_lines = set(keep)
    del keep, chosen

    # Pass 2: copy each kept line, verbatim, to its file.
    n_train = n_v = 0
    with _atomic_writer(train_path) as tr, _atomic_writer(val_path) as va:
        with open(src, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if lineno not in keep_lines:
                    continue
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                text = raw.decode("utf-8").strip() + "\n"
                if lineno in val_lines:
                    va.write(text)
                    n_v += 1
                else:
                    tr.write(text)
                    n_train += 1
    return SplitResult(train=train_path, validation=val_path, train_examples=n_train, validation_examples=n_v,
                       duplicates_removed=duplicates, skipped_lines=skipped)
