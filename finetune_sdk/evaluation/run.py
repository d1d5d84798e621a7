"""Running an evaluation: every candidate answers every example, in parallel, greedily.

Requests go through the candidates' clients (so through the one retry layer); a request
that still fails is recorded as that example's failure, never dropped. Answers are
appended to a JSONL file as they arrive, so an interrupted run loses nothing it already
paid for. Then every scorer scores every answer, and the report gets its intervals.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.catalog import inference_price
from ..errors import BadRequestError, ConfigurationError, FineTuneError
from .data import EvalExample, load_eval_examples, pick_shots, with_shots
from .report import AnswerRecord, CandidateReport, Evaluation, ScoreReport
from .scorers import Scorer, make_scorer
from .stats import bootstrap_mean, paired_difference, percentile

if TYPE_CHECKING:  # pragma: no cover
    from ..client import FineTuneClient

__all__ = ["evaluate", "parse_target"]


def parse_target(spec: str) -> tuple[str, str | None]:
    """``MODEL@PROFILE`` -> (model, profile); a model without ``@`` uses the default profile."""
    model, sep, profile = spec.rpartition("@")
    if not sep:
        return spec, None
    if not model or not profile or "/" in profile:
        raise ConfigurationError(f"{spec!r}: write a candidate as MODEL or MODEL@PROFILE")
    return model, profile


@dataclass
class _Candidate:
    report: CandidateReport
    client: FineTuneClient
    shots: list[EvalExample]
    greedy: bool = True  # send temperature=0 (turned off if the model refuses it)

    def messages(self, example: EvalExample) -> list[dict[str, Any]]:
        return with_shots(example.prompt, self.shots) if self.shots else example.prompt


class _Clients:
    """One client per profile, made on first use and closed at the end."""

    def __init__(self, default: FineTuneClient | None, config: str | os.PathLike[str] | None) -> None:
        self.default, self.config = default, config
        self.made: dict[str | None, FineTuneClient] = {}

    def get(self, profile: str | None) -> FineTuneClient:
        if profile is None and self.default is not None:
            return self.default
        if profile not in self.made:
            from ..client import FineTuneClient

            self.made[profile] = FineTuneClient.from_config(profile, config=self.config)
        return self.made[profile]

    def close(self) -> None:
        for client in self.made.values():
            client.close()


class _Sink:
    """Answers appended to a JSONL file as they arrive (thread-safe)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _ask(candidate: _Candidate, example: EvalExample, max_tokens: int) -> AnswerRecord:
    started = time.perf_counter()
    try:
        try:
            greedy: dict[str, Any] = {"temperature": 0} if candidate.greedy else {}
            reply = candidate.client.chat(candidate.report.model, candidate.messages(example),
                                          max_tokens=max_tokens, **greedy)
        except BadRequestError as exc:
            if not candidate.greedy or "temperature" not in str(exc).lower():
                raise
            candidate.greedy = False  # e.g. reasoning models: sampling is theirs to choose
            reply = candidate.client.chat(candidate.report.model, candidate.messages(example), max_tokens=max_tokens)
    except FineTuneError as exc:
        return AnswerRecord(line=example.line, answer=None, error=str(exc), latency=time.perf_counter() - started)
    return AnswerRecord(line=example.line, answer=(reply.content or "").strip(),
                        prompt_tokens=reply.usage.prompt_tokens, completion_tokens=reply.usage.completion_tokens,
                        latency=time.perf_counter() - started)


def _progress(show: bool, total: int, what: str) -> tuple[Callable[[], None], Callable[[], None]]:
    if not show:
        return (lambda: None), (lambda: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=False)
    task = bar.add_task(what, total=total)
    bar.start()
    lock = threading.Lock()

    def advance() -> None:
        with lock:
            bar.advance(task)

    return advance, bar.stop


def _summarise(candidates: list[_Candidate], examples: list[EvalExample], scorers: list[Scorer], seed: int) -> None:
    first = candidates[0].report
    for c in candidates:
        r = c.report
        ok = [a for a in r.answers if a.error is None]
        if ok:
            r.prompt_tokens = sum(a.prompt_tokens for a in ok) / len(ok)
            r.completion_tokens = sum(a.completion_tokens for a in ok) / len(ok)
            latencies = [a.latency for a in ok]
            r.latency_p50, r.latency_p95 = percentile(latencies, 50), percentile(latencies, 95)
        price = inference_price(r.model, fine_tuned=c.client.provider.is_fine_tuned(r.model))
        if price is not None and r.prompt_tokens is not None and r.completion_tokens is not None:
            r.cost_per_1000 = round((r.prompt_tokens * price.prompt + r.completion_tokens * price.completion)
                                    / 1_000_000 * 1000, 6)
            r.currency, r.cost_source = price.currency, f"{price.source} ({price.as_of})"
        for scorer in scorers:
            values = [a.scores[scorer.name] for a in r.answers if a.scores.get(scorer.name) is not None]
            failures = sum(1 for a in ok if a.scores.get(scorer.name) is None)
            report = ScoreReport(scorer.name, bootstrap_mean(values, seed=seed),  # type: ignore[arg-type]
                                 len(values), failures)
            if r is not first:
                pairs = [(a.scores.get(scorer.name), b.scores.get(scorer.name))
                         for a, b in zip(r.answers, first.answers)]
                both = [(x, y) for x, y in pairs if x is not None and y is not None]
                if both:
                    report.diff = paired_difference([x for x, _ in both], [y for _, y in both], seed=seed)
            r.scores[scorer.name] = report


def evaluate(data: str | os.PathLike[str] | Iterable[dict[str, Any]], models: Sequence[str], *,
             client: FineTuneClient | None = None, config: str | os.PathLike[str] | None = None,
             few_shot: int = 0, shots: str | os.PathLike[str] | Iterable[dict[str, Any]] | None = None,
             scorers: Sequence[str] = ("exact",), concurrency: int = 8, max_tokens: int = 256,
             answers: str | os.PathLike[str] | None = None, capture: str | os.PathLike[str] | None = None,
             progress: bool | None = None, seed: int = 0, limit: int | None = None) -> Evaluation:
    """Answer every example with every candidate and score the answers.

    Args:
        data: a JSONL file (or a list) of chat examples; each one's last assistant message
            is the expected answer.
        models: candidates, ``MODEL`` (the default profile, or ``client``'s provider) or
            ``MODEL@PROFILE``; the first is the reference the others are compared with.
        few_shot: add, for each base (not fine-tuned) candidate, a candidate answering
            with this many examples of ``shots`` in its prompt — never evaluated ones.
        scorers: ``exact``, ``json``, ``contains``, ``similarity``, ``python:module:function``,
            ``judge:MODEL[@PROFILE]``.
        answers: write every answer here as it arrives (JSONL); nothing is lost if the
            run stops half-way.
        capture: write the first candidate's answers as a golden set (each prompt with
            that answer as the expected reply), to keep a model's behaviour before it is
            retired.

    Raises:
        DatasetError: an example without an expected answer (its line is named).
        ConfigurationError: an unknown profile, scorer or candidate syntax.
    """
    if not models:
        raise ValueError("name at least one model to evaluate")
    if concurrency < 1 or max_tokens < 1 or few_shot < 0:
        raise ValueError("concurrency and max_tokens must be at least 1, few_shot at least 0")
    examples = load_eval_examples(data, limit=limit)
    clients = _Clients(client, config)
    try:
        candidates = _candidates(models, clients, examples, few_shot, shots, seed)
        judge_clients = clients

        def judge(target: str, messages: list[dict[str, Any]]) -> str:
            model, profile = parse_target(target)
            reply = judge_clients.get(profile).chat(model, messages, temperature=0, max_tokens=8)
            return reply.content or ""

        scoring = [make_scorer(s, judge=judge) for s in scorers]
        sink = _Sink(Path(answers) if answers is not None else None)
        from ..waiting import progress_enabled

        show = progress_enabled(progress)
        advance, stop = _progress(show, len(candidates) * len(examples), "answering")
        try:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                def run(job: tuple[_Candidate, int]) -> None:
                    cand, i = job
                    record = _ask(cand, examples[i], max_tokens)
                    cand.report.answers[i] = record
                    sink.write({"candidate": cand.report.label, "model": cand.report.model,
                                "profile": cand.report.profile, "shots": cand.report.shots,
                                "line": record.line, "answer": record.answer, "error": record.error,
                                "prompt_tokens": record.prompt_tokens,
                                "completion_tokens": record.completion_tokens, "latency": record.latency})
                    advance()

                for c in candidates:
                    c.report.answers = [AnswerRecord(line=e.line, answer=None, error="not answered")
                                        for e in examples]
                list(pool.map(run, [(c, i) for c in candidates for i in range(len(examples))]))
                _score(pool, candidates, examples, scoring)
        finally:
            stop()
        _summarise(candidates, examples, scoring, seed)
        if capture is not None:
            _capture(Path(capture), candidates[0], examples)
        return Evaluation(examples=examples, candidates=[c.report for c in candidates],
                          scorers=[s.name for s in scoring], answers_path=sink.path)
    finally:
        clients.close()


def _candidates(models: Sequence[str], clients: _Clients, examples: list[EvalExample], few_shot: int,
                shots: str | os.PathLike[str] | Iterable[dict[str, Any]] | None, seed: int) -> list[_Candidate]:
    out = []
    pool = load_eval_examples(shots) if shots is not None else None
    if few_shot and pool is None:
        raise ConfigurationError("few-shot candidates need shots: pass shots=PATH (examples never come from the "
                                 "evaluated data)")
    for spec in models:
        model, profile = parse_target(spec)
        client = clients.get(profile)
        out.append(_Candidate(CandidateReport(model, profile, 0), client, []))
        if few_shot and pool is not None and not client.provider.is_fine_tuned(model):
            picked = pick_shots(pool, few_shot, examples, seed=seed)
            out.append(_Candidate(CandidateReport(model, profile, few_shot), client, picked))
    return out


def _score(pool: ThreadPoolExecutor, candidates: list[_Candidate], examples: list[EvalExample],
           scorers: list[Scorer]) -> None:
    def one(job: tuple[AnswerRecord, EvalExample, Scorer]) -> None:
        record, example, scorer = job
        try:
            record.scores[scorer.name] = scorer(record.answer or "", example.expected, example.as_dict())
        except Exception:  # user code or a judge failing: a scorer failure, not a zero and not a crash
            record.scores[scorer.name] = None

    jobs = [(rec, ex, s) for c in candidates for rec, ex in zip(c.report.answers, examples) if rec.error is None
            for s in scorers]
    list(pool.map(one, jobs))


def _capture(path: Path, candidate: _Candidate, examples: list[EvalExample]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record, example in zip(candidate.report.answers, examples):
            if record.error is None and record.answer is not None:
                messages = [*example.prompt, {"role": "assistant", "content": record.answer}]
                f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
