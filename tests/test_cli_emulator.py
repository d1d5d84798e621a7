"""A newcomer's path, all from the command line: start ``finetune emulator``, paste the
profiles it prints into finetune.toml, export the secrets it prints, then train, wait,
deploy and chat — on OpenAI, on Azure (ARM deployment included), on Together (serverless
and a dedicated endpoint) and on Fireworks (a deployment waited on until READY) — as real
subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_sdk.datasets import path as dataset_path

#: The dialects the emulator is started with (each prints its profile): all of them.
DIALECTS = ["openai", "azure", "together", "fireworks"]


class Running:
    def __init__(self, proc: subprocess.Popen[str], banner: str) -> None:
        self.proc, self.banner = proc, banner

    @property
    def toml(self) -> str:
        return "".join(re.findall(r"^\[profiles\.[^\n]*\n(?:[a-z_]+ = [^\n]*\n)+", self.banner, re.M))

    @property
    def env(self) -> dict[str, str]:
        line = next(line for line in self.banner.splitlines() if line.startswith("export "))
        return dict(pair.split("=", 1) for pair in line[len("export "):].split())


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    proc = subprocess.Popen([sys.executable, "-m", "finetune_sdk", "emulator", "--port", "0", "--speed", "200",
                             "--dialect", ",".join(DIALECTS)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    banner = ""
    for line in proc.stdout:  # the banner ends with the export line
        banner += line
        if line.startswith("export "):
            break
    try:
        yield Running(proc, banner)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def finetune(tmp_path: Path, running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **running.env, "FINETUNE_HOME": str(tmp_path / "home"),
           "FINETUNE_CONFIG": str(tmp_path / "finetune.toml")}
    return subprocess.run([sys.executable, "-m", "finetune_sdk", *args], capture_output=True, text=True, env=env,
                          timeout=180)


def test_the_banner_has_a_profile_per_dialect_and_no_secret_in_it(running: Running) -> None:
    for dialect in DIALECTS:
        assert f"[profiles.emulator-{dialect}]" in running.toml
    assert set(running.env) == {"OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_ARM_TOKEN", "TOGETHER_API_KEY",
                                "FIREWORKS_API_KEY"}
    for secret in running.env.values():
        assert secret not in running.toml


@pytest.mark.parametrize("profile", ["emulator-openai", "emulator-azure", "emulator-together"])
def test_train_wait_deploy_chat_from_the_cli(tmp_path: Path, running: Running, profile: str) -> None:
    (tmp_path / "finetune.toml").write_text(running.toml)
    train = str(dataset_path("contacts", "train"))
    created = finetune(tmp_path, running, "train", train, "--profile", profile, "--epochs", "1", "--suffix", "cli",
                       "--no-wait", "--json")
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["id"]

    waited = finetune(tmp_path, running, "jobs", "wait", job_id, "--json")  # the ledger knows the profile
    assert waited.returncode == 0, waited.stderr
    job = json.loads(waited.stdout)
    assert job["status"] == "succeeded" and job["fine_tuned_model"]

    deployed = finetune(tmp_path, running, "deploy", job_id, "--name", f"cli-{profile}", "--json")
    assert deployed.returncode == 0, deployed.stderr
    deployment = json.loads(deployed.stdout)
    assert deployment["model"] == job["fine_tuned_model"]

    target = deployment["name"] if profile == "emulator-azure" else job["fine_tuned_model"]
    reply = finetune(tmp_path, running, "chat", target, "Maria is 34 and lives in Lisbon.", "--profile", profile,
                     "--no-stream")
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.startswith("Fine-tuned model")

    shown = finetune(tmp_path, running, "jobs", "show", job_id)
    assert shown.returncode == 0 and f"succeeded ({job['raw_status']})" in shown.stdout


def test_together_trains_and_waits_in_one_command_then_deploys_an_endpoint(tmp_path: Path, running: Running) -> None:
    """A base Together serves no LoRA fine-tunes of without an endpoint: deploy starts a dedicated one."""
    (tmp_path / "finetune.toml").write_text(running.toml)
    train = str(dataset_path("contacts", "train"))
    trained = finetune(tmp_path, running, "train", train, "--profile", "emulator-together", "--model", "Qwen/Qwen3-8B",
                       "--epochs", "1", "--wait", "--json")
    assert trained.returncode == 0, trained.stderr
    job = json.loads(trained.stdout)
    assert job["status"] == "succeeded" and job["raw_status"] == "completed" and job["id"].startswith("ft-")

    deployed = finetune(tmp_path, running, "deploy", job["id"], "--name", "cli-dedicated")
    assert deployed.returncode == 0, deployed.stderr
    assert "(STARTED)" in deployed.stdout
    endpoint_name = deployed.stdout.split("finetune chat ", 1)[1].split(" ", 1)[0]
    reply = finetune(tmp_path, running, "chat", endpoint_name, "Maria is 34.", "--profile", "emulator-together")
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.startswith("Fine-tuned model")

    listed = finetune(tmp_path, running, "deployments", "list", "--profile", "emulator-together", "--json")
    endpoint = next(d for d in json.loads(listed.stdout) if d["model"] == job["fine_tuned_model"])
    deleted = finetune(tmp_path, running, "deployments", "delete", endpoint["name"], "--profile", "emulator-together")
    assert deleted.returncode == 0, deleted.stderr


def test_fireworks_train_wait_deploy_chat_from_the_cli(tmp_path: Path, running: Running) -> None:
    """Fireworks in one go: train and wait in one command, deploy (a deployment waited on until
    READY), then chat with the fine-tuned model — streamed, as by default."""
    (tmp_path / "finetune.toml").write_text(running.toml)
    train = str(dataset_path("contacts", "train"))
    trained = finetune(tmp_path, running, "train", train, "--profile", "emulator-fireworks", "--model",
                       "accounts/fireworks/models/qwen3-8b", "--epochs", "1", "--suffix", "cli", "-H", "lora_rank=8",
                       "--wait", "--json")
    assert trained.returncode == 0, trained.stderr
    job = json.loads(trained.stdout)
    assert job["status"] == "succeeded" and job["fine_tuned_model"].startswith("accounts/emulator/models/cli-")
    assert job["hyperparameters"]["lora_rank"] == 8

    deployed = finetune(tmp_path, running, "deploy", job["id"], "--name", "cli-fireworks", "--json")
    assert deployed.returncode == 0, deployed.stderr
    deployment = json.loads(deployed.stdout)
    assert deployment["model"] == job["fine_tuned_model"] and deployment["raw_status"] == "READY"

    reply = finetune(tmp_path, running, "chat", job["fine_tuned_model"], "Maria is 34 and lives in Lisbon.",
                     "--profile", "emulator-fireworks")
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.startswith("Fine-tuned model")

    shown = finetune(tmp_path, running, "jobs", "show", job["id"])
    assert shown.returncode == 0 and "succeeded (JOB_STATE_COMPLETED)" in shown.stdout
    listed = finetune(tmp_path, running, "deployments", "list", "--profile", "emulator-fireworks", "--json")
    assert listed.returncode == 0 and [d["name"] for d in json.loads(listed.stdout)] == ["cli-fireworks"]
    refused = finetune(tmp_path, running, "train", train, "--profile", "emulator-fireworks", "--lr-multiplier", "2")
    assert refused.returncode != 0 and "learning_rate_multiplier" in refused.stderr


def test_a_wrong_profile_is_a_usage_error(tmp_path: Path, running: Running) -> None:
    (tmp_path / "finetune.toml").write_text(running.toml)
    result = finetune(tmp_path, running, "jobs", "list", "--profile", "emulator-nope")
    assert result.returncode == 2 and "emulator-nope" in result.stderr
