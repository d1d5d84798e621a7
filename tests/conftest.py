"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def finetune_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ONE model cache for the whole test session: ``FINETUNE_MODEL_CACHE`` points here.

    The embedded default base model (SmolLM2-135M-Instruct) is converted from its GGUF
    into the model cache the first time it is resolved (~20 s). Every test, in every
    module, that resolves it without passing ``cache_dir`` shares this directory, so the
    conversion happens at most once per session — and never in the developer's real
    cache (``~/.cache/finetune/models``).

    - Do not delete or modify ``<cache>/smollm2-135m-instruct`` in a test; use your own
      ``cache_dir=tmp_path`` for tests that need an empty or damaged cache.
    - Tests that change ``FINETUNE_MODEL_CACHE`` must restore it (``monkeypatch.setenv``
      does).
    - Set ``FINETUNE_TEST_MODEL_CACHE=/some/dir`` to reuse a persistent cache across
      sessions (faster local runs); by default a fresh temporary directory is used.

    The environment variable is set at session start and restored at the end.
    Request the fixture by name to get the directory.
    """
    persistent = os.environ.get("FINETUNE_TEST_MODEL_CACHE")
    if persistent:
        path = Path(persistent).expanduser()
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("model-cache")
    old = os.environ.get("FINETUNE_MODEL_CACHE")
    os.environ["FINETUNE_MODEL_CACHE"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("FINETUNE_MODEL_CACHE", None)
        else:
            os.environ["FINETUNE_MODEL_CACHE"] = old
