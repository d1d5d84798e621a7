"""Training metrics in one shape for every provider: parse, merge, export, plot.

Sources: metrics events (``data`` keys of the OpenAI API), and the result CSV, whose
columns differ between OpenAI (``train_accuracy``, ``valid_mean_token_accuracy``) and
Azure (``train_mean_token_accuracy``, ``validation_mean_token_accuracy``, ``full_valid_*``):
columns are matched by name, never by position.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .types import Event, MetricPoint

__all__ = ["Metrics", "point_from_dict", "parse_results_csv", "points_from_events", "merge_points", "to_results_csv",
           "COLUMN_ALIASES"]

#: CSV / event-data names -> MetricPoint fields.
COLUMN_ALIASES: dict[str, str] = {
    "step": "step",
    "epoch": "epoch",
    "train_loss": "train_loss",
    "train_accuracy": "train_token_accuracy",
    "train_mean_token_accuracy": "train_token_accuracy",
    "train_token_accuracy": "train_token_accuracy",
    "valid_loss": "valid_loss",
    "validation_loss": "valid_loss",
    "valid_mean_token_accuracy": "valid_token_accuracy",
    "validation_mean_token_accuracy": "valid_token_accuracy",
    "valid_token_accuracy": "valid_token_accuracy",
    "full_valid_loss": "full_valid_loss",
    "full_valid_mean_token_accuracy": "full_valid_token_accuracy",
    "full_validation_mean_token_accuracy": "full_valid_token_accuracy",
}
_NOT_METRICS = frozenset({"total_steps"})
_OPENAI_COLUMNS = (("step", "step"), ("train_loss", "train_loss"), ("train_accuracy", "train_token_accuracy"),
                   ("valid_loss", "valid_loss"), ("valid_mean_token_accuracy", "valid_token_accuracy"))


def _number(text: Any) -> float | None:
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    text = str(text).strip()
    if not text or text.lower() in ("nan", "none", "null"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def point_from_dict(values: dict[str, Any]) -> MetricPoint | None:
    """A MetricPoint from CSV-row or event-data keys (any known alias); None without a step."""
    fields: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in values.items():
        if key in _NOT_METRICS:
            continue
        name = COLUMN_ALIASES.get(key.strip().lower())
        number = _number(value)
        if name is not None:
            if number is not None:
                fields[name] = number
        elif number is not None:
            extras[key.strip()] = number
    if "step" not in fields:
        return None
    fields["step"] = int(fields["step"])
    return MetricPoint(**fields, **extras)


def parse_results_csv(data: bytes | str) -> list[MetricPoint]:
    """Parse a result CSV (OpenAI or Azure column names, any order, empty cells allowed)."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.lstrip("\ufeff")
    points = []
    for row in csv.DictReader(io.StringIO(text)):
        point = point_from_dict({k: v for k, v in row.items() if k is not None})
        if point is not None:
            points.append(point)
    return points


def points_from_events(events: Iterable[Event]) -> list[MetricPoint]:
    points = []
    for event in events:
        if event.type == "metrics" or "train_loss" in event.data:
            point = point_from_dict(event.data)
            if point is not None:
                points.append(point)
    return points


def merge_points(*sources: Iterable[MetricPoint]) -> list[MetricPoint]:
    """One point per step; earlier sources win, later ones fill the gaps."""
    merged: dict[int, dict[str, Any]] = {}
    for source in sources:
        for point in source:
            into = merged.setdefault(point.step, {})
            for key, value in point.model_dump(exclude_none=True).items():
                into.setdefault(key, value)
    return [MetricPoint(**merged[step]) for step in sorted(merged)]


def to_results_csv(points: Iterable[MetricPoint]) -> str:
    """A result CSV in OpenAI's column layout."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c for c, _ in _OPENAI_COLUMNS])
    for p in points:
        writer.writerow(["" if getattr(p, attr) is None else getattr(p, attr) for _, attr in _OPENAI_COLUMNS])
    return buf.getvalue()


class Metrics(list):  # list[MetricPoint]
    """A job's metric points, oldest first, with export helpers."""

    def to_csv(self, path: str | Path | None = None) -> str:
        """Every field of every point as CSV (returned, and written to ``path`` if given)."""
        columns: list[str] = []
        for p in self:
            for key in p.model_dump(exclude_none=True):
                if key not in columns:
                    columns.append(key)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns or ["step"], lineterminator="\n")
        writer.writeheader()
        for p in self:
            writer.writerow(p.model_dump(exclude_none=True))
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def series(self, field: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for p in self:
            value = getattr(p, field, None)
            if value is None and p.model_extra:
                value = p.model_extra.get(field)
            if value is not None:
                xs.append(p.step)
                ys.append(float(value))
        return xs, ys

    def plot(self, ax: Any = None, fields: tuple[str, ...] = ("train_loss", "valid_loss", "full_valid_loss")) -> Any:
        """Loss curves with matplotlib (``pip install 'finetune-sdk[plot]'``). Returns the axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ImportError("plotting needs matplotlib: pip install 'finetune-sdk[plot]'") from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        for name in fields:
            xs, ys = self.series(name)
            if xs:
                ax.plot(xs, ys, label=name, marker="o" if name == "full_valid_loss" else None)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        return ax

    def _repr_html_(self) -> str:
        if not self:
            return "<p>No metrics yet.</p>"
        last = self[-1]
        return (f"<p>{len(self)} metric points; last step {last.step}: train_loss={last.train_loss}, "
                f"valid_loss={last.valid_loss}</p>")
