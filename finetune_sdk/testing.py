"""Test helpers for your own test suite: the emulator and its pytest fixture.

Add ``pytest_plugins = ["finetune_sdk.testing"]`` to ``conftest.py`` and take the
``finetune_emulator`` fixture, or start one yourself::

    from finetune_sdk.testing import emulator

    with emulator(speed=100) as emu:
        client = openai.OpenAI(base_url=emu.openai_base_url, api_key=emu.api_key)
        emu.clock.advance(600)          # ten simulated minutes pass
        emu.set_faults("POST /v1/fine_tuning/jobs: 429@0.5")

The emulator itself lives in :mod:`finetune_sdk.server.emulator`. Requires the ``serve`` extra.
"""

from __future__ import annotations

from collections.abc import Iterator

from .server.emulator import Emulator, StaticTokenCredential, ThreadedServer, emulator, free_port

__all__ = ["Emulator", "emulator", "StaticTokenCredential", "ThreadedServer", "free_port", "finetune_emulator"]

try:  # the pytest fixture, for `pytest_plugins = ["finetune_sdk.testing"]`
    import pytest

    @pytest.fixture
    def finetune_emulator() -> Iterator[Emulator]:
        """A fresh emulator (both dialects, speed 60) per test."""
        with emulator() as emu:
            yield emu
except ImportError:  # pragma: no cover - pytest is optional
    pass
