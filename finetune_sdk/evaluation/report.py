"""The evaluation report: per candidate, scores with intervals, tokens, latency, cost,
failures — as an object, a stable JSON document, and a self-contained HTML page."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import EvalExample
from .stats import Interval

__all__ = ["AnswerRecord", "ScoreReport", "CandidateReport", "Evaluation"]


@dataclass
class AnswerRecord:
    """One candidate's answer to one example (or the error that replaced it)."""

    line: int
    answer: str | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    scores: dict[str, float | None] = field(default_factory=dict)


@dataclass
class ScoreReport:
    name: str
    mean: Interval | None  # over the answers the scorer could score
    n: int
    scorer_failures: int
    diff: Interval | None = None  # paired difference to the first candidate, same examples

    def to_json(self) -> dict[str, Any]:
        def trio(i: Interval | None) -> dict[str, float] | None:
            return None if i is None else {"mean": i.mean, "low": i.low, "high": i.high}

        return {**(trio(self.mean) or {"mean": None, "low": None, "high": None}), "n": self.n,
                "scorer_failures": self.scorer_failures, "diff_to_first": trio(self.diff)}


@dataclass
class CandidateReport:
    model: str
    profile: str | None
    shots: int
    answers: list[AnswerRecord] = field(default_factory=list)
    scores: dict[str, ScoreReport] = field(default_factory=dict)
    prompt_tokens: float | None = None
    completion_tokens: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None
    cost_per_1000: float | None = None
    currency: str = "USD"
    cost_source: str | None = None

    @property
    def label(self) -> str:
        where = f"@{self.profile}" if self.profile else ""
        return f"{self.model}{where}" + (f" + {self.shots} shots" if self.shots else "")

    @property
    def failures(self) -> int:
        return sum(1 for a in self.answers if a.error is not None)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "profile": self.profile, "shots": self.shots,
                "scores": {name: s.to_json() for name, s in self.scores.items()},
                "tokens": {"prompt_per_request": self.prompt_tokens, "completion_per_request": self.completion_tokens},
                "latency": {"p50_seconds": self.latency_p50, "p95_seconds": self.latency_p95},
                "cost": {"per_1000_requests": self.cost_per_1000, "currency": self.currency,
                         "source": self.cost_source},
                "failures": self.failures}


def _pct(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.0%}"


def _num(x: float | None, fmt: str = "{:.0f}") -> str:
    return "—" if x is None else fmt.format(x)


@dataclass
class Evaluation:
    """What :func:`~finetune_sdk.evaluation.evaluate` found. The first candidate is the
    reference every other one is compared with."""

    examples: list[EvalExample]
    candidates: list[CandidateReport]
    scorers: list[str]
    answers_path: Path | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The stable document ``finetune evaluate --json`` prints (docs/cli.md)."""
        return {"examples": len(self.examples), "scorers": self.scorers,
                "candidates": [c.to_json() for c in self.candidates]}

    def candidate(self, label_or_model: str) -> CandidateReport:
        for c in self.candidates:
            if label_or_model in (c.label, c.model):
                return c
        raise KeyError(label_or_model)

    def summary(self) -> str:
        """One line per candidate: each score with its interval, tokens per request, cost."""
        lines = []
        for c in self.candidates:
            parts = []
            for name, s in c.scores.items():
                if s.mean is None:
                    parts.append(f"{name} —")
                    continue
                text = f"{name} {s.mean.mean:.0%} [{s.mean.low:.0%}, {s.mean.high:.0%}]"
                if s.diff is not None:
                    text += f" ({s.diff.mean:+.0%} [{s.diff.low:+.0%}, {s.diff.high:+.0%}] vs first)"
                parts.append(text)
            tokens = c.prompt_tokens + c.completion_tokens if c.prompt_tokens is not None and \
                c.completion_tokens is not None else None
            parts.append(f"{_num(tokens)} tokens/request")
            if c.cost_per_1000 is not None:
                parts.append(f"{c.cost_per_1000:.4f} {c.currency}/1,000 requests")
            if c.failures:
                parts.append(f"{c.failures} failed")
            lines.append(f"{c.label}: " + "; ".join(parts))
        return "\n".join(lines)

    # ------------------------------------------------------------------ HTML
    def _chart(self) -> str:
        """An inline SVG: the first scorer's mean per candidate, with its 95% interval."""
        if not self.scorers:
            return ""
        name = self.scorers[0]
        rows = [(c.label, c.scores.get(name)) for c in self.candidates]
        bar_h, gap, left, width = 22, 10, 260, 360
        height = len(rows) * (bar_h + gap) + 30
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" height="{height}" '
                 f'role="img" aria-label="{html.escape(name)} per candidate">',
                 f'<text x="{left}" y="14" font-size="12">{html.escape(name)} (mean, 95% interval)</text>']
        for i, (label, s) in enumerate(rows):
            y = 24 + i * (bar_h + gap)
            parts.append(f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end">'
                         f'{html.escape(label[:40])}</text>')
            if s is None or s.mean is None:
                continue
            parts.append(f'<rect x="{left}" y="{y}" width="{width * s.mean.mean:.1f}" height="{bar_h}" '
                         f'fill="#4c78a8"/>')
            x0, x1 = left + width * s.mean.low, left + width * s.mean.high
            mid = y + bar_h / 2
            parts.append(f'<line x1="{x0:.1f}" y1="{mid}" x2="{x1:.1f}" y2="{mid}" stroke="#222" stroke-width="2"/>')
            parts.append(f'<text x="{left + width * s.mean.mean + 4:.1f}" y="{y + 15}" font-size="11">'
                         f'{s.mean.mean:.0%}</text>')
        parts.append("</svg>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(s)}</th>" for s in self.scorers)
        rows = []
        for c in self.candidates:
            cells = []
            for name in self.scorers:
                s = c.scores.get(name)
                if s is None or s.mean is None:
                    cells.append("<td>—</td>")
                    continue
                diff = f"<br><small>{s.diff.mean:+.0%} [{s.diff.low:+.0%}, {s.diff.high:+.0%}]</small>" \
                    if s.diff is not None else ""
                cells.append(f"<td>{s.mean.mean:.0%} <small>[{s.mean.low:.0%}, {s.mean.high:.0%}]</small>{diff}</td>")
            cost = "—" if c.cost_per_1000 is None else f"{c.cost_per_1000:.4f} {html.escape(c.currency)}"
            rows.append(f"<tr><th style='text-align:left'>{html.escape(c.label)}</th>{''.join(cells)}"
                        f"<td>{_num(c.prompt_tokens)} + {_num(c.completion_tokens)}</td>"
                        f"<td>{_num(c.latency_p50, '{:.2f}')} / {_num(c.latency_p95, '{:.2f}')} s</td>"
                        f"<td>{cost}</td><td>{c.failures}</td></tr>")
        table = (f"<table><caption>{len(self.examples)} examples; intervals are 95% bootstrap; the second "
                 f"line of a score is its paired difference to the first candidate</caption>"
                 f"<tr><th>candidate</th>{head}<th>tokens/request (prompt + completion)</th>"
                 f"<th>latency p50 / p95</th><th>cost / 1,000 requests</th><th>failed</th></tr>"
                 f"{''.join(rows)}</table>")
        return self._chart() + table

    def write_html(self, path: str | Path) -> Path:
        """A self-contained report (no scripts, no external resources)."""
        out = Path(path)
        style = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}caption{text-align:left;"
                 "padding:4px 0}")
        doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>finetune evaluate</title>"
               f"<style>{style}</style></head><body><h1>Evaluation</h1>{self._repr_html_()}"
               f"<pre>{html.escape(json.dumps(self.to_json_dict(), indent=1))}</pre></body></html>")
        out.write_text(doc, encoding="utf-8")
        return out
