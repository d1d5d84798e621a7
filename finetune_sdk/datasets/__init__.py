"""Datasets bundled with the package (written by this project; Apache-2.0).

``contacts``: one sentence about a person -> one compact JSON object
``{"name": ..., "age": ..., "city": ...}``. Splits: ``train`` (300), ``validation`` (40)
and ``test`` (60, held out for scoring). Regenerate with ``scripts/make_demo_data.py``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["path", "DATASETS"]

DATASETS = {"contacts": ("train", "validation", "test")}


def path(name: str = "contacts", split: str = "train") -> Path:
    """The path of a bundled dataset file."""
    if name not in DATASETS:
        raise ValueError(f"Unknown bundled dataset {name!r}; available: {', '.join(DATASETS)}")
    if split not in DATASETS[name]:
        raise ValueError(f"Dataset {name!r} has splits {', '.join(DATASETS[name])}, not {split!r}")
    return Path(__file__).with_name(f"{name}.{split}.jsonl")
