"""Test your own fine-tuning pipeline against the emulator, with the official openai client.

    python -m pytest examples/emulator_in_your_tests.py -q      (or just run it: python examples/...)

The emulator speaks the OpenAI and Azure OpenAI fine-tuning APIs over real HTTP on a free
loopback port. Time is simulated (``emu.clock.advance``) and faults are injected on demand.
"""

from __future__ import annotations

import sys

import openai

from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.testing import emulator


def my_pipeline(client: openai.OpenAI, training_path: str) -> str:
    """Stands in for your code: upload, start a job, return its id."""
    with open(training_path, "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=file.id)
    return job.id


def test_pipeline_survives_rate_limits() -> None:
    with emulator(speed=0) as emu:
        emu.set_faults("POST /v1/fine_tuning/jobs: 429, ok")   # the first create is rate-limited
        client = emu.openai_client(max_retries=2)
        job_id = my_pipeline(client, str(dataset_path("contacts", "train")))
        emu.clock.advance(3600)                                # an hour passes
        job = client.fine_tuning.jobs.retrieve(job_id)
        assert job.status == "succeeded" and job.fine_tuned_model


if __name__ == "__main__":
    test_pipeline_survives_rate_limits()
    print("ok")
    sys.exit(0)
