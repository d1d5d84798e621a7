"""The worked provider of docs/architecture.md (examples/custom_provider), installed the way
pip installs a third-party plugin: a ``*.dist-info`` folder whose ``entry_points.txt``
names it under ``finetune_sdk.providers``. Everything runs in a fresh interpreter that
finds it only through that entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "custom_provider"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site directory holding the plugin's installed metadata (what `pip install` writes)."""
    dist = tmp_path / "site" / "finetune_instant-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: finetune-instant\nVersion: 0.1.0\n")
    entry = next(line for line in (PLUGIN / "pyproject.toml").read_text().splitlines() if line.startswith("instant ="))
    (dist / "entry_points.txt").write_text(f"[finetune_sdk.providers]\n{entry.replace(chr(34), '')}\n")
    return tmp_path / "site"


def run(site: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    paths = [str(site), str(PLUGIN), os.environ.get("PYTHONPATH", "")]
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "INSTANT_TOKEN": "tok-123456",
            "FINETUNE_HOME": str(tmp_path / "home"), **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full, timeout=120)


SCRIPT = """
import json, sys
from finetune_sdk import FineTuneClient, available_providers
from finetune_sdk.datasets import path
from finetune_sdk.errors import UnsupportedOperation

assert "instant" in available_providers()
client = FineTuneClient("instant", base_model="echo-1")
job = client.jobs.create(training_file=path("contacts", "train"), suffix="demo")
events = list(client.jobs.follow(job.id))
done = client.jobs.wait(job.id, progress=False)
try:
    client.jobs.cancel(job.id)
    cancel = "allowed"
except UnsupportedOperation as exc:
    cancel = str(exc)
print(json.dumps({"status": done.status.value, "model": done.fine_tuned_model,
                  "kinds": [e.kind for e in events], "reply": client.chat(done, "hello").content,
                  "cancel": cancel, "metrics": len(client.jobs.events(job.id))}))
"""


def test_the_worked_provider_runs_through_the_client(site: Path, tmp_path: Path) -> None:
    result = run(site, tmp_path, "-c", SCRIPT)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"] == "succeeded" and out["model"].startswith("echo-1:instant:")
    assert out["kinds"] == ["status", "status", "metrics", "metrics", "metrics", "checkpoint", "status"]
    assert out["reply"].endswith("says: hello")
    assert "does not support cancel" in out["cancel"]


def test_the_worked_provider_through_the_cli(site: Path, tmp_path: Path) -> None:
    train = str(ROOT / "finetune_sdk" / "datasets" / "contacts.train.jsonl")
    created = run(site, tmp_path, "-m", "finetune_sdk", "train", train, "--provider", "instant", "--model", "echo-1",
                  "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["status"] == "succeeded"


def test_its_secret_comes_from_the_environment_only(site: Path, tmp_path: Path) -> None:
    result = run(site, tmp_path, "-m", "finetune_sdk", "jobs", "list", "--provider", "instant",
                 env={"INSTANT_TOKEN": ""})
    assert result.returncode == 2 and "INSTANT_TOKEN" in result.stderr
