"""One fine-tuning workflow, four providers: switch by configuration, not code.

The function ``fine_tune_and_try`` below never names a provider. It runs unchanged against
OpenAI, Azure OpenAI, Together AI and Fireworks AI — here all four served offline by the
bundled emulator, each reached through a profile of a ``finetune.toml`` (written to a
temporary folder), with the secrets in environment variables as in real use. With real
services, only the profiles change:

    [profiles.together]
    provider = "together"                    # TOGETHER_API_KEY in the environment
    base_model = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"

Run it (no network, no keys; simulated hours pass in seconds):

    python examples/switch_providers.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.testing import emulator

PROFILES = ("openai", "azure", "together", "fireworks")


def fine_tune_and_try(client: FineTuneClient, question: str) -> dict[str, object]:
    """Validate, fine-tune, deploy and ask: the same calls whichever provider the client has."""
    train, valid = dataset_path("contacts", "train"), dataset_path("contacts", "validation")
    report = client.validate(train, validation_file=valid)  # by this provider's own dataset rules
    if not report.ok:
        raise SystemExit(report.summary())
    job = client.jobs.create(training_file=train, validation_file=valid, hyperparameters={"n_epochs": 2},
                             suffix="contacts")
    job = client.jobs.wait(job.id, progress=False)
    metrics = client.jobs.metrics(job.id)
    deployment = client.deployments.create(job, name="contacts")  # whatever "deploy" means there
    reply = client.chat(deployment, question)
    return {"provider": client.provider.name, "job": job.id, "status": job.status.value,
            "raw status": job.raw_status, "model": job.fine_tuned_model,
            "final loss": round(metrics[-1].train_loss, 3) if metrics else None,
            "reply tokens": reply.usage.total_tokens if reply.usage else None}


def main() -> None:
    with emulator(speed=0, dialect="all") as emu, tempfile.TemporaryDirectory() as tmp:
        # The configuration a user would keep in finetune.toml: one profile per provider.
        config = Path(tmp) / "finetune.toml"
        text = ""
        for provider in PROFILES:
            toml, secrets = emu.profile(provider, name=provider)
            text += toml + "\n"
            os.environ.update(secrets)  # secrets live in the environment, never in the file
        config.write_text(text)
        os.environ["FINETUNE_HOME"] = str(Path(tmp) / "home")
        print(text)

        for profile in PROFILES:
            # The only line that differs between providers is the profile's name.
            client = FineTuneClient.from_config(profile, config=config, credential=emu.credential(),
                                                sleep=emu.clock.advance, clock=emu.clock.now)
            with client:
                result = fine_tune_and_try(client, "Maria is 34 and lives in Lisbon.")
            print(" | ".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
