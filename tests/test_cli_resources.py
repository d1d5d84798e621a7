"""`finetune deployments|models|files`, run as real subprocesses against the emulator: tables,
--json shapes, filters and exit codes, on OpenAI and Azure (ARM deployments included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.testing import Emulator, emulator
from finetune_sdk.types import DeploySpec

MODEL = "gpt-4o-mini-2024-07-18"
FILE_KEYS = {"id", "filename", "bytes", "purpose", "status", "status_details", "created_at"}
MODEL_KEYS = {"id", "created_at", "owned_by", "fine_tuned"}
DEPLOYMENT_KEYS = {"name", "model", "provider", "status", "raw_status", "ready", "created_at", "sku", "capacity",
                   "base_url", "job_id"}
# A developer's own settings must not leak into what the commands see.
_LEAKY = ("OPENAI_", "AZURE_", "FINETUNE_CONFIG", "FINETUNE_PROFILE", "FINETUNE_API_KEY")


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY)}
    return {**env, "FINETUNE_HOME": str(tmp_path / "home"), **extra}


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "finetune_sdk", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def rows(stdout: str) -> list[str]:
    """A table's body rows (the header uses heavy borders), one per line: piped tables are not wrapped."""
    return [line for line in stdout.splitlines() if line.startswith("│")]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with emulator(speed=0) as e:  # frozen: a job moves only when the test advances the clock
        yield e


@pytest.fixture
def openai_env(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    return base_env(tmp_path, OPENAI_API_KEY=emu.api_key, OPENAI_BASE_URL=emu.openai_base_url)


def succeeded_job(emu: Emulator, provider: str) -> str:
    """A fine-tune made through the client; the CLI is what is under test. Returns its model id."""
    with FineTuneClient(provider, ledger=False, **emu.client_settings(provider)) as client:
        f = client.files.upload(dataset_path("contacts", "train"))
        emu.clock.advance(60)  # file processing
        job = client.jobs.create(training_file=f.id, model=MODEL, suffix="contacts")
        emu.clock.advance(24 * 3600)
        job = client.jobs.get(job.id)
    assert job.fine_tuned_model, job
    return job.fine_tuned_model


# ---------------------------------------------------------------- files

def test_files_upload_list_delete_round_trip(openai_env: dict[str, str], tmp_path: Path) -> None:
    train = dataset_path("contacts", "train")
    r = run(openai_env, tmp_path, "files", "list", "--provider", "openai")
    assert r.returncode == 0 and "No files." in r.stdout, r.stderr

    r = run(openai_env, tmp_path, "files", "upload", str(train), "--provider", "openai", "--json")
    assert r.returncode == 0, r.stderr
    uploaded = json.loads(r.stdout)
    assert set(uploaded) == FILE_KEYS
    assert uploaded["filename"] == train.name and uploaded["purpose"] == "fine-tune"
    assert uploaded["bytes"] == train.stat().st_size

    r = run(openai_env, tmp_path, "files", "list", "--provider", "openai")
    assert r.returncode == 0, r.stderr
    [row] = rows(r.stdout)
    assert uploaded["id"] in row and train.name in row and f"{train.stat().st_size:,}" in row and "fine-tune" in row

    r = run(openai_env, tmp_path, "files", "delete", uploaded["id"], "--provider", "openai")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"deleted file {uploaded['id']} on openai"

    r = run(openai_env, tmp_path, "files", "list", "--provider", "openai", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stdout + r.stderr


def test_files_upload_plain_text_and_delete_json(openai_env: dict[str, str], tmp_path: Path) -> None:
    # Upload is plain: no dataset validation (that is `finetune validate`'s job).
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"not": "a chat example"}\n')
    r = run(openai_env, tmp_path, "files", "upload", str(notes), "--provider", "openai")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"uploaded {notes} as file-") and "on openai" in r.stdout
    file_id = r.stdout.split(" as ", 1)[1].split()[0]

    r = run(openai_env, tmp_path, "files", "delete", file_id, "--provider", "openai", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"deleted": True, "id": file_id}


def test_files_list_purpose_filter(emu: Emulator, openai_env: dict[str, str], tmp_path: Path) -> None:
    succeeded_job(emu, "openai")  # leaves the training file and a fine-tune-results file
    r = run(openai_env, tmp_path, "files", "list", "--provider", "openai", "--json")
    assert sorted(f["purpose"] for f in json.loads(r.stdout)) == ["fine-tune", "fine-tune-results"]
    r = run(openai_env, tmp_path, "files", "list", "--purpose", "fine-tune-results", "--provider", "openai", "--json")
    assert r.returncode == 0, r.stderr
    [only] = json.loads(r.stdout)
    assert set(only) == FILE_KEYS and only["purpose"] == "fine-tune-results"


def test_files_unknown_id_exits_1_with_the_providers_message(openai_env: dict[str, str], tmp_path: Path) -> None:
    r = run(openai_env, tmp_path, "files", "delete", "file-doesnotexist", "--provider", "openai")
    assert r.returncode == 1
    assert "No such File object: file-doesnotexist" in r.stderr and r.stdout == ""


def test_files_upload_missing_path_is_a_usage_error(openai_env: dict[str, str], tmp_path: Path) -> None:
    r = run(openai_env, tmp_path, "files", "upload", str(tmp_path / "absent.jsonl"), "--provider", "openai")
    assert r.returncode == 2 and "does not exist" in r.stderr


# ---------------------------------------------------------------- models and deployments

def test_models_list_includes_the_fine_tune_and_filters(emu: Emulator, openai_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    r = run(openai_env, tmp_path, "models", "list", "--fine-tuned", "--provider", "openai")
    assert r.returncode == 0 and r.stdout.strip() == "No fine-tuned models.", r.stdout + r.stderr

    tuned = succeeded_job(emu, "openai")

    r = run(openai_env, tmp_path, "models", "list", "--provider", "openai", "--json")
    assert r.returncode == 0, r.stderr
    models = json.loads(r.stdout)
    assert all(set(m) == MODEL_KEYS | {"profile", "job_id"} for m in models)
    by_id = {m["id"]: m for m in models}
    assert by_id[tuned]["fine_tuned"] is True and by_id[MODEL]["fine_tuned"] is False

    r = run(openai_env, tmp_path, "models", "list", "--fine-tuned", "--provider", "openai", "--json")
    [listed] = json.loads(r.stdout)
    assert listed["id"] == tuned and listed["job_id"] and listed["job_id"].startswith("ftjob-")

    r = run(openai_env, tmp_path, "models", "list", "--fine-tuned", "--provider", "openai")
    [row] = rows(r.stdout)
    assert tuned in row and "yes" in row  # whole, not elided: it is what `finetune chat` takes


def test_deployments_list_on_openai_shows_fine_tunes(emu: Emulator, openai_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    r = run(openai_env, tmp_path, "deployments", "list", "--provider", "openai")
    assert r.returncode == 0 and r.stdout.strip() == "No deployments.", r.stdout + r.stderr

    tuned = succeeded_job(emu, "openai")  # OpenAI serves a fine-tune without a deployment step

    r = run(openai_env, tmp_path, "deployments", "list", "--provider", "openai", "--json")
    assert r.returncode == 0, r.stderr
    [dep] = json.loads(r.stdout)
    assert set(dep) == DEPLOYMENT_KEYS
    assert dep["name"] == dep["model"] == tuned and dep["provider"] == "openai" and dep["ready"] is True
    assert dep["base_url"].startswith(emu.openai_base_url)

    r = run(openai_env, tmp_path, "deployments", "list", "--provider", "openai")
    [row] = rows(r.stdout)
    assert tuned in row and "succeeded" in row and "yes" in row and emu.openai_base_url in row


def test_deleting_a_deployment_on_openai_is_unsupported(openai_env: dict[str, str], tmp_path: Path) -> None:
    r = run(openai_env, tmp_path, "deployments", "delete", "ft:gpt-4o-mini-2024-07-18:org:x:1", "--provider", "openai")
    assert r.returncode == 1
    assert "The 'openai' provider does not support deleting a deployment" in r.stderr and r.stdout == ""


def test_deleting_an_unknown_local_deployment_exits_1(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    r = run(env, tmp_path, "deployments", "delete", "nope", "--provider", "local")
    assert r.returncode == 1
    assert "No local deployment named 'nope'" in r.stderr
    r = run(env, tmp_path, "deployments", "list", "--provider", "local", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stderr


# ---------------------------------------------------------------- Azure (data plane and ARM deployments)

@pytest.fixture
def azure_env(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    s = emu.client_settings("azure")
    (tmp_path / "finetune.toml").write_text(f'[profiles.az]\nprovider = "azure"\narm_endpoint = "{emu.arm_endpoint}"\n')
    return base_env(tmp_path, AZURE_OPENAI_ENDPOINT=emu.azure_endpoint, AZURE_OPENAI_API_KEY=emu.api_key,
                    AZURE_SUBSCRIPTION_ID=s["subscription_id"], AZURE_RESOURCE_GROUP=s["resource_group"],
                    AZURE_OPENAI_ACCOUNT=s["account"], AZURE_ARM_TOKEN=emu.arm_token)


def test_azure_files_and_models(emu: Emulator, azure_env: dict[str, str], tmp_path: Path) -> None:
    train = dataset_path("contacts", "train")
    r = run(azure_env, tmp_path, "files", "upload", str(train), "--profile", "az", "--json")
    assert r.returncode == 0, r.stderr
    file_id = json.loads(r.stdout)["id"]
    r = run(azure_env, tmp_path, "files", "list", "-p", "az", "--json")
    assert [f["id"] for f in json.loads(r.stdout)] == [file_id]
    r = run(azure_env, tmp_path, "files", "delete", file_id, "-p", "az")
    assert r.returncode == 0 and r.stdout.strip() == f"deleted file {file_id} on azure", r.stderr
    r = run(azure_env, tmp_path, "files", "delete", file_id, "-p", "az")
    assert r.returncode == 1 and file_id in r.stderr

    tuned = succeeded_job(emu, "azure")
    r = run(azure_env, tmp_path, "models", "list", "-p", "az", "--json")
    assert r.returncode == 0, r.stderr
    assert tuned in {m["id"] for m in json.loads(r.stdout)}


def test_azure_models_list_fine_tuned_shows_the_fine_tune(emu: Emulator, azure_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    tuned = succeeded_job(emu, "azure")
    r = run(azure_env, tmp_path, "models", "list", "--fine-tuned", "-p", "az", "--json")
    assert [m["id"] for m in json.loads(r.stdout)] == [tuned]


def test_azure_deployments_list_and_delete(emu: Emulator, azure_env: dict[str, str], tmp_path: Path) -> None:
    tuned = succeeded_job(emu, "azure")
    emu.azure.deploy(tuned, DeploySpec(name="contacts"))
    r = run(azure_env, tmp_path, "deployments", "list", "-p", "az", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [(d["name"], d["model"]) for d in listed] == [("contacts", tuned)] and set(listed[0]) == DEPLOYMENT_KEYS
    r = run(azure_env, tmp_path, "deployments", "delete", "contacts", "-p", "az", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"deleted": True, "id": "contacts"}, r.stderr
    r = run(azure_env, tmp_path, "deployments", "delete", "contacts", "-p", "az")
    assert r.returncode == 1 and "contacts" in r.stderr
    r = run(azure_env, tmp_path, "deployments", "list", "-p", "az")
    assert r.returncode == 0 and "No deployments." in r.stdout


def test_models_delete(emu: Emulator, openai_env: dict[str, str], tmp_path: Path) -> None:
    tuned = succeeded_job(emu, "openai")
    r = run(openai_env, tmp_path, "models", "delete", tuned, "--provider", "openai", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"deleted": True, "id": tuned}, r.stderr
    r = run(openai_env, tmp_path, "models", "delete", tuned, "--provider", "openai")
    assert r.returncode == 1 and tuned in r.stderr
    r = run(openai_env, tmp_path, "models", "delete", MODEL, "--provider", "openai")
    assert r.returncode == 1 and "base models cannot be deleted" in r.stderr


# ---------------------------------------------------------------- configuration errors

@pytest.mark.parametrize("args", [
    ["deployments", "list"],
    ["deployments", "delete", "x"],
    ["models", "list"],
    ["files", "list"],
    ["files", "delete", "file-x"],
])
def test_no_provider_is_a_configuration_error(args: list[str], tmp_path: Path) -> None:
    r = run(base_env(tmp_path), tmp_path, *args)
    assert r.returncode == 2 and "No provider chosen" in r.stderr, r.stderr


def test_unknown_profile_and_provider_exit_2(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    r = run(env, tmp_path, "models", "list", "--profile", "nope")
    assert r.returncode == 2 and "Profile 'nope'" in r.stderr
    r = run(env, tmp_path, "files", "list", "--provider", "nope")
    assert r.returncode == 2 and "Unknown provider 'nope'" in r.stderr


def test_missing_api_key_exits_2(tmp_path: Path) -> None:
    r = run(base_env(tmp_path), tmp_path, "deployments", "list", "--provider", "openai")
    assert r.returncode == 2 and "OPENAI_API_KEY" in r.stderr
