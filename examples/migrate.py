"""Leave OpenAI with proof, offline: carry a fine-tune to Azure OpenAI and show the new model
answers as well as the old one.

Runs against the bundled emulator (no network, no keys). With real services, the same code
takes profiles from finetune.toml: ``FineTuneClient.from_config("openai")`` and ``"azure"``.

    python examples/migrate.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from finetune_sdk import FineTuneClient, evaluate
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.testing import emulator


def main() -> None:
    with emulator(speed=0) as emu, tempfile.TemporaryDirectory() as tmp:
        time = {"sleep": emu.clock.advance, "clock": emu.clock.now}  # simulated minutes pass instantly
        openai = FineTuneClient("openai", ledger=False, **emu.client_settings("openai"), **time)
        azure = FineTuneClient("azure", ledger=False, credential=emu.credential(), **emu.client_settings("azure"),
                               **time)

        # The fine-tune you have on OpenAI today.
        old = openai.jobs.create(training_file=dataset_path("contacts", "train"), model="gpt-4o-mini-2024-07-18",
                                 hyperparameters={"n_epochs": 2}, suffix="contacts")
        old = openai.jobs.wait(old.id, progress=False)
        print(f"on OpenAI: {old.id} -> {old.fine_tuned_model}")

        # 1. Save the old model's behaviour as a golden set before it is retired.
        golden = Path(tmp) / "golden.jsonl"
        evaluate(dataset_path("contacts", "test"), [old.fine_tuned_model], client=openai, capture=golden, limit=20,
                 progress=False)
        print(f"captured {sum(1 for _ in golden.open())} answers of the old model to {golden.name}")

        # 2. Plan the move (nothing is created), then move.
        plan = openai.jobs.migrate(old.id, to=azure, dry_run=True).plan
        print("plan:", json.dumps({k: plan.to_json()[k] for k in ("to", "hyperparameters", "estimate")}, indent=1))
        new = openai.jobs.migrate(old.id, to=azure, wait=True).job
        assert new is not None and new.fine_tuned_model
        print(f"on Azure: {new.id} -> {new.fine_tuned_model} (migrated from {plan.lineage})")
        deployment = azure.deployments.create(new, name="contacts")

        # 3. The proof: the new model against the old one's answers (and the reference answers).
        report = evaluate(golden, [f"{deployment.name}"], client=azure, scorers=["exact", "similarity"],
                          progress=False)
        print(report.summary())


if __name__ == "__main__":
    main()
