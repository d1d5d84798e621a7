"""The deployment registry: ``FINETUNE_HOME/serve/deployments.json``, deployment name -> model id.

Written by the provider (``client.deployments.create`` / ``delete``), read by the server
process on every request, so a deployment is served as soon as it is registered. Updates
are read-modify-writes under a file lock; readers see the old or the new file, never a
half-written one (atomic rename).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ...._filelock import file_lock

__all__ = ["Deployments"]


class Deployments:
    """``FINETUNE_HOME/serve/deployments.json``: deployment name -> model id."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "serve" / "deployments.json"

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def add(self, name: str, model: str) -> None:
        with file_lock(self.path.with_suffix(".lock")):
            data = self.read()
            data[name] = {"model": model, "created_at": time.time()}
            self._write(data)

    def remove(self, name: str) -> bool:
        with file_lock(self.path.with_suffix(".lock")):
            data = self.read()
            found = data.pop(name, None) is not None
            self._write(data)
            return found

