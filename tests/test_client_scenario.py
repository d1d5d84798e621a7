"""The whole lifecycle through FineTuneClient, under one profile per hosted provider.

Identical test code for all: only the profile differs, and each profile is the one the
emulator prints (``Emulator.profile``). The emulator runs over real HTTP; time is simulated
(every wait and retry of the client advances the emulator's clock), so the runs are fast
and deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from finetune_sdk import FineTuneClient
from finetune_sdk.client import IDEMPOTENCY_KEY
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import DatasetError, IdempotencyError, JobFailedError, UnsupportedOperation, WaitTimeout
from finetune_sdk.ledger import Ledger
from finetune_sdk.providers import Capability
from finetune_sdk.testing import Emulator, emulator
from finetune_sdk.types import JobStatus

PROFILES = ["openai", "azure", "together", "fireworks"]
#: Providers whose service stores no job metadata: they refuse it (REFUSED) rather than drop it.
NO_METADATA = {"together"}

#: What a provider cannot expose, so that the one test body checks all it can (docs/providers.md).
#: Fireworks: no events endpoint (events are derived from the job object), no count of trained
#: tokens, no full-validation loss besides its evaluation loss, no checkpoints, no pause call.
LIMITS: dict[str, set[str]] = {"fireworks": {"server_events", "trained_tokens", "full_valid_loss", "checkpoints",
                                             "pause"}}


def can(client: FineTuneClient, what: str) -> bool:
    return what not in LIMITS.get(client.provider.name, set())


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with emulator(speed=0, dialect=PROFILES) as e:
        yield e


def write_config(tmp_path: Path, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    """finetune.toml with the emulator's profile for each provider; their secrets go to the environment."""
    text = 'default = "openai"\n'
    for provider in PROFILES:
        toml, env = emu.profile(provider, name=provider)
        text += "\n" + toml
        for var, value in env.items():
            monkeypatch.setenv(var, value)
    path = tmp_path / "finetune.toml"
    path.write_text(text)
    return path


def model_of(client: FineTuneClient) -> str:
    assert client.default_model
    return client.default_model


@pytest.fixture(params=PROFILES)
def client(request: pytest.FixtureRequest, emu: Emulator, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[FineTuneClient]:
    monkeypatch.setenv("FINETUNE_HOME", str(tmp_path / "home"))
    config = write_config(tmp_path, emu, monkeypatch)
    c = FineTuneClient.from_config(request.param, config=config, credential=emu.credential(),
                                   sleep=emu.clock.advance, clock=emu.clock.now)
    yield c
    c.close()


def test_full_lifecycle(client: FineTuneClient, emu: Emulator, tmp_path: Path) -> None:
    train, val = dataset_path("contacts", "train"), dataset_path("contacts", "validation")
    report = client.validate(train, validation_file=val)
    assert report.ok and report.examples == 300 and report.tokens and report.tokens.total_tokens > 0
    if client.provider.name in ("openai", "azure"):
        assert report.tokens.encoding == "o200k_base" and report.tokens.exact

    metadata = {} if client.provider.name in NO_METADATA else {"team": "search"}
    job = client.jobs.create(training_file=train, validation_file=val, hyperparameters={"n_epochs": 2},
                             suffix="recipes", metadata=metadata)
    assert job.status in (JobStatus.VALIDATING, JobStatus.QUEUED) and job.metadata.get("team") == metadata.get("team")
    assert job.metadata[IDEMPOTENCY_KEY]

    events = list(client.jobs.follow(job.id))
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "an event was repeated"
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)
    server = emu.backends[client.provider.name]
    # Without an events endpoint the events come from the job: reading them now must repeat the stream.
    truth = server.list_events(job.id) if can(client, "server_events") else client.jobs.events(job.id)
    assert ids == [e.id for e in truth], "the stream is not the complete, ordered event log"

    job = client.jobs.wait(job.id, timeout=3600, progress=False)
    assert job.status is JobStatus.SUCCEEDED and job.fine_tuned_model
    assert job.trained_tokens or not can(client, "trained_tokens")
    metrics = client.jobs.metrics(job.id)
    assert len(metrics) == job.hyperparameters["n_epochs"] * 50
    assert metrics[0].train_loss > metrics[-1].train_loss
    assert metrics[-1].valid_loss is not None
    assert metrics[-1].full_valid_loss is not None or not can(client, "full_valid_loss")
    csv = metrics.to_csv(tmp_path / "m.csv")
    assert csv.splitlines()[0].startswith("step,") and (tmp_path / "m.csv").is_file()
    if can(client, "checkpoints"):
        ckpts = client.jobs.checkpoints(job.id)
        assert [c.step for c in ckpts] == [50, 100] and all(c.model for c in ckpts)

    deployment = client.deployments.create(job, name="recipes")
    assert deployment.model == job.fine_tuned_model
    reply = client.chat(deployment, "Maria is 34 and lives in Lisbon.")
    assert "Fine-tuned" in reply.content and reply.usage.total_tokens > 0
    streamed = "".join(d.content for d in client.chat(deployment, "Maria is 34 and lives in Lisbon.", stream=True))
    assert streamed == reply.content
    base_model = model_of(client)
    base = client.chat(client.deployments.create(base_model, name="base") if client.provider.name == "azure"
                       else base_model, "hi")
    assert base.content.startswith("Base model")

    entry = Ledger(Path(client.ledger.path)).find(job.id)
    assert entry is not None and entry.status == "succeeded" and entry.profile == client.profile.name


def test_cancel_pause_resume(client: FineTuneClient, emu: Emulator) -> None:
    train = dataset_path("contacts", "train")
    doomed = client.jobs.create(training_file=train, suffix="cancel-me")
    cancelled = client.jobs.cancel(doomed.id)
    # Some services stop a job gradually (Together: cancel_requested, which is not terminal).
    assert cancelled.status is JobStatus.CANCELLED or not cancelled.is_terminal
    with pytest.raises(JobFailedError, match="cancelled") as exc:
        client.jobs.wait(doomed.id, progress=False)
    assert exc.value.job is not None and exc.value.job.id == doomed.id

    job = client.jobs.create(training_file=train, suffix="pausable")
    emu.clock.advance(30)  # validated, queued, running a few steps
    assert client.jobs.get(job.id).status is JobStatus.RUNNING
    caps = client.provider.capabilities
    if Capability.PAUSE in caps:
        paused = client.jobs.pause(job.id)
    elif Capability.RESUME in caps:  # the service pauses jobs itself (Fireworks: suspension, manual intervention)
        paused = emu.backends[client.provider.name].pause_job(job.id)
    else:  # no pause and no resume (Together): refused by name, and the job runs on
        with pytest.raises(UnsupportedOperation, match="pause"):
            client.jobs.pause(job.id)
        assert client.jobs.wait(job.id, progress=False).status is JobStatus.SUCCEEDED
        return
    emu.clock.advance(10)
    assert client.jobs.get(job.id).status is JobStatus.PAUSED
    assert paused.raw_status in ("paused", "pausing", "JOB_STATE_PAUSED")
    steps = len(client.jobs.metrics(job.id))
    emu.clock.advance(600)
    assert len(client.jobs.metrics(job.id)) == steps, "a paused job kept training"
    client.jobs.resume(job.id)
    assert client.jobs.wait(job.id, progress=False).status is JobStatus.SUCCEEDED


def test_each_create_call_makes_its_own_job(client: FineTuneClient, emu: Emulator) -> None:
    """A deliberate second call is a second job: the idempotency key identifies one call."""
    train = dataset_path("contacts", "train")
    a = client.jobs.create(training_file=train, suffix="twice")
    b = client.jobs.create(training_file=train, suffix="twice")
    assert a.id != b.id and a.metadata[IDEMPOTENCY_KEY] != b.metadata[IDEMPOTENCY_KEY]
    server = emu.backends[client.provider.name]
    server.fail_job(a.id)
    with pytest.raises(JobFailedError):
        client.jobs.wait(a.id, progress=False)
    rerun = client.jobs.create(training_file=train, suffix="twice")  # re-running after a failure trains again
    assert rerun.id not in (a.id, b.id) and client.jobs.get(rerun.id).status is not JobStatus.FAILED


def test_an_explicit_key_makes_one_job_across_calls(client: FineTuneClient, emu: Emulator) -> None:
    train = dataset_path("contacts", "train")
    key = f"nightly-{client.provider.name}-2026-12-02"
    first = client.jobs.create(training_file=train, suffix="keyed", idempotency_key=key)
    again = client.jobs.create(training_file=train, suffix="keyed", idempotency_key=key)
    assert again.id == first.id and first.metadata[IDEMPOTENCY_KEY] == key
    assert [j.id for j in client.jobs.list(metadata={IDEMPOTENCY_KEY: key})] == [first.id]
    # The same key for a different request is a mistake, not a match.
    with pytest.raises(IdempotencyError, match="different arguments") as exc:
        client.jobs.create(training_file=train, suffix="other", idempotency_key=key)
    assert exc.value.job is not None and exc.value.job.id == first.id
    # The key returns its job whatever became of it; a new key trains again.
    server = emu.backends[client.provider.name]
    server.fail_job(first.id)
    assert client.jobs.create(training_file=train, suffix="keyed", idempotency_key=key).id == first.id
    assert client.jobs.create(training_file=train, suffix="keyed", idempotency_key=key + "-2").id != first.id
    for bad in ("", "x" * 65):
        with pytest.raises(ValueError, match="idempotency_key"):
            client.jobs.create(training_file=train, idempotency_key=bad)


def test_failures_surface_clearly(client: FineTuneClient, emu: Emulator, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n' * 12)
    with pytest.raises(DatasetError, match="no_trainable_assistant") as exc:
        client.jobs.create(training_file=bad)
    assert exc.value.report is not None and not exc.value.report.ok
    train = dataset_path("contacts", "train")
    job = client.jobs.create(training_file=train, suffix="fails")
    server = emu.backends[client.provider.name]
    server.fail_job(job.id, at_step=3, message="Training diverged.")
    with pytest.raises(JobFailedError, match="Training diverged"):
        client.jobs.wait(job.id, progress=False)
    slow = client.jobs.create(training_file=train, suffix="slow")
    with pytest.raises(WaitTimeout) as timeout:
        client.jobs.wait(slow.id, timeout=20, progress=False)
    assert timeout.value.job is not None and not timeout.value.job.is_terminal
    assert "finetune jobs wait" in str(timeout.value)


#: Per provider: calls it must refuse, naming what it cannot do (never a silent no-op).
REFUSED: dict[str, list[tuple[Callable[[FineTuneClient], object], str]]] = {
    "openai": [(lambda c: c.deployments.delete("x"), "deleting a deployment"),
               (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"),
                                        hyperparameters={"lora_rank": 8}), "lora_rank")],
    "azure": [(lambda c: c.models.delete("gpt-4o-mini-2024-07-18.ft-0"), "deleting a fine-tuned model"),
              (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"),
                                       hyperparameters={"lora_rank": 8}), "lora_rank")],
    "together": [(lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"),
                                          hyperparameters={"learning_rate_multiplier": 2.0}),
                  "learning_rate_multiplier"),
                 (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"),
                                          hyperparameters={"lora_rank": 8, "max_steps": 10}), "max_steps"),
                 (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"),
                                          metadata={"team": "search"}), "metadata"),
                 (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"), method="reinforcement",
                                          validate=False), "reinforcement"),
                 (lambda c: c.jobs.pause("ft-00000000-0000-4000-8000-000000000000"), "pause"),
                 (lambda c: c.models.delete("x"), "delete_model"),
                 (lambda c: c.jobs.list(metadata={"team": "search"}), "metadata")],
    "fireworks": [(lambda c: c.jobs.pause("ftjob-0"), "pause"),
                  (lambda c: c.jobs.checkpoints("ftjob-0"), "checkpoints"),
                  (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"),
                                           hyperparameters={"learning_rate_multiplier": 2.0}),
                   "learning_rate_multiplier"),
                  (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"),
                                           hyperparameters={"warmup_ratio": 0.1}), "warmup_ratio"),
                  (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"), seed=7), "seed"),
                  (lambda c: c.jobs.create(training_file=dataset_path("contacts", "train"),
                                           metadata={"note": "x" * 40}), "metadata")],
}


def test_unsupported_operations_name_the_capability(client: FineTuneClient) -> None:
    for call, match in REFUSED[client.provider.name]:
        with pytest.raises(UnsupportedOperation, match=match):
            call(client)


def test_jobs_json_is_stable(client: FineTuneClient) -> None:
    from finetune_sdk.cli.jobs import job_json

    job = client.jobs.create(training_file=dataset_path("contacts", "train"), suffix="json")
    doc = job_json(job)
    assert {"id", "provider", "status", "raw_status", "model", "fine_tuned_model", "created_at", "error",
            "hyperparameters", "metadata"} <= set(doc)
    json.dumps(doc)
