"""Carrying a fine-tune to a new home: OpenAI -> Azure (the same model), and the cases a
migration must refuse or must not repeat — on the emulator, through the client and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import ConfigurationError, DatasetError, FineTuneError, IdempotencyError
from finetune_sdk.migration import LINEAGE_KEY
from finetune_sdk.testing import Emulator, emulator

BASE = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with emulator(speed=0, dialect="openai,azure,together,fireworks") as e:
        yield e


@pytest.fixture
def config(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    text = ""
    for provider in ("openai", "azure", "together", "fireworks"):
        toml, env = emu.profile(provider, name=provider)
        text += toml + "\n"
        for var, value in env.items():
            monkeypatch.setenv(var, value)
    monkeypatch.setenv("FINETUNE_HOME", str(tmp_path / "home"))
    path = tmp_path / "finetune.toml"
    path.write_text(text)
    return path


def clients(emu: Emulator, config: Path) -> tuple[FineTuneClient, FineTuneClient]:
    kw = {"sleep": emu.clock.advance, "clock": emu.clock.now}
    return (FineTuneClient.from_config("openai", config=config, **kw),
            FineTuneClient.from_config("azure", config=config, **kw))


def finished_job(client: FineTuneClient, **kwargs: object) -> str:
    job = client.jobs.create(training_file=dataset_path("contacts", "train"),
                             validation_file=dataset_path("contacts", "validation"),
                             hyperparameters={"n_epochs": 2, "batch_size": 4}, suffix="contacts", seed=7, **kwargs)
    return client.jobs.wait(job.id, progress=False).id


def test_openai_to_azure_carries_data_model_hyperparameters_and_lineage(emu: Emulator, config: Path) -> None:
    openai, azure = clients(emu, config)
    source = finished_job(openai, metadata={"team": "search"})
    before = len(emu.azure.list_jobs())

    plan = openai.jobs.migrate(source, to=azure, dry_run=True)
    assert plan.job is None and len(emu.azure.list_jobs()) == before, "a dry run creates nothing"
    doc = plan.plan.to_json()
    assert doc["to"]["model"] == BASE and doc["to"]["model_source"] == "same"
    assert doc["files"]["examples"] == 300 and doc["files"]["validation_examples"] == 40
    assert doc["hyperparameters"]["as_sent"]["n_epochs"] == 2 and doc["hyperparameters"]["refused"] == {}
    assert doc["estimate"]["billed_tokens"] > 0 and doc["estimate"]["n_epochs"] == 2
    assert doc["lineage"] == {LINEAGE_KEY: f"openai:{source}"} and doc["seed"] == 7

    result = openai.jobs.migrate(source, to=azure)
    job = result.job
    assert job is not None and job.provider == "azure" and job.model == BASE
    assert job.metadata[LINEAGE_KEY] == f"openai:{source}" and job.metadata["team"] == "search"
    server = emu.azure.get_job(job.id)
    assert server.hyperparameters["n_epochs"] == 2 and server.seed == 7 and server.validation_file
    # The same data went over: the uploaded file has the source's bytes.
    assert emu.azure.file_content(server.training_file) == dataset_path("contacts", "train").read_bytes()

    again = openai.jobs.migrate(source, to=azure)
    assert again.job is not None and again.job.id == job.id, "re-running a migration returns its job"
    fresh = openai.jobs.migrate(source, to=azure, again=True)
    assert fresh.job is not None and fresh.job.id != job.id, "unless asked for a new one"
    assert len(emu.azure.list_jobs()) == before + 2
    assert azure.ledger is not None and azure.ledger.find(job.id).migrated_from == f"openai:{source}"


def test_a_model_the_target_lacks_needs_model_and_the_error_lists_the_choices(emu: Emulator, config: Path) -> None:
    openai, azure = clients(emu, config)
    job = openai.jobs.create(training_file=dataset_path("contacts", "train"), model="babbage-002",
                             validate=False, suffix="legacy")
    with pytest.raises(ConfigurationError, match=r"azure does not fine-tune babbage-002.*gpt-4o-mini-2024-07-18"):
        openai.jobs.migrate(job.id, to=azure, dry_run=True)


def test_refused_hyperparameters_are_listed_and_strict_refuses(emu: Emulator, config: Path) -> None:
    openai, azure = clients(emu, config)
    source = finished_job(openai)

    class Picky(type(azure.provider)):  # type: ignore[misc]
        def map_hyperparameters(self, hp, method):  # type: ignore[no-untyped-def]
            sent, refused = super().map_hyperparameters(hp, method)
            refused["batch_size"] = "picky takes no batch size"
            return {k: v for k, v in sent.items() if k != "batch_size"}, refused

    azure.provider.__class__ = Picky
    plan = openai.jobs.migrate(source, to=azure, dry_run=True).plan
    assert plan.refused == {"batch_size": "picky takes no batch size"} and "batch_size" not in plan.hyperparameters
    with pytest.raises(ConfigurationError, match="batch_size: picky takes no batch size"):
        openai.jobs.migrate(source, to=azure, strict=True)


def test_a_gone_file_is_named_and_can_be_given(emu: Emulator, config: Path, tmp_path: Path) -> None:
    openai, azure = clients(emu, config)
    source = finished_job(openai)
    job = openai.jobs.get(source)
    assert job.training_file
    emu.openai.delete_file(job.training_file)
    with pytest.raises(FineTuneError, match=rf"training file {job.training_file} is gone.*--training-file PATH"):
        openai.jobs.migrate(source, to=azure, dry_run=True)
    plan = openai.jobs.migrate(source, to=azure, dry_run=True, training_file=dataset_path("contacts", "train"))
    assert plan.plan.training_file == dataset_path("contacts", "train")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "no answer"}]}\n' * 12)
    with pytest.raises(DatasetError, match="breaks azure's rules, so nothing was uploaded"):
        openai.jobs.migrate(source, to=azure, training_file=bad)


def test_openai_to_together_needs_a_model_and_lists_what_it_cannot_carry(emu: Emulator, config: Path) -> None:
    openai, _ = clients(emu, config)
    together = FineTuneClient.from_config("together", config=config, sleep=emu.clock.advance, clock=emu.clock.now)
    source = finished_job(openai)
    with pytest.raises(ConfigurationError, match=r"together does not fine-tune gpt-4o-mini-2024-07-18.*Meta-Llama"):
        openai.jobs.migrate(source, to=together, dry_run=True)
    llama = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
    plan = openai.jobs.migrate(source, to=together, model=llama, dry_run=True).plan
    assert plan.model == llama and plan.model_source == "given"
    assert set(plan.refused) == {"learning_rate_multiplier"} and "absolute learning rate" in plan.refused[
        "learning_rate_multiplier"]
    assert plan.target_hyperparameters == {"n_epochs": 2, "batch_size": 4}
    assert any("ledger" in note for note in plan.notes), "Together keeps no metadata: the lineage goes to the ledger"
    with pytest.raises(ConfigurationError, match="learning_rate_multiplier"):
        openai.jobs.migrate(source, to=together, model=llama, strict=True)
    made = openai.jobs.migrate(source, to=together, model=llama, wait=True).job
    assert made is not None and made.provider == "together" and made.status.value == "succeeded"
    assert made.hyperparameters.get("n_epochs") == 2
    assert together.ledger is not None and together.ledger.find(made.id).migrated_from == f"openai:{source}"
    again = openai.jobs.migrate(source, to=together, model=llama).job
    assert again is not None and again.id == made.id


def test_openai_to_fireworks_carries_what_maps_and_keeps_lineage_in_the_ledger(emu: Emulator, config: Path) -> None:
    openai, _ = clients(emu, config)
    fireworks = FineTuneClient.from_config("fireworks", config=config, sleep=emu.clock.advance, clock=emu.clock.now)
    source = finished_job(openai, metadata={"team": "search"})
    with pytest.raises(ConfigurationError, match=r"fireworks does not fine-tune gpt-4o-mini-2024-07-18.*qwen"):
        openai.jobs.migrate(source, to=fireworks, dry_run=True)
    qwen = "accounts/fireworks/models/qwen3-8b"
    plan = openai.jobs.migrate(source, to=fireworks, model=qwen, dry_run=True).plan
    assert set(plan.refused) == {"learning_rate_multiplier", "seed"} and "absolute learning rate" in plan.refused[
        "learning_rate_multiplier"] and "take no seed (7)" in plan.refused["seed"]
    assert plan.seed is None and plan.to_json()["seed"] is None
    assert plan.target_hyperparameters == {"epochs": 2, "batchSizeSamples": 4}, "in Fireworks' own names"
    assert any("ledger" in note for note in plan.notes)
    with pytest.raises(ConfigurationError, match="learning_rate_multiplier"):
        openai.jobs.migrate(source, to=fireworks, model=qwen, strict=True)
    before = len(emu.backends["fireworks"].list_jobs())
    made = openai.jobs.migrate(source, to=fireworks, model=qwen, wait=True).job
    assert made is not None and made.provider == "fireworks" and made.status.value == "succeeded"
    assert made.hyperparameters.get("n_epochs") == 2 and made.model == qwen
    assert "team" not in made.metadata, "the source's metadata is not carried where it cannot be kept"
    assert fireworks.ledger is not None and fireworks.ledger.find(made.id).migrated_from == f"openai:{source}"
    again = openai.jobs.migrate(source, to=fireworks, model=qwen).job
    assert again is not None and again.id == made.id, "re-running a migration returns its job"
    assert len(emu.backends["fireworks"].list_jobs()) == before + 1
    # The rate the target needs, set on the way: carried, sent in Fireworks' name, nothing refused but the seed.
    tuned = openai.jobs.migrate(source, to=fireworks, model=qwen, dry_run=True,
                                hyperparameters={"learning_rate_multiplier": None, "learning_rate": 1e-4}).plan
    assert set(tuned.refused) == {"seed"} and tuned.target_hyperparameters["learningRate"] == 1e-4
    with pytest.raises(IdempotencyError):  # a different request under the same migration is not merged into it
        openai.jobs.migrate(source, to=fireworks, model=qwen, hyperparameters={"learning_rate": 1e-4})
    fresh = openai.jobs.migrate(source, to=fireworks, model=qwen, again=True,
                                hyperparameters={"learning_rate": 1e-4}).job
    assert fresh is not None and fresh.id != made.id and fresh.hyperparameters["learning_rate"] == 1e-4


def test_the_cli(emu: Emulator, config: Path, tmp_path: Path) -> None:
    openai, _ = clients(emu, config)
    source = finished_job(openai)
    env = {**os.environ, "FINETUNE_CONFIG": str(config)}
    emu.clock.speed = 200  # the CLI waits in real time (for uploaded files to be processed)

    def finetune(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "finetune_sdk", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    dry = finetune("migrate", source, "--from", "openai", "--to", "azure", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "plan" in dry.stdout and "model gpt-4o-mini-2024-07-18 (same)" in dry.stdout
    changed = finetune("migrate", source, "--from", "openai", "--to", "azure", "--dry-run", "--json",
                       "-H", "n_epochs=3")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["plan"]["hyperparameters"]["as_sent"]["n_epochs"] == 3
    malformed = finetune("migrate", source, "--from", "openai", "--to", "azure", "--dry-run", "-H", "n_epochs")
    assert malformed.returncode != 0 and "KEY=VALUE" in malformed.stderr
    made = finetune("migrate", source, "--from", "openai", "--to", "azure", "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert set(doc) == {"source", "plan", "job"} and doc["source"]["id"] == source
    assert doc["job"]["provider"] == "azure" and doc["plan"]["to"]["provider"] == "azure"
    shown = finetune("jobs", "show", doc["job"]["id"], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["migrated_from"] == f"openai:{source}", shown.stderr
    text = finetune("jobs", "show", doc["job"]["id"])
    assert f"migrated from: openai:{source}" in text.stdout
    inventory = finetune("models", "list", "--fine-tuned", "--json")
    assert inventory.returncode == 0, inventory.stderr
    assert any(m["profile"] == "openai" and m["job_id"] == source for m in json.loads(inventory.stdout))
    missing = finetune("migrate", "ftjob-nope", "--from", "openai", "--to", "azure")
    assert missing.returncode == 1 and "ftjob-nope" in missing.stderr
    unknown = finetune("migrate", source, "--from", "openai", "--to", "nowhere")
    assert unknown.returncode == 2 and "nowhere" in unknown.stderr
    emu.clock.speed = 0
