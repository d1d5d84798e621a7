"""The whole hosted workflow — validate, upload, create, follow, metrics, deploy, chat, clean up — written
once and run against OpenAI or Azure OpenAI by switching the profile.

    python examples/openai_workflow.py [openai|azure]

Offline, it runs against the bundled emulator of both services (fast simulated time).
With real credentials, drop the emulator and use FineTuneClient.from_config("openai").
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.testing import emulator
from finetune_sdk.waiting import PollSchedule


def workflow(client: FineTuneClient) -> None:
    train, val = dataset_path("contacts", "train"), dataset_path("contacts", "validation")
    report = client.validate(train, validation_file=val)
    print(report.summary(), "| estimate:", report.estimate.billed_tokens if report.estimate else "-", "tokens")

    job = client.jobs.create(training_file=train, validation_file=val, hyperparameters={"n_epochs": 1},
                             suffix="contacts")
    print("created", job.id, job.status.value)
    for event in client.jobs.follow(job.id):
        if event.type == "message":
            print("  event:", event.message)
    job = client.jobs.wait(job.id, timeout=3600, progress=False)
    print("succeeded:", job.fine_tuned_model)

    metrics = client.jobs.metrics(job.id)
    print(f"{len(metrics)} metric points; train loss {metrics[0].train_loss} -> {metrics[-1].train_loss}")
    print("checkpoints:", [c.step for c in client.jobs.checkpoints(job.id)])

    deployment = client.deployments.create(job, name="contacts")
    print("deployed as", deployment.name)
    print("reply:", client.chat(deployment, "Tom is 27 and lives in Denver.").content)

    # Housekeeping; from a shell: finetune deployments list, finetune files list, finetune files delete ID.
    print("deployments:", [d.name for d in client.deployments.list()])
    for file_id in filter(None, (job.training_file, job.validation_file)):
        client.files.delete(file_id)  # the fine-tune no longer needs its data; don't keep it on the provider
    print("files left:", [(f.filename, f.purpose) for f in client.files.list()])


def main() -> int:
    profile = sys.argv[1] if len(sys.argv) > 1 else "openai"
    with emulator(speed=2000) as emu:
        config = Path(tempfile.mkdtemp()) / "finetune.toml"
        azure = emu.client_settings("azure")
        config.write_text(f"""
[profiles.openai]
provider = "openai"
base_url = "{emu.openai_base_url}"
base_model = "gpt-4o-mini-2024-07-18"

[profiles.azure]
provider = "azure"
endpoint = "{emu.azure_endpoint}"
subscription_id = "{azure['subscription_id']}"
resource_group = "{azure['resource_group']}"
account = "{azure['account']}"
arm_endpoint = "{emu.arm_endpoint}"
base_model = "gpt-4o-mini-2024-07-18"
""")
        # Secrets come from the environment (OPENAI_API_KEY / AZURE_OPENAI_API_KEY), never the file;
        # here they are passed explicitly for the emulator.
        client = FineTuneClient.from_config(profile, config=config, api_key=emu.api_key,
                                            credential=emu.credential(), ledger=False,
                                            poll=PollSchedule(initial=0.05, maximum=0.5, near_end=0.05))
        with client:
            workflow(client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
