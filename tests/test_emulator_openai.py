"""The emulator's OpenAI dialect, through the real, unmodified ``openai.OpenAI`` client over HTTP.

Every call of hosted-apis.md §1.1 (files, uploads, fine-tuning jobs, models, chat) is made
the way a user would make it; every JSON body and SSE chunk the emulator answers is checked
against the public OpenAI OpenAPI description by the ``wire`` fixture (tests/spec_check.py).
Time is frozen (``speed=0``) and moved with ``emu.clock.advance()``, so nothing sleeps.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from spec_check import WireRecorder, wire  # noqa: F401  (wire is a fixture)

from finetune_sdk.testing import Emulator, emulator

DATASETS = Path(__file__).resolve().parents[1] / "finetune_sdk" / "datasets"
BASE = "gpt-4o-mini-2024-07-18"


def _lines(name: str, n: int) -> bytes:
    with open(DATASETS / name, "rb") as fh:
        return b"".join(itertools.islice(fh, n))


TRAIN = _lines("contacts.train.jsonl", 20)        # 20 chat examples
VALID = _lines("contacts.validation.jsonl", 10)
PREFERENCE = "".join(json.dumps({
    "input": {"messages": [{"role": "user", "content": f"Name a colour, please ({i})."}]},
    "preferred_output": [{"role": "assistant", "content": "Blue."}],
    "non_preferred_output": [{"role": "assistant", "content": "I would rather not say."}],
}) + "\n" for i in range(12)).encode()
NO_ASSISTANT = "".join(json.dumps({"messages": [{"role": "user", "content": f"hello {i}"}]}) + "\n"
                       for i in range(12)).encode()

# 20 examples in batches of 5: 4 steps per epoch.
SMALL = {"n_epochs": 3, "batch_size": 5}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with emulator(speed=0) as e:  # both dialects, as by default
        yield e


@pytest.fixture
def client(emu: Emulator, wire: WireRecorder) -> openai.OpenAI:  # noqa: F811
    return emu.openai_client(http_client=wire.http_client(), max_retries=0)


@pytest.fixture
def http(emu: Emulator, wire: WireRecorder) -> Iterator[httpx.Client]:  # noqa: F811
    with wire.http_client(base_url=emu.base_url) as c:
        yield c


def upload(client: openai.OpenAI, emu: Emulator, data: bytes = TRAIN, name: str = "train.jsonl",
           purpose: Any = "fine-tune") -> str:
    """Upload a file and let the emulator process it."""
    f = client.files.create(file=(name, data), purpose=purpose)
    emu.clock.advance(emu.timings.file_processing)
    return f.id


def wait_for(emu: Emulator, client: openai.OpenAI, job_id: str, *statuses: str, step: float | None = None,
             limit: float = 3600) -> tuple[Any, list[str]]:
    """Advance the clock until the job reaches one of ``statuses``; also returns the statuses seen."""
    step = step or emu.timings.step
    seen: list[str] = []
    waited = 0.0
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        if job.status in statuses:
            return job, seen
        if waited > limit:
            raise AssertionError(f"job {job_id} never reached {statuses}; saw {seen}")
        emu.clock.advance(step)
        waited += step


def supervised(**hyper: Any) -> Any:
    return {"type": "supervised", "supervised": {"hyperparameters": hyper}}


# ---------------------------------------------------------------------------------------------- files
def test_files_create_retrieve_list_content_delete(client: openai.OpenAI, emu: Emulator) -> None:
    assert client.files.list().data == []  # an empty page is well-formed too
    ids = []
    for i, purpose in enumerate(("fine-tune", "user_data", "fine-tune")):
        f = client.files.create(file=(f"f{i}.jsonl", TRAIN), purpose=purpose)
        assert f.object == "file" and f.bytes == len(TRAIN) and f.filename == f"f{i}.jsonl" and f.purpose == purpose
        assert f.status == "uploaded"
        ids.append(f.id)
        emu.clock.advance(1)
    emu.clock.advance(emu.timings.file_processing)
    assert client.files.retrieve(ids[0]).status == "processed"

    newest_first = [f.id for f in client.files.list().data]
    assert newest_first == ids[::-1]
    assert [f.id for f in client.files.list(order="asc").data] == ids
    first = client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[:0:-1] and first.has_more
    rest = client.files.list(limit=2, after=first.data[-1].id)
    assert [f.id for f in rest.data] == [ids[0]] and not rest.has_more
    assert [f.id for f in client.files.list(limit=1)] == ids[::-1]  # auto-pagination follows `after`
    assert [f.id for f in client.files.list(purpose="user_data").data] == [ids[1]]
    assert client.files.list(purpose="vision").data == []

    assert client.files.content(ids[2]).content == TRAIN
    deleted = client.files.delete(ids[2])
    assert deleted.id == ids[2] and deleted.deleted is True and deleted.object == "file"
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(ids[2])
    with pytest.raises(openai.BadRequestError) as exc:
        client.files.create(file=("x.jsonl", TRAIN), purpose="nonsense")  # type: ignore[arg-type]
    assert exc.value.body["param"] == "purpose"


def test_files_expires_after(client: openai.OpenAI) -> None:
    f = client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune",
                            expires_after={"anchor": "created_at", "seconds": 3600})
    assert f.expires_at == f.created_at + 3600
    assert client.files.retrieve(f.id).expires_at == f.created_at + 3600
    assert client.files.create(file=("u.jsonl", TRAIN), purpose="fine-tune").expires_at is None
    with pytest.raises(openai.BadRequestError) as exc:
        client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune",
                            expires_after={"anchor": "created_at", "seconds": 60})
    assert "expires_after" in exc.value.message


def test_files_wait_for_processing(wire: WireRecorder) -> None:  # noqa: F811
    with emulator(dialect="openai", speed=50) as emu:  # 2 simulated seconds of processing = 0.04 s
        client = emu.openai_client(http_client=wire.http_client(), max_retries=0)
        f = client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune")
        done = client.files.wait_for_processing(f.id, poll_interval=0.02, max_wait_seconds=10)
        assert done.status == "processed"
        bad = client.files.create(file=("bad.jsonl", NO_ASSISTANT), purpose="fine-tune")
        failed = client.files.wait_for_processing(bad.id, poll_interval=0.02, max_wait_seconds=10)
        assert failed.status == "error" and failed.status_details


# ---------------------------------------------------------------------------------------------- uploads
def test_uploads_parts_out_of_order_then_complete_in_order(client: openai.OpenAI) -> None:
    a, b, c = TRAIN[:1000], TRAIN[1000:3000], TRAIN[3000:]
    up = client.uploads.create(bytes=len(TRAIN), filename="big.jsonl", mime_type="application/jsonl",
                               purpose="fine-tune")
    assert up.status == "pending" and up.object == "upload" and up.bytes == len(TRAIN)
    assert up.expires_at == up.created_at + 3600
    part_c = client.uploads.parts.create(up.id, data=c)
    part_a = client.uploads.parts.create(up.id, data=a)
    part_b = client.uploads.parts.create(up.id, data=b)
    assert part_a.object == "upload.part" and part_a.upload_id == up.id
    done = client.uploads.complete(up.id, part_ids=[part_a.id, part_b.id, part_c.id],
                                   md5=hashlib.md5(TRAIN).hexdigest())
    assert done.status == "completed" and done.file is not None
    assert done.file.bytes == len(TRAIN) and done.file.filename == "big.jsonl" and done.file.purpose == "fine-tune"
    assert client.files.content(done.file.id).content == TRAIN
    with pytest.raises(openai.BadRequestError):  # a completed upload takes no more parts
        client.uploads.parts.create(up.id, data=b"x")


def test_uploads_expires_after_is_the_files_policy(client: openai.OpenAI) -> None:
    # expires_after of an Upload is "the expiration policy for a file"; the Upload itself lasts an hour.
    up = client.uploads.create(bytes=len(TRAIN), filename="t.jsonl", mime_type="application/jsonl",
                               purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 86400})
    assert up.expires_at == up.created_at + 3600
    part = client.uploads.parts.create(up.id, data=TRAIN)
    done = client.uploads.complete(up.id, part_ids=[part.id])
    assert done.file is not None and done.file.expires_at == done.file.created_at + 86400
    assert client.files.retrieve(done.file.id).expires_at == done.file.created_at + 86400


def test_uploads_byte_count_mismatch_is_400(client: openai.OpenAI) -> None:
    up = client.uploads.create(bytes=len(TRAIN) + 1, filename="t.jsonl", mime_type="application/jsonl",
                               purpose="fine-tune")
    part = client.uploads.parts.create(up.id, data=TRAIN)
    with pytest.raises(openai.BadRequestError) as exc:
        client.uploads.complete(up.id, part_ids=[part.id])
    assert exc.value.status_code == 400 and str(len(TRAIN) + 1) in exc.value.message


def test_uploads_md5_is_checked(client: openai.OpenAI) -> None:
    up = client.uploads.create(bytes=len(TRAIN), filename="t.jsonl", mime_type="application/jsonl",
                               purpose="fine-tune")
    part = client.uploads.parts.create(up.id, data=TRAIN)
    with pytest.raises(openai.BadRequestError) as exc:
        client.uploads.complete(up.id, part_ids=[part.id], md5="0" * 32)
    assert exc.value.body["param"] == "md5"
    done = client.uploads.complete(up.id, part_ids=[part.id], md5=hashlib.md5(TRAIN).hexdigest())
    assert done.status == "completed"


def test_uploads_cancel(client: openai.OpenAI) -> None:
    up = client.uploads.create(bytes=10, filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    client.uploads.parts.create(up.id, data=b"0123456789")
    cancelled = client.uploads.cancel(up.id)
    assert cancelled.status == "cancelled" and cancelled.file is None
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(up.id, data=b"more")
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("upload_doesnotexist")


def test_uploads_upload_file_chunked(client: openai.OpenAI, tmp_path: Path) -> None:
    done = client.uploads.upload_file_chunked(file=TRAIN, filename="mem.jsonl", bytes=len(TRAIN),
                                              mime_type="text/jsonl", purpose="fine-tune", part_size=1500)
    assert done.status == "completed" and done.file is not None
    assert client.files.content(done.file.id).content == TRAIN
    path = tmp_path / "disk.jsonl"
    path.write_bytes(TRAIN)
    done = client.uploads.upload_file_chunked(file=path, mime_type="application/jsonl", purpose="fine-tune",
                                              part_size=2048, md5=hashlib.md5(TRAIN).hexdigest())
    assert done.status == "completed" and done.filename == "disk.jsonl"
    assert client.files.content(done.file.id).content == TRAIN


# ---------------------------------------------------------------------------------------------- jobs
def test_supervised_job_full_lifecycle(client: openai.OpenAI, emu: Emulator,
                                      wire: WireRecorder) -> None:  # noqa: F811
    train, valid = upload(client, emu), upload(client, emu, VALID, "valid.jsonl")
    integration = {"type": "wandb", "wandb": {"project": "emulator", "tags": ["t1"]}}
    job = client.fine_tuning.jobs.create(model=BASE, training_file=train, validation_file=valid, suffix="demo",
                                         seed=42, metadata={"team": "nlp"}, integrations=[integration],
                                         method=supervised(n_epochs=4, batch_size=5, learning_rate_multiplier=0.5))
    assert job.object == "fine_tuning.job" and job.id.startswith("ftjob-")
    assert job.status == "validating_files" and job.fine_tuned_model is None and job.finished_at is None
    assert job.seed == 42 and job.metadata == {"team": "nlp"} and job.organization_id
    assert job.integrations and job.integrations[0].wandb.project == "emulator"
    assert job.trained_tokens is None and job.result_files == [] and job.estimated_finish is None
    assert job.method.type == "supervised" and job.method.supervised.hyperparameters.n_epochs == 4

    running, seen = wait_for(emu, client, job.id, "running", step=1)
    assert seen == ["validating_files", "queued", "running"]
    assert running.estimated_finish is not None and running.fine_tuned_model is None
    assert running.hyperparameters.batch_size == 5 and running.hyperparameters.learning_rate_multiplier == 0.5

    done, seen = wait_for(emu, client, job.id, "succeeded", "failed", "cancelled")
    assert seen[-1] == "succeeded", done.error
    assert re.fullmatch(rf"ft:{re.escape(BASE)}:[^:]+:demo:[A-Za-z0-9]{{8}}", done.fine_tuned_model)
    assert done.finished_at is not None and done.trained_tokens and done.trained_tokens > 0
    assert done.estimated_finish is None and len(done.result_files) == 1

    # Events: newest first; metrics events carry the documented data keys (valid_* with a validation file).
    events = client.fine_tuning.jobs.list_events(job.id, limit=100)
    times = [e.created_at for e in events.data]
    assert times == sorted(times, reverse=True) and not events.has_more
    assert all(e.object == "fine_tuning.job.event" and e.level in ("info", "warn", "error") for e in events.data)
    metrics = [e for e in events.data if e.type == "metrics"]
    assert len(metrics) == 16
    for e in metrics:
        assert {"step", "train_loss", "total_steps", "train_mean_token_accuracy", "valid_loss",
                "valid_mean_token_accuracy"} <= set(e.data), e.data
        assert e.data["total_steps"] == 16
    assert any("full_valid_loss" in e.data for e in metrics)  # at the end of each epoch
    # after/limit pagination walks the same list; iterating a page auto-paginates.
    page1 = client.fine_tuning.jobs.list_events(job.id, limit=7)
    assert page1.has_more and [e.id for e in page1.data] == [e.id for e in events.data[:7]]
    page2 = client.fine_tuning.jobs.list_events(job.id, limit=7, after=page1.data[-1].id)
    assert [e.id for e in page2.data] == [e.id for e in events.data[7:14]]
    assert [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=7)] == [e.id for e in events.data]
    assert len(client.fine_tuning.jobs.list_events(job.id).data) == 20  # default limit

    # Checkpoints: one per epoch, only the last 3 kept, newest first, usable as models.
    ckpts = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in ckpts.data] == [16, 12, 8]
    for c in ckpts.data:
        assert c.fine_tuning_job_id == job.id and c.id.startswith("ftckpt_")
        assert c.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{c.step_number}"
        assert c.metrics.train_loss is not None and c.metrics.full_valid_loss is not None
    assert [c.id for c in client.fine_tuning.jobs.checkpoints.list(job.id, limit=1)] == [c.id for c in ckpts.data]

    # The result file: OpenAI's column names, one row per step.
    result = client.files.retrieve(done.result_files[0])
    assert result.purpose == "fine-tune-results"
    rows = list(csv.reader(io.StringIO(client.files.content(result.id).text)))
    assert rows[0] == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 17))

    # The model and its checkpoints answer chat.
    answer = client.chat.completions.create(model=done.fine_tuned_model,
                                            messages=[{"role": "user", "content": "Ann, 31, Oslo"}])
    assert answer.model == done.fine_tuned_model and answer.choices[0].message.content
    assert client.chat.completions.create(model=ckpts.data[-1].fine_tuned_model_checkpoint,
                                          messages=[{"role": "user", "content": "hi"}]).choices

    # Every answer above went through the schema checks.
    checked = " ".join(wire.checked)
    for name in ("OpenAIFile", "FineTuningJob", "ListFineTuningJobEventsResponse",
                 "ListFineTuningJobCheckpointsResponse", "CreateChatCompletionResponse"):
        assert name in checked


def test_job_without_suffix_and_defaults(client: openai.OpenAI, emu: Emulator) -> None:
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, emu))
    assert job.hyperparameters.n_epochs == "auto" and job.method.type == "supervised"
    assert isinstance(job.seed, int)  # generated when omitted
    done, _ = wait_for(emu, client, job.id, "succeeded", "failed", step=60)
    assert done.status == "succeeded"
    assert re.fullmatch(rf"ft:{re.escape(BASE)}:[^:]+::[A-Za-z0-9]{{8}}", done.fine_tuned_model)
    assert isinstance(done.hyperparameters.n_epochs, int)  # "auto" resolved once training starts


def test_job_with_deprecated_hyperparameters(client: openai.OpenAI, emu: Emulator) -> None:
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, emu),
                                         hyperparameters={"n_epochs": 2, "batch_size": 10,
                                                          "learning_rate_multiplier": 0.3})
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 10
    assert job.method.type == "supervised" and job.method.supervised.hyperparameters.n_epochs == 2
    done, _ = wait_for(emu, client, job.id, "succeeded", "failed")
    assert done.status == "succeeded"
    assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id).data] == [4, 2]


def test_dpo_job_on_a_preference_file(client: openai.OpenAI, emu: Emulator) -> None:
    pref = upload(client, emu, PREFERENCE, "pref.jsonl")
    job = client.fine_tuning.jobs.create(model=BASE, training_file=pref, method={
        "type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": 2, "batch_size": 4}}})
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.1
    done, _ = wait_for(emu, client, job.id, "succeeded", "failed")
    assert done.status == "succeeded", done.error
    assert done.method.dpo.hyperparameters.beta == 0.1
    assert done.fine_tuned_model.startswith(f"ft:{BASE}:")


def test_jobs_list_pagination_and_metadata_filter(client: openai.OpenAI, emu: Emulator) -> None:
    train = upload(client, emu)
    ids = []
    for meta in ({"team": "a"}, {"team": "b"}, {"team": "a", "run": "3"}):
        ids.append(client.fine_tuning.jobs.create(model=BASE, training_file=train, metadata=meta,
                                                  method=supervised(**SMALL)).id)
        emu.clock.advance(1)
    page = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == ids[:0:-1] and page.has_more
    rest = client.fine_tuning.jobs.list(limit=2, after=page.data[-1].id)
    assert [j.id for j in rest.data] == [ids[0]] and not rest.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == ids[::-1]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a"}).data] == [ids[2], ids[0]]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a", "run": "3"}).data] == [ids[2]]
    assert client.fine_tuning.jobs.list(metadata={"team": "zzz"}).data == []
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")


def test_cancel_pause_resume(client: openai.OpenAI, emu: Emulator) -> None:
    train = upload(client, emu)
    job = client.fine_tuning.jobs.create(model=BASE, training_file=train, method=supervised(**SMALL))
    with pytest.raises(openai.BadRequestError):  # not running yet
        client.fine_tuning.jobs.pause(job.id)
    wait_for(emu, client, job.id, "running", step=1)
    emu.clock.advance(3 * emu.timings.step)
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"
    steps_before = len([e for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data
                        if e.type == "metrics"])
    emu.clock.advance(600)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    steps_after = len([e for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"])
    assert steps_after == steps_before == 3  # no training while paused
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.pause(job.id)
    resumed = client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "running"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.resume(job.id)
    done, _ = wait_for(emu, client, job.id, "succeeded", "failed")
    assert done.status == "succeeded"
    with pytest.raises(openai.BadRequestError):  # already finished
        client.fine_tuning.jobs.cancel(job.id)

    other = client.fine_tuning.jobs.create(model=BASE, training_file=train, method=supervised(**SMALL))
    cancelled = client.fine_tuning.jobs.cancel(other.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    emu.clock.advance(600)
    assert client.fine_tuning.jobs.retrieve(other.id).status == "cancelled"
    assert client.fine_tuning.jobs.list_events(other.id).data[0].message


def test_bad_training_file_fails_the_job(client: openai.OpenAI, emu: Emulator) -> None:
    bad = upload(client, emu, NO_ASSISTANT, "bad.jsonl")
    f = client.files.retrieve(bad)
    assert f.status == "error" and f.status_details
    job = client.fine_tuning.jobs.create(model=BASE, training_file=bad)
    failed, seen = wait_for(emu, client, job.id, "failed", "succeeded", step=1)
    assert seen == ["validating_files", "failed"]
    assert failed.error is not None and failed.error.code == "invalid_training_file"
    assert failed.error.param == "training_file" and failed.error.message
    assert failed.fine_tuned_model is None and failed.finished_at is not None
    assert client.fine_tuning.jobs.list_events(job.id).data[0].level == "error"


def test_file_must_suit_the_method_and_validation_file_is_checked(client: openai.OpenAI, emu: Emulator) -> None:
    train, pref = upload(client, emu), upload(client, emu, PREFERENCE, "pref.jsonl")
    small_valid = upload(client, emu, _lines("contacts.validation.jsonl", 5), "small.jsonl")
    bad_valid = upload(client, emu, NO_ASSISTANT, "bad.jsonl")
    cases = [  # (job arguments, failing param or None for success)
        ({"training_file": train, "method": {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1}}}},
         "training_file"),  # chat data is no preference data
        ({"training_file": pref, "method": supervised(n_epochs=1)}, "training_file"),
        ({"training_file": train, "validation_file": bad_valid, "method": supervised(n_epochs=1)},
         "validation_file"),
        # a validation file may hold fewer than the 10 examples training needs
        ({"training_file": train, "validation_file": small_valid, "method": supervised(**SMALL)}, None),
    ]
    for kwargs, param in cases:
        job = client.fine_tuning.jobs.create(model=BASE, **kwargs)
        done, _ = wait_for(emu, client, job.id, "succeeded", "failed")
        if param is None:
            assert done.status == "succeeded", done.error
        else:
            assert done.status == "failed" and done.error.param == param, (kwargs, done.error)
            assert done.error.code == f"invalid_{param}"


@pytest.mark.parametrize("kwargs, param", [
    ({"method": supervised(n_epochs=0)}, "n_epochs"),
    ({"method": supervised(n_epochs=51)}, "n_epochs"),
    ({"method": supervised(batch_size=257)}, "batch_size"),
    ({"method": supervised(learning_rate_multiplier=0)}, "learning_rate_multiplier"),
    ({"hyperparameters": {"n_epochs": 51}}, "n_epochs"),
    ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}}}, "beta"),
    ({"suffix": "x" * 65}, "suffix"),
    ({"seed": -1}, "seed"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"extra_body": {"nepochs": 3}}, "nepochs"),
    ({"method": supervised(n_epoch=3)}, "n_epoch"),
])
def test_out_of_bounds_parameters_are_400(client: openai.OpenAI, emu: Emulator, kwargs: dict[str, Any],
                                          param: str) -> None:
    train = upload(client, emu, PREFERENCE if "dpo" in json.dumps(kwargs) else TRAIN)
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model=BASE, training_file=train, **kwargs)
    err = exc.value
    assert err.status_code == 400 and err.body["param"] and err.body["param"].endswith(param)
    assert err.body["message"].startswith(f"invalid {param}:"), err.body["message"]
    assert client.fine_tuning.jobs.list().data == []  # nothing was created


def test_missing_and_unknown_inputs(client: openai.OpenAI, emu: Emulator, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model=BASE, training_file="file-doesnotexist")
    assert exc.value.body["param"] == "training_file"
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model="not-a-model", training_file=upload(client, emu))
    assert exc.value.body["param"] == "model"
    r = http.post("/v1/fine_tuning/jobs", json={"model": BASE}, headers={"authorization": f"Bearer {emu.api_key}"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "Missing required parameter: 'training_file'."
    r = http.post("/v1/fine_tuning/jobs", content=b"{not json", headers={"authorization": f"Bearer {emu.api_key}",
                                                                           "content-type": "application/json"})
    assert r.status_code == 400 and "could not parse the JSON body" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------------------------- models
def test_models_list_retrieve_delete(client: openai.OpenAI, emu: Emulator) -> None:
    ids = [m.id for m in client.models.list()]
    assert BASE in ids
    base = client.models.retrieve(BASE)
    assert base.id == BASE and base.object == "model" and base.owned_by
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, emu), method=supervised(**SMALL))
    done, _ = wait_for(emu, client, job.id, "succeeded")
    tuned = client.models.retrieve(done.fine_tuned_model)
    assert tuned.id == done.fine_tuned_model and tuned.owned_by != "system"
    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client.models.delete(BASE)
    assert exc.value.status_code == 403
    with pytest.raises(openai.NotFoundError):
        client.models.delete(f"ft:{BASE}:org::nothere1")
    deleted = client.models.delete(done.fine_tuned_model)
    assert deleted.id == done.fine_tuned_model and deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(done.fine_tuned_model)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------------------------------------- chat
MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something nice"}]


def test_chat_completion(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=BASE, messages=MESSAGES)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == BASE
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant" and choice.message.content
    assert r.usage and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0

    short = client.chat.completions.create(model=BASE, messages=MESSAGES, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    short = client.chat.completions.create(model=BASE, messages=MESSAGES, max_completion_tokens=2)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2

    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=BASE, messages=MESSAGES, n=2)
    assert exc.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ft:nobody:org::abc", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=BASE, messages=MESSAGES, stream_options={"include_usage": True})
    assert exc.value.body["param"] == "stream_options"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=BASE, messages=MESSAGES, extra_body={"bogus": 1})
    assert exc.value.body["message"] == "Unrecognized request argument supplied: bogus"


def test_chat_streaming(client: openai.OpenAI, emu: Emulator, http: httpx.Client,
                        wire: WireRecorder) -> None:  # noqa: F811
    full = client.chat.completions.create(model=BASE, messages=MESSAGES).choices[0].message.content

    chunks = list(client.chat.completions.create(model=BASE, messages=MESSAGES, stream=True))
    assert chunks and all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == full
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"

    chunks = list(client.chat.completions.create(model=BASE, messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])

    chunks = list(client.chat.completions.create(model=BASE, messages=MESSAGES, stream=True, max_tokens=2))
    assert chunks[-1].choices[0].finish_reason == "length"

    # On the wire: SSE frames ending with [DONE].
    with http.stream("POST", "/v1/chat/completions", json={"model": BASE, "messages": MESSAGES, "stream": True},
                     headers={"authorization": f"Bearer {emu.api_key}"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in r.iter_lines() if line]
    assert all(f.startswith("data: ") for f in frames) and frames[-1] == "data: [DONE]"
    assert sum("CreateChatCompletionStreamResponse" in c for c in wire.checked) > 10  # each chunk was checked


# ---------------------------------------------------------------------------------------------- not supported
def test_graders_and_checkpoint_permissions_are_clean_4xx(client: openai.OpenAI) -> None:
    grader: Any = {"type": "string_check", "name": "g", "input": "{{sample.output_text}}", "reference": "x",
                   "operation": "eq"}
    calls = [
        lambda: client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x"),
        lambda: client.fine_tuning.alpha.graders.validate(grader=grader),
        lambda: client.fine_tuning.checkpoints.permissions.create("ft:x:ckpt-step-1", project_ids=["proj_1"]),
        lambda: client.fine_tuning.checkpoints.permissions.list("ft:x:ckpt-step-1"),
        lambda: client.fine_tuning.checkpoints.permissions.delete("cp_1", fine_tuned_model_checkpoint="ft:x"),
    ]
    for call in calls:
        with pytest.raises(openai.APIStatusError) as exc:
            call()
        assert 400 <= exc.value.status_code < 500
        assert "not supported" in exc.value.message


# ---------------------------------------------------------------------------------------------- auth
def test_missing_or_wrong_api_key_is_401(emu: Emulator, wire: WireRecorder, http: httpx.Client) -> None:  # noqa: F811
    r = http.get("/v1/fine_tuning/jobs")
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    r = http.get("/v1/files", headers={"authorization": "Basic abc"})
    assert r.status_code == 401
    wrong = openai.OpenAI(base_url=emu.openai_base_url, api_key="sk-wrong", http_client=wire.http_client(),
                          max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        wrong.models.list()
    assert exc.value.status_code == 401 and exc.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        wrong.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune")


# ---------------------------------------------------------------------------------------------- the checker itself
def test_the_recorder_rejects_nonconforming_bodies() -> None:
    recorder = WireRecorder()
    good = {"object": "file", "id": "file-1", "bytes": 1, "created_at": 1, "filename": "a", "purpose": "fine-tune",
            "status": "processed"}
    recorder.check("GET", "/v1/files/file-1", 200, good)
    assert recorder.failures == []
    recorder.check("GET", "/v1/files/file-1", 200, {**good, "expires_at": None})
    recorder.check("GET", "/v1/fine_tuning/jobs/x", 200, {"object": "fine_tuning.job"})
    recorder.check("POST", "/v1/files", 400, {"error": {"message": "m"}})
    recorder.check("GET", "/v1/unmapped", 200, {})
    assert len(recorder.failures) >= 4 and any("expires_at" in f for f in recorder.failures)
    with pytest.raises(AssertionError, match="do not conform"):
        recorder.assert_clean()
    # The documented patch: "paused" is a FineTuningJob status; "pending" is not (that is Azure's).
    from spec_check import schema_problems, validator
    job = {"object": "fine_tuning.job", "id": "ftjob-1", "created_at": 1, "error": None, "fine_tuned_model": None,
           "finished_at": None, "hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                                                    "learning_rate_multiplier": 1.0},
           "model": BASE, "organization_id": "org", "result_files": [], "status": "paused", "trained_tokens": None,
           "training_file": "file-1", "validation_file": None, "seed": 1}
    assert validator("FineTuningJob").is_valid(job)
    assert schema_problems("FineTuningJob", {**job, "status": "pending"})
    assert not schema_problems("FineTuningJob", {**job, "hyperparameters": {"learning_rate_multiplier": 1}})
    assert schema_problems("FineTuningJob", {**job, "hyperparameters": {"learning_rate_multiplier": 0}})
