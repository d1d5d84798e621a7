"""OpenAI -> your own hardware: a fine-tune on the emulator carried to the local trainer with
--model (a tiny random Llama, so the real training process runs in seconds), then chatted
with and evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from finetune_sdk import FineTuneClient, evaluate
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import ConfigurationError
from finetune_sdk.migration import LINEAGE_KEY
from finetune_sdk.providers.local.training.tiny import make_tiny_model
from finetune_sdk.testing import emulator
from finetune_sdk.types import JobStatus
from finetune_sdk.waiting import PollSchedule


def test_openai_to_local_with_a_model(tmp_path: Path) -> None:
    tiny = str(make_tiny_model(tmp_path / "tiny"))
    with emulator(speed=0, dialect="openai") as emu:
        openai = FineTuneClient("openai", ledger=False, sleep=emu.clock.advance, clock=emu.clock.now,
                                **emu.client_settings("openai"))
        source = openai.jobs.create(training_file=dataset_path("contacts", "train"), model="gpt-4o-mini-2024-07-18",
                                    hyperparameters={"n_epochs": 1, "batch_size": 16}, suffix="contacts")
        source = openai.jobs.wait(source.id, progress=False)
        local = FineTuneClient("local", home=str(tmp_path / "home"), ledger=False,
                               poll=PollSchedule(initial=0.3, maximum=1.0, near_end=0.3))
        with pytest.raises(ConfigurationError, match="local does not fine-tune gpt-4o-mini-2024-07-18.*smollm2"):
            openai.jobs.migrate(source.id, to=local, dry_run=True)
        plan = openai.jobs.migrate(source.id, to=local, model=tiny, dry_run=True).plan
        assert plan.model == tiny and plan.model_source == "given"
        assert plan.target_hyperparameters == {"n_epochs": 1, "batch_size": 16, "learning_rate_multiplier": 1.8}
        assert plan.refused == {}
        result = openai.jobs.migrate(source.id, to=local, model=tiny, wait=True)
        job = result.job
        assert job is not None and job.status is JobStatus.SUCCEEDED and job.fine_tuned_model
        assert job.metadata[LINEAGE_KEY] == f"openai:{source.id}"
        assert job.hyperparameters["batch_size"] == 16 and job.hyperparameters["n_epochs"] == 1
        rows = evaluate(dataset_path("contacts", "test"), [job.fine_tuned_model], client=local, limit=4,
                        max_tokens=8, progress=False)
        assert rows.candidates[0].failures == 0 and len(rows.candidates[0].answers) == 4
        from finetune_sdk.providers.local.serving.background import stop_server

        stop_server(tmp_path / "home")  # chatting by model id started the background server
        local.close()
        openai.close()
