"""Fine-tune on this machine, follow it like a hosted job, then serve it and compare with the base.

    python examples/local_finetune.py                              # a tiny random model: seconds
    python examples/local_finetune.py --model smollm2-135m-instruct  # the embedded SmolLM2 (minutes on a CPU)

Everything lives in a temporary FINETUNE_HOME unless you pass --home.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.waiting import PollSchedule


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="base model (default: a tiny random Llama built here)")
    parser.add_argument("--home", default=None)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="finetune-example-"))
    model = args.model
    if model is None:
        from finetune_sdk.providers.local.training.tiny import make_tiny_model

        model = str(make_tiny_model(home / "tiny-model"))

    client = FineTuneClient("local", home=str(home), ledger=False, poll=PollSchedule(initial=0.5, maximum=2.0))
    job = client.jobs.create(model=model, training_file=dataset_path("contacts", "train"),
                             validation_file=dataset_path("contacts", "validation"), suffix="contacts",
                             hyperparameters={"batch_size": 8, "max_steps": args.steps, "eval_every": 3,
                                              "eval_max_examples": 16})
    print("created", job.id)
    for event in client.jobs.follow(job.id):
        print(" ", event.message)
    job = client.jobs.wait(job.id, progress=False)
    print("fine-tuned model:", job.fine_tuned_model)
    print("checkpoints:", [c.step for c in client.jobs.checkpoints(job.id)])

    deployment = client.deployments.create(job, name="contacts-example")
    try:
        reply = client.chat(deployment, "Tom is 27 and lives in Denver.", temperature=0, max_tokens=24)
        print("reply:", reply.content)
        if args.model:  # a named base model can be served next to its fine-tune: compare them
            result = client.compare(dataset_path("contacts", "test"), tuned=deployment, base=args.model,
                                    max_tokens=24)
            print(result.summary())
    finally:
        client.deployments.delete("contacts-example")   # stops the background server
    return 0


if __name__ == "__main__":
    sys.exit(main())
