"""The streaming dataset validator.

``validate(path)`` reads the file line by line (memory grows only by the per-example
token counts and hashes kept for statistics and duplicate detection: ~20 bytes stored,
~80 bytes at the peak of the final sort), never raises on bad content,
and returns a :class:`~finetune_sdk.types.DatasetReport` with every problem found: 1-based
line, JSON path, stable code, and how to fix it.

Large files are split at line boundaries and scanned by worker processes (tokenizing is
the bottleneck and tiktoken holds one core per process); the parent merges the partial
results, then runs the file-wide checks (mixed formats, duplicates, overlap with the
validation file, example count) and the cost estimate.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
import time
from array import array
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._secrets import get_logger
from ..types import DatasetReport, Distribution, Issue, Severity, TokenStats
from . import catalog
from .records import Context, check_example, detect_format, severity_of
from .rules import RULES, DatasetRules, rules_for
from .tokens import ChatTemplateCounter, TokenizerResolver, counter_for

_log = get_logger(__name__)

__all__ = ["validate", "ProgressCallback"]

#: progress(bytes_done, bytes_total)
ProgressCallback = Callable[[int, int], None]

_PARALLEL_MIN_BYTES = 8 * 1024 * 1024
_CHUNK_MIN_BYTES = 4 * 1024 * 1024
_FIRST_LINES_KEPT = 1000
_BOM = b"\xef\xbb\xbf"
_MAX_IMAGE_EXAMPLES = 50_000
_EXPECTED_FORMAT = {"supervised": ("chat", "completion"), "dpo": ("preference",), "reinforcement": ("chat",)}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int | float:
    # Valid JSON, but past Python's int-from-string digit limit: the value never matters here.
    try:
        return int(text)
    except ValueError:
        return float(text)


@dataclass
class _Options:
    model: str | None
    method: str | None
    rules: DatasetRules
    max_issues: int
    context_limit: int | None
    tokenizer: TokenizerResolver | None = None


@dataclass
class _Partial:
    """What one scan of a byte range found. Line numbers are relative to the range."""

    lines: int = 0
    errors: list = field(default_factory=list)  # (line, code, path, message)
    warnings: list = field(default_factory=list)
    error_counts: dict = field(default_factory=dict)
    warning_counts: dict = field(default_factory=dict)
    formats: dict = field(default_factory=dict)  # fmt -> [count, [first lines]]
    example_lines: array = field(default_factory=lambda: array("I"))
    total_tokens: array = field(default_factory=lambda: array("I"))
    assistant_tokens: array = field(default_factory=lambda: array("I"))
    messages: array = field(default_factory=lambda: array("I"))
    hashes: array = field(default_factory=lambda: array("Q"))
    image_examples: int = 0
    counter_name: str | None = None
    counter_exact: bool = True
    counter_note: str | None = None
    bytes_done: int = 0


class _Scanner:
    def __init__(self, options: _Options, counter: Any) -> None:
        self.o = options
        self.counter = counter
        self.ctx = Context(method=options.method, rules=options.rules)
        self.p = _Partial()
        self._loads = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int).decode

    def _issue(self, line: int, code: str, path: str, message: str) -> None:
        p = self.p
        if severity_of(code, self.o.rules) == "error":
            p.error_counts[code] = p.error_counts.get(code, 0) + 1
            if len(p.errors) < self.o.max_issues:
                p.errors.append((line, code, path, message))
        else:
            p.warning_counts[code] = p.warning_counts.get(code, 0) + 1
            if len(p.warnings) < self.o.max_issues:
                p.warnings.append((line, code, path, message))

    def line(self, lineno: int, raw: bytes) -> None:
        stripped = raw.strip()
        if not stripped:
            self._issue(lineno, "blank_line", "", "Blank line.")
            return
        lead = len(raw) - len(raw.lstrip())  # positions below count from the start of the line
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._issue(lineno, "invalid_utf8", "",
                        f"Byte {lead + exc.start + 1} of the line is not valid UTF-8 "
                        f"({stripped[exc.start:exc.start + 4]!r}); re-save the file as UTF-8.")
            return
        try:
            obj = self._loads(text)
        except json.JSONDecodeError as exc:
            self._issue(lineno, "invalid_json", "", f"Invalid JSON at column {lead + exc.colno}: {exc.msg}.")
            return
        except (ValueError, RecursionError) as exc:
            self._issue(lineno, "invalid_json", "", f"Invalid JSON: {str(exc)[:120]}.")
            return
        if not isinstance(obj, dict):
            kind = type(obj).__name__.replace("dict", "object").replace("list", "array")
            self._issue(lineno, "not_an_object", "", f"The line is a JSON {kind}; each line must be a JSON object.")
            return
        fmt = detect_format(obj)
        if fmt is None:
            keys = ", ".join(sorted(obj)[:6]) or "no keys"
            self._issue(lineno, "unknown_format", "",
                        f"The object ({keys}) matches no dataset format; use \"messages\" (chat), \"input\" + "
                        f"\"preferred_output\" + \"non_preferred_output\" (preference) or \"prompt\" + "
                        f"\"completion\".")
            return
        p = self.p
        entry = p.formats.get(fmt)
        if entry is None:
            entry = p.formats[fmt] = [0, []]
        entry[0] += 1
        if len(entry[1]) < _FIRST_LINES_KEPT:
            entry[1].append(lineno)

        found: list = []
        try:
            images = check_example(obj, fmt, self.ctx, found)
        except RecursionError:
            found.append(("invalid_json", "", "The example is nested too deeply to check."))
            images = 0
        for code, path, message in found:
            self._issue(lineno, code, path, message)
        if images:
            p.image_examples += 1

        try:
            counts = self.counter.count(obj, fmt)
            total, assistant = counts.total, counts.assistant
        except Exception as exc:  # never let a tokenizer quirk crash validation
            _log.debug("token counting failed on line %d: %s", lineno, exc)
            total = assistant = 0
        limit = self.o.context_limit
        if limit is not None and total > limit:
            self._issue(lineno, "example_too_long", "",
                        f"About {total:,} tokens, over the {limit:,}-token training limit of {self.o.model}; "
                        f"the provider truncates it from the end.")
        p.example_lines.append(lineno)
        p.total_tokens.append(min(total, 0xFFFFFFFF))
        p.assistant_tokens.append(min(assistant, 0xFFFFFFFF))
        msgs = obj.get("messages") if fmt == "chat" else (obj.get("input") or {}).get("messages") \
            if fmt == "preference" and isinstance(obj.get("input"), dict) else None
        p.messages.append(len(msgs) if isinstance(msgs, list) else 0)
        p.hashes.append(int.from_bytes(hashlib.blake2b(stripped, digest_size=8).digest(), "little"))

    def finish(self) -> _Partial:
        p = self.p
        p.counter_name = self.counter.name
        p.counter_exact = self.counter.exact
        p.counter_note = self.counter.note
        return p


def _scan_range(path: str, start: int, end: int, options: _Options, counter: Any = None,
                progress: ProgressCallback | None = None, total_bytes: int = 0) -> _Partial:
    scanner = _Scanner(options, counter if counter is not None else counter_for(options.model, options.tokenizer))
    lineno = 0
    pos = start
    next_report = start + (1 << 22)
    with open(path, "rb") as f:
        f.seek(start)
        for raw in f:
            if pos == 0 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
                pos += len(_BOM)
            lineno += 1
            pos += len(raw)
            scanner.line(lineno, raw)
            if progress is not None and pos >= next_report:
                progress(pos, total_bytes)
                next_report = pos + (1 << 22)
            if pos >= end:
                break
    if progress is not None:
        progress(pos, total_bytes)
    partial = scanner.finish()
    partial.lines = lineno
    partial.bytes_done = pos - start
    return partial


def _boundaries(path: str, size: int, parts: int) -> list[tuple[int, int]]:
    """Split [0, size) into ``parts`` ranges that start at line starts."""
    cuts = [0]
    with open(path, "rb") as f:
        for i in range(1, parts):
            target = size * i // parts
            if target <= cuts[-1]:
                continue
            f.seek(target - 1)
            f.readline()  # finish the line that contains target-1
            pos = f.tell()
            if cuts[-1] < pos < size:
                cuts.append(pos)
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _mp_context() -> Any:
    # fork shares the already-loaded encoding with the workers; never fork a threaded process.
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def _scan_file(path: str, options: _Options, workers: int | None,
               progress: ProgressCallback | None) -> list[_Partial]:
    size = os.path.getsize(path)
    counter = counter_for(options.model, options.tokenizer)
    n = workers or _default_workers()
    # Chat templates run in Python per example and their resolvers live in this process.
    if n <= 1 or size < _PARALLEL_MIN_BYTES or isinstance(counter, ChatTemplateCounter):
        return [_scan_range(path, 0, size, options, counter, progress, size)]
    parts = max(n, min(n * 4, size // _CHUNK_MIN_BYTES))
    ranges = _boundaries(path, size, parts)
    results: dict[int, _Partial] = {}
    done = 0
    with ProcessPoolExecutor(max_workers=n, mp_context=_mp_context()) as pool:
        futures = {pool.submit(_scan_range, path, a, b, options): i for i, (a, b) in enumerate(ranges)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            done += results[i].bytes_done
            if progress is not None:
                progress(done, size)
    return [results[i] for i in range(len(ranges))]


# --------------------------------------------------------------------------- merging

def _pack_keys(partials: list[_Partial]) -> list[int]:
    """(hash << 32 | global line) for every example, sorted: duplicates become neighbours."""
    keys: list[int] = []
    offset = 0
    for p in partials:
        keys.extend((h << 32) | (offset + ln) for h, ln in zip(p.hashes, p.example_lines))
        offset += p.lines
    keys.sort()
    return keys


def _sorted_hashes(partials: list[_Partial]) -> list[int]:
    hashes: list[int] = []
    for p in partials:
        hashes.extend(p.hashes)
    hashes.sort()
    return hashes


class _Merger:
    def __init__(self, options: _Options) -> None:
        self.o = options
        self.errors: list[tuple] = []
        self.warnings: list[tuple] = []
        self.error_counts: dict[str, int] = {}
        self.warning_counts: dict[str, int] = {}
        self.truncated = False

    def add(self, line: int | None, code: str, path: str, message: str) -> None:
        if severity_of(code, self.o.rules) == "error":
            self.error_counts[code] = self.error_counts.get(code, 0) + 1
            self._keep(self.errors, (line, code, path, message))
        else:
            self.warning_counts[code] = self.warning_counts.get(code, 0) + 1
            self._keep(self.warnings, (line, code, path, message))

    def _keep(self, items: list[tuple], item: tuple) -> None:
        # Memory stays bounded however many issues there are: keep the first max_issues by line.
        items.append(item)
        if len(items) > 2 * self.o.max_issues:
            items.sort(key=lambda t: (t[0] if t[0] is not None else -1))
            del items[self.o.max_issues:]
            self.truncated = True

    def absorb(self, partials: list[_Partial]) -> None:
        offset = 0
        for p in partials:
            for found, into in ((p.errors, self.errors), (p.warnings, self.warnings)):
                into.extend((ln + offset, c, pa, m) for ln, c, pa, m in found)
            for counted, totals in ((p.error_counts, self.error_counts), (p.warning_counts, self.warning_counts)):
                for code, n in counted.items():
                    totals[code] = totals.get(code, 0) + n
            if len(p.errors) < sum(p.error_counts.values()) or len(p.warnings) < sum(p.warning_counts.values()):
                self.truncated = True
            offset += p.lines

    def issues(self, items: list[tuple], severity: Severity) -> list[Issue]:
        items.sort(key=lambda t: (t[0] if t[0] is not None else -1))
        if len(items) > self.o.max_issues:
            self.truncated = True
            items = items[: self.o.max_issues]
        return [Issue(line=ln, code=c, path=pa, message=m, severity=severity) for ln, c, pa, m in items]


def _file_checks(m: _Merger, partials: list[_Partial], examples: int, options: _Options,
                 is_validation_file: bool) -> str | None:
    formats: dict[str, list] = {}
    offset = 0
    for p in partials:
        for fmt, (count, first) in p.formats.items():
            entry = formats.setdefault(fmt, [0, []])
            entry[0] += count
            entry[1].extend(offset + ln for ln in first)
        offset += p.lines
    if not formats:
        m.add(None, "empty_file", "", "The file holds no examples; write one JSON object per line.")
        return None
    dominant = max(formats, key=lambda f: (formats[f][0], -min(formats[f][1])))
    for fmt, (count, first) in sorted(formats.items()):
        if fmt == dominant:
            continue
        shown = first[:_FIRST_LINES_KEPT]
        for ln in shown:
            m.add(ln, "mixed_formats", "",
                  f"This example is in {fmt} format but the file is in {dominant} format "
                  f"({formats[dominant][0]:,} examples); keep one format per file.")
        for _ in range(count - len(shown)):  # counted, not listed
            m.error_counts["mixed_formats"] = m.error_counts.get("mixed_formats", 0) + 1
            m.truncated = True

    method = options.method
    if method is not None and dominant not in _EXPECTED_FORMAT.get(method, (dominant,)):
        need = " or ".join(_EXPECTED_FORMAT[method])
        m.add(None, "method_format_mismatch", "",
              f"The file is in {dominant} format, but method {method!r} needs the {need} format.")
    facts = catalog.lookup(options.model)
    if facts is not None:
        if facts.legacy_completions and dominant != "completion":
            m.add(None, "format_not_supported_by_model", "",
                  f"{options.model} is a legacy completions model: it takes prompt/completion lines, not {dominant}.")
        elif not facts.legacy_completions and dominant == "completion":
            m.add(None, "format_not_supported_by_model", "",
                  f"{options.model} is a chat model: convert prompt/completion lines to chat with "
                  f"`finetune convert IN OUT --from completion`.")
        wanted = method or ("dpo" if dominant == "preference" else None)
        if wanted and wanted not in facts.methods:
            m.add(None, "method_not_supported_by_model", "",
                  f"{options.model} does not support {wanted} fine-tuning (it supports: {', '.join(facts.methods)}).")
    rules = options.rules
    if dominant not in rules.formats:
        m.add(None, "format_not_supported_by_provider", "",
              f"The file is in {dominant} format, which {rules.label} does not accept (it takes: "
              f"{', '.join(rules.formats)}).")
    if 0 < examples < rules.min_examples and not is_validation_file:
        who = f"{rules.label} requires" if rules.service in RULES else \
            ("hosted providers require" if rules.hosted else "hosted providers would require")
        m.add(None, "too_few_examples", "",
              f"Only {examples} example(s); {who} at least {rules.min_examples}"
              + (" (50-100 recommended)." if rules.min_examples >= 10 else "."))
    if rules.max_examples is not None and examples > rules.max_examples and not is_validation_file:
        m.add(None, "too_many_examples", "",
              f"{examples:,} examples; {rules.label} accepts at most {rules.max_examples:,} per file.")
    images = sum(p.image_examples for p in partials)
    if images > _MAX_IMAGE_EXAMPLES:
        m.add(None, "too_many_image_examples", "",
              f"{images:,} examples contain images; at most {_MAX_IMAGE_EXAMPLES:,} are allowed per file.")
    return dominant


def _duplicates(m: _Merger, partials: list[_Partial]) -> None:
    keys = _pack_keys(partials)
    mask = (1 << 32) - 1
    prev_hash = None
    first_line = 0
    for key in keys:
        h = key >> 32
        line = key & mask
        if h == prev_hash:
            m.add(line, "duplicate_example", "", f"Duplicate of line {first_line}.")
        else:
            prev_hash = h
            first_line = line
    del keys


def _overlap(m: _Merger, partials: list[_Partial], train_hashes: list[int]) -> None:
    from bisect import bisect_left

    offset = 0
    for p in partials:
        for h, ln in zip(p.hashes, p.example_lines):
            i = bisect_left(train_hashes, h)
            if i < len(train_hashes) and train_hashes[i] == h:
                m.add(offset + ln, "train_validation_overlap", "",
                      "This validation example also appears in the training file.")
        offset += p.lines


def _token_stats(partials: list[_Partial], options: _Options) -> TokenStats:
    total = array("I")
    assistant = array("I")
    messages = array("I")
    for p in partials:
        total.extend(p.total_tokens)
        assistant.extend(p.assistant_tokens)
        messages.extend(p.messages)
    first = partials[0]
    notes = {p.counter_note for p in partials if p.counter_note}
    limit = options.context_limit
    return TokenStats(
        encoding=first.counter_name,
        exact=all(p.counter_exact for p in partials),
        note=" ".join(sorted(notes)) or None,
        examples_counted=len(total),
        total_tokens=sum(total),
        assistant_tokens=sum(assistant),
        per_example=Distribution.of(total),
        assistant_per_example=Distribution.of(assistant),
        messages_per_example=Distribution.of(messages) if any(messages) else Distribution(),
        context_limit=limit,
        over_limit=sum(1 for t in total if limit is not None and t > limit),
    )


def _billing_tokens(partials: list[_Partial], limit: int | None) -> int:
    if limit is None:
        return sum(sum(p.total_tokens) for p in partials)
    return sum(min(limit, t) for p in partials for t in p.total_tokens)


def _report(path: Path, options: _Options, workers: int | None, progress: ProgressCallback | None,
            train_hashes: list[int] | None = None, n_epochs: int | None = None) -> tuple[DatasetReport, list[_Partial]]:
    from .estimate import estimate_tokens

    started = time.perf_counter()
    notes: list[str] = []
    partials = _scan_file(str(path), options, workers, progress)
    m = _Merger(options)
    m.absorb(partials)
    examples = sum(len(p.example_lines) for p in partials)
    fmt = _file_checks(m, partials, examples, options, is_validation_file=train_hashes is not None)
    _duplicates(m, partials)
    if train_hashes is not None:
        _overlap(m, partials, train_hashes)
    tokens = _token_stats(partials, options) if examples else None
    if tokens is not None and tokens.note:
        notes.append(tokens.note)
    if options.model is None:
        notes.append("No model given: the context-limit check was skipped.")
    elif options.context_limit is None:
        notes.append(f"The training context limit of {options.model} is not known; long examples were not flagged.")
    estimate = None
    if examples and train_hashes is None:  # validation tokens are not billed
        estimate = estimate_tokens(_billing_tokens(partials, options.context_limit), examples,
                                   model=options.model, n_epochs=n_epochs)
    errors = m.issues(m.errors, "error")
    warnings = m.issues(m.warnings, "warning")
    report = DatasetReport(
        path=str(path), format=fmt, method=options.method, model=options.model,  # type: ignore[arg-type]
        lines=sum(p.lines for p in partials), examples=examples,
        valid=not m.error_counts, errors=errors, warnings=warnings,
        error_counts=dict(sorted(m.error_counts.items())), warning_counts=dict(sorted(m.warning_counts.items())),
        truncated=m.truncated, tokens=tokens, estimate=estimate, notes=notes,
        elapsed_seconds=round(time.perf_counter() - started, 3),
    )
    return report, partials


def validate(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    method: str | None = None,
    validation_file: str | os.PathLike[str] | None = None,
    hosted: bool | None = None,
    n_epochs: int | None = None,
    workers: int | None = None,
    max_issues: int = 1000,
    progress: ProgressCallback | None = None,
    tokenizer: TokenizerResolver | None = None,
    images: bool = True,
    rules: DatasetRules | None = None,
) -> DatasetReport:
    """Validate a JSONL fine-tuning dataset without ever raising on its content.

    Args:
        path: the JSONL file.
        model: the base model to train (sets the tokenizer, the context limit, the
            price and the format/method rules). ``None`` checks the format only.
        method: ``"supervised"``, ``"dpo"`` or ``"reinforcement"``; ``None`` infers it
            from the format.
        validation_file: a second JSONL file; validated too (``report.validation``)
            and checked for overlap with the training file.
        hosted: whether the target is a hosted provider (OpenAI/Azure), which makes
            the 10-example minimum and reserved special tokens errors. Defaults to
            True for known OpenAI/Azure models.
        n_epochs: epochs for the cost estimate; ``None`` uses the providers' "auto"
            heuristic.
        workers: processes for large files (default: the usable CPU cores).
        max_issues: at most this many errors and this many warnings are listed
            (all are counted in ``error_counts`` / ``warning_counts``).
        progress: ``progress(bytes_done, bytes_total)``, called as the scan advances.
        tokenizer: ``tokenizer(model) -> (tokenizer, label) | None`` for models that are
            neither OpenAI models nor model directories (a local backend's aliases);
            ``finetune_sdk.validate`` passes the provider registry's.
        rules: a service's rules (``finetune_sdk.data.rules.RULES[name]``: formats, example
            counts, images, ...); they replace ``hosted`` and ``images``. Providers give
            theirs through ``Provider.dataset_rules()``.
        images: whether the target can train on images. ``False`` for the local trainer,
            which trains text-only models: every example with an image part is then an
            error (``images_not_supported_by_model``) on its line, so that no image is
            ever dropped without a word.

    Returns:
        A :class:`DatasetReport`; ``report.ok`` is True when there are no errors.

    Raises:
        ValueError: for bad arguments (unknown method, max_issues or workers < 1).
        FileNotFoundError: when a file does not exist, so that a typo in a path is
            never mistaken for an empty dataset. (Bad *content* is always reported.)
    """
    if method is not None and method not in _EXPECTED_FORMAT:
        raise ValueError(f"method must be one of {', '.join(_EXPECTED_FORMAT)}, not {method!r}")
    if max_issues < 1:
        raise ValueError("max_issues must be at least 1")
    if workers is not None and workers < 1:
        raise ValueError("workers must be at least 1")
    if n_epochs is not None and (isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1):
        raise ValueError(f"n_epochs must be a positive integer or None (auto), not {n_epochs!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"No such dataset file: {p}" + (" (it is a directory)" if p.is_dir() else ""))
    facts = catalog.lookup(model)
    if rules is None:
        # A known model of an open-model service brings that service's rules; OpenAI models
        # the generic hosted ones (OpenAI's and Azure's limits are the same).
        service = facts.service if facts is not None and facts.service != "openai" and hosted is not False else None
        rules = rules_for(service, hosted=facts is not None if hosted is None else hosted, images=images)
    options = _Options(model=model, method=method, rules=rules, max_issues=max_issues,
                       context_limit=facts.context_limit if facts else None, tokenizer=tokenizer)
    report, partials = _report(p, options, workers, progress, n_epochs=n_epochs)
    if validation_file is not None:
        v = Path(validation_file)
        if not v.is_file():
            raise FileNotFoundError(f"No such validation file: {v}")
        train_hashes = _sorted_hashes(partials)
        report.validation, _ = _report(v, options, workers, progress, train_hashes=train_hashes)
    return report
