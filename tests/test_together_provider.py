"""The together provider's own parts: what it refuses, how it reads Together's shapes, its
dedicated endpoints, and the pieces added for it (Transport's presigned requests, the
simulated backend's flags, the dialect's mount), each with its bad inputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import AuthenticationError, BadRequestError, NotFoundError, ProviderError, UnsupportedOperation
from finetune_sdk.providers.simulated import FLAVORS, SimulatedProvider, SimulatedSettings
from finetune_sdk.providers.simulated.flavors import OPENAI
from finetune_sdk.providers.together import TogetherProvider, TogetherSettings
from finetune_sdk.providers.together import parse
from finetune_sdk.testing import Emulator, emulator
from finetune_sdk.types import IDEMPOTENCY_KEY, REQUEST_DIGEST_KEY, Hyperparameters, JobSpec, JobStatus

TRAIN = dataset_path("contacts", "train")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with emulator(speed=0, dialect="together") as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> Iterator[FineTuneClient]:
    c = FineTuneClient("together", ledger=False, sleep=emu.clock.advance, clock=emu.clock.now,
                       base_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", **emu.client_settings("together"))
    yield c
    c.close()


def provider(**settings: Any) -> TogetherProvider:
    return TogetherProvider(TogetherSettings(api_key="k", **settings))


def spec(**kwargs: Any) -> JobSpec:
    hyper = kwargs.pop("hyperparameters", {})
    return JobSpec(model="Qwen/Qwen3-8B", training_file="file-1", hyperparameters=Hyperparameters(**hyper), **kwargs)


# ---------------------------------------------------------------------------- the create body
def test_the_body_maps_portable_and_local_trainer_names() -> None:
    body = provider().create_body(spec(hyperparameters={"n_epochs": 3, "batch_size": 16, "lora_rank": 8,
                                                        "learning_rate": 2e-5, "warmup_ratio": 0.1},
                                       validation_file="file-2", seed=7, suffix="x"))
    assert body["training_type"] == {"type": "Lora", "lora_r": 8, "lora_alpha": 16, "lora_trainable_modules":
                                     "all-linear"}
    assert (body["n_epochs"], body["batch_size"], body["learning_rate"], body["warmup_ratio"]) == (3, 16, 2e-5, 0.1)
    assert body["validation_file"] == "file-2" and body["n_evals"] == 3 and body["random_seed"] == 7
    assert body["training_method"] == {"method": "sft", "train_on_inputs": "auto"} and body["suffix"] == "x"
    full = provider().create_body(spec(method="dpo", hyperparameters={"lora": False, "beta": 0.3},
                                       extra={"n_checkpoints": 2, "wandb_key": "w"}))
    assert full["training_type"] == {"type": "Full"} and full["training_method"] == {"method": "dpo", "dpo_beta": 0.3}
    assert full["n_checkpoints"] == 2 and full["wandb_key"] == "w" and "training_type" not in provider().create_body(
        spec())


@pytest.mark.parametrize("kwargs, error, match", [
    ({"hyperparameters": {"learning_rate_multiplier": 2.0}}, UnsupportedOperation, "learning_rate_multiplier"),
    ({"hyperparameters": {"max_steps": 1, "lora_rank": 8, "packing": True}}, UnsupportedOperation,
     "max_steps, packing"),
    ({"hyperparameters": {"beta": 0.1}}, UnsupportedOperation, "beta without"),
    ({"method": "reinforcement"}, UnsupportedOperation, "reinforcement"),
    ({"metadata": {"team": "x", IDEMPOTENCY_KEY: "k"}}, UnsupportedOperation, "metadata \\(team\\)"),
    ({"integrations": [{"type": "wandb"}]}, UnsupportedOperation, "integrations"),
    ({"extra": {"suffix": "sneaky"}}, ValueError, "suffix"),
    ({"hyperparameters": {"lora": "yes"}}, ValueError, "true or false"),
    ({"hyperparameters": {"lora": False, "lora_rank": 8}}, ValueError, "contradicts lora_r"),
    ({"suffix": "s" * 30, "idempotency_key": "k"}, ValueError, "24 of them yours"),
    ({"suffix": "s" * 41}, ValueError, "40 characters"),
], ids=["lrm", "unknown-keys", "beta-sft", "rl", "metadata", "integrations", "extra-clash", "lora-type",
        "lora-full-rank", "suffix-with-tag", "suffix"])
def test_the_body_refuses_by_name(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        provider().create_body(spec(**kwargs))


def test_the_idempotency_key_travels_in_the_suffix() -> None:
    s = spec(suffix="recipes", idempotency_key="key-1", metadata={IDEMPOTENCY_KEY: "key-1",
                                                                  REQUEST_DIGEST_KEY: "abcdef0123"})
    suffix = provider().create_body(s)["suffix"]
    assert suffix == "recipes-" + parse.idempotency_tag("key-1", "abcdef0123") and len(suffix) <= 40
    assert parse.split_suffix(suffix) == ("recipes", (parse.key_hash("key-1"), "abcdef"))
    assert parse.split_suffix(parse.idempotency_tag("k", "0" * 32)) == (None, (parse.key_hash("k"), "000000"))
    for plain in (None, "", "my-suffix", "r123"):
        assert parse.split_suffix(plain)[1] is None


# ---------------------------------------------------------------------------- reading Together's shapes
@pytest.mark.parametrize("text, expected", [
    ("2023-05-17T17:35:45.123Z", "2023-05-17T17:35:45.123000+00:00"),
    ("2025-07-25T14:03:16.78Z", "2025-07-25T14:03:16.780000+00:00"),
    ("2025-07-25T14:03:16.123456789+00:00", "2025-07-25T14:03:16.123456+00:00"),
    ("2025-07-25T14:03:16", "2025-07-25T14:03:16+00:00"),
    (1734300000, "2024-12-15T22:00:00+00:00"),
    ("", None), (None, None), ("yesterday", None), ("2025-13-45T00:00:00Z", None),
])
def test_iso_time(text: Any, expected: str | None) -> None:
    got = parse.iso_time(text)
    assert (got.isoformat() if got else None) == expected


def test_files_are_read_by_processing_status() -> None:
    base = {"id": "file-1", "filename": "t.jsonl", "bytes": 3, "purpose": "fine-tune", "created_at": 1734300000}
    assert parse.file_from(base).status == "processed"  # older servers: no server-side check to wait for
    assert parse.file_from({**base, "processing_status": "RUNNING"}).status == "uploaded"
    bad = parse.file_from({**base, "processing_status": "INVALID_FORMAT",
                           "validation_report": {"valid": False, "error": "Line 3: no assistant"}})
    assert bad.status == "error" and bad.status_details == "Line 3: no assistant"
    assert "FAILED" in (parse.file_from({**base, "processing_status": "FAILED"}).status_details or "")
    with pytest.raises(KeyError):
        parse.file_from({"filename": "no id"})


def test_events_in_either_case_and_order_get_kinds_and_stable_ids() -> None:
    raw = [{"created_at": "2025-01-01T00:00:03Z", "type": "JOB_COMPLETE", "message": "done", "level": "Info"},
           {"created_at": "2025-01-01T00:00:02Z", "type": "CHECKPOINT_SAVE", "step": 50, "message": "ckpt",
            "level": "legacy_iwarning"},
           {"created_at": "2025-01-01T00:00:01Z", "type": "job_pending", "message": "hi"},
           {"created_at": "2025-01-01T00:00:01Z", "type": "job_pending", "message": "hi"},
           "not an event"]
    events = parse.events_from(raw)  # type: ignore[arg-type]
    assert [e.kind for e in events] == ["status", "status", "checkpoint", "status"]
    assert events[-1].data == {"status": JobStatus.SUCCEEDED.value} and events[2].data == {"step": 50}
    assert events[2].level == "warning" and len({e.id for e in events}) == 4
    assert [e.id for e in parse.events_from(raw)] == [e.id for e in events]  # type: ignore[arg-type]
    assert parse.events_from([]) == []
    assert parse.error_from_events([]) is None and parse.error_from_events(
        [{"type": "JOB_USER_ERROR", "message": "bad data"}, {"type": "job_stopped", "message": "x"}]) == \
        ("job_user_error", "bad data")


def test_checkpoints_and_metrics() -> None:
    ckpts = parse.checkpoints_from("ft-1", [{"step": 100, "checkpoint_type": "Final Merged"},
                                            {"step": 100, "checkpoint_type": "Final Adapter"},
                                            {"step": 50, "created_at": "2025-01-01T00:00:00Z"}, {"step": "x"}])
    assert [(c.id, c.step) for c in ckpts] == [("ft-1:50", 50), ("ft-1:100", 100)]
    points = parse.points_from([{"train/global_step": 2, "train/loss": 1.5, "train/learning_rate": 1e-5,
                                 "train/grad_norm": 0.3}, {"train/global_step": 2, "eval/loss": 1.7},
                                {"train/loss": 9.0}, "junk", {"train/global_step": 1, "train/loss": 2.0}])  # type: ignore[list-item]
    assert [p.step for p in points] == [1, 2]
    assert (points[1].train_loss, points[1].valid_loss, points[1].full_valid_loss) == (1.5, 1.7, 1.7)
    assert points[1].model_extra == {"learning_rate": 1e-5, "grad_norm": 0.3}


def test_estimated_finish() -> None:
    when = parse.iso_time("2025-01-01T00:00:00Z")
    got = parse.seconds_until(when, {"estimate_available": True, "seconds_remaining": 90})
    assert got is not None and got.isoformat() == "2025-01-01T00:01:30+00:00"
    for progress in (None, {}, {"estimate_available": False, "seconds_remaining": 9},
                     {"estimate_available": True, "seconds_remaining": "soon"},
                     {"estimate_available": True, "seconds_remaining": True}):
        assert parse.seconds_until(when, progress) is None
    assert parse.seconds_until(None, {"estimate_available": True, "seconds_remaining": 1}) is None


# ---------------------------------------------------------------------------- upload over a mock transport
def mocked(handler: Any) -> TogetherProvider:
    return TogetherProvider(TogetherSettings(api_key="secret-key", base_url="https://api.example/v1", max_retries=1),
                            http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_the_upload_url_gets_no_credentials() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST" and request.url.path == "/v1/files":
            return httpx.Response(302, headers={"location": "https://bucket.example/up?sig=1",
                                                "x-together-file-id": "file-9"})
        if request.method == "PUT":
            return httpx.Response(200)
        return httpx.Response(200, json={"id": "file-9", "filename": "contacts.train.jsonl", "bytes": 1,
                                         "purpose": "fine-tune", "created_at": 1, "processing_status": "PENDING"})

    f = mocked(handler).upload(TRAIN)
    assert f.id == "file-9" and f.status == "uploaded"
    post, put, preprocess = seen
    assert b'name="checksum"' in post.content and post.headers["authorization"] == "Bearer secret-key"
    assert "authorization" not in put.headers and put.content == TRAIN.read_bytes()
    assert preprocess.url.path == "/v1/files/file-9/preprocess"


def test_an_upload_of_bytes_already_there_returns_that_file() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(409, json={"file_id": "file-old"})
        return httpx.Response(200, json={"id": "file-old", "filename": "t.jsonl", "bytes": 1, "purpose": "fine-tune",
                                         "created_at": 1})

    assert mocked(handler).upload(TRAIN).id == "file-old"


@pytest.mark.parametrize("answer", [httpx.Response(200, json={}), httpx.Response(302, headers={"location": "x"})])
def test_an_upload_without_an_upload_url_is_an_error(answer: httpx.Response) -> None:
    with pytest.raises(ProviderError, match="without an upload URL"):
        mocked(lambda request: answer).upload(TRAIN)


def test_only_together_s_file_types_upload(tmp_path: Any) -> None:
    other = tmp_path / "data.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match="jsonl, .parquet or .csv"):
        provider().upload(other)


# ---------------------------------------------------------------------------- through the client
def test_a_bad_key_never_leaks(emu: Emulator) -> None:
    c = FineTuneClient("together", ledger=False, api_key="sk-canary-together-0123", base_url=emu.together_base_url)
    with pytest.raises(AuthenticationError) as exc:
        c.jobs.list()
    assert exc.value.status_code == 401 and "sk-canary-together-0123" not in str(exc.value) + repr(c.provider.settings)
    c.close()


def test_events_metrics_and_the_idempotency_lookup(client: FineTuneClient, emu: Emulator) -> None:
    job = client.jobs.create(training_file=TRAIN, hyperparameters={"n_epochs": 1, "lora_alpha": 32}, suffix="t")
    assert job.hyperparameters["lora_rank"] == 16 and job.hyperparameters["lora_alpha"] == 32  # the model's default
    done = client.jobs.wait(job.id, progress=False)
    assert done.suffix == "t" and done.trained_tokens and done.finished_at and done.fine_tuned_model
    kinds = [e.kind for e in client.jobs.events(job.id)]
    assert kinds[0] == "status" and "checkpoint" in kinds and kinds[-1] == "status"
    assert len(client.jobs.metrics(job.id)) == 50
    assert client.provider.is_job_id(job.id) and not client.provider.is_job_id("ftjob-abc")
    key = job.metadata[IDEMPOTENCY_KEY]
    found = client.jobs.list(metadata={IDEMPOTENCY_KEY: key})
    assert [j.id for j in found] == [job.id] and found[0].metadata[REQUEST_DIGEST_KEY]
    with pytest.raises(UnsupportedOperation, match="team"):
        client.jobs.list(metadata={"team": "x"})


def test_a_failed_job_says_why(client: FineTuneClient, emu: Emulator) -> None:
    job = client.jobs.create(training_file=TRAIN, suffix="boom")
    emu.together.fail_job(job.id, at_step=2, message="Out of memory.")  # type: ignore[union-attr]
    emu.clock.advance(100)
    failed = client.jobs.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error and failed.error.message == "Out of memory."
    assert failed.error.code == "job_error"


def test_a_dedicated_endpoint_is_created_once_and_waited_for(client: FineTuneClient, emu: Emulator) -> None:
    job = client.jobs.create(training_file=TRAIN, model="Qwen/Qwen3-8B", hyperparameters={"n_epochs": 1},
                             suffix="ded")
    job = client.jobs.wait(job.id, progress=False)
    plan = emu.set_faults("POST /together/v1/endpoints: lost, ok")
    dep = client.deployments.create(job, name="demo")
    emu.set_faults(None)
    assert dep.name.startswith("endpoint-") and dep.raw_status == "STARTED" and dep.ready and dep.sku
    assert plan is not None and plan.requests["POST /together/v1/endpoints"] == 1  # the lost answer was found
    assert [d.name for d in client.deployments.list() if d.model == job.fine_tuned_model] == [dep.name]
    assert client.chat(dep, "hi").content.startswith("Fine-tuned model")
    assert client.chat(dep.name, "hi").content.startswith("Fine-tuned model")  # the id is looked up
    assert client.deployments.get(dep.name).raw_status == "STARTED"
    client.deployments.delete(dep)
    with pytest.raises(NotFoundError):
        client.deployments.get(dep.name)


def test_deployment_bad_inputs(client: FineTuneClient, emu: Emulator) -> None:
    job = client.jobs.wait(client.jobs.create(training_file=TRAIN, hyperparameters={"n_epochs": 1}).id,
                           progress=False)
    serverless = client.deployments.create(job.id)  # a job id, recognised as one
    assert serverless.raw_status == "serverless" and serverless.model == job.fine_tuned_model
    with pytest.raises(UnsupportedOperation, match="serverless"):
        client.deployments.delete(serverless)
    with pytest.raises(UnsupportedOperation, match="replicas"):
        client.deployments.create(job, replicas=3)
    with pytest.raises(NotFoundError):
        client.deployments.get("acme/nothing")
    with pytest.raises(NotFoundError):
        client.deployments.delete("acme/nothing")
    with pytest.raises(BadRequestError, match="hardware"):
        client.deployments.create(job, sku="1x_abacus")


# ---------------------------------------------------------------------------- the pieces added for Together
def test_flavors_must_name_every_phase_they_reach() -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="cancelling"):
        replace(OPENAI, name="x", gradual_cancel=True)
    with pytest.raises(ValueError, match="pausing, paused"):
        replace(FLAVORS["together"], name="y", pausable=True)
    with pytest.raises(ValueError, match="deployment_states"):
        replace(OPENAI, name="z", deployment_states={"started": "ON"})


def test_the_simulated_backend_s_additions(tmp_path: Any) -> None:
    sim = SimulatedProvider(SimulatedSettings(flavor="together", data_dir=str(tmp_path)))
    fid = sim.new_file_id()
    assert fid.startswith("file-") and sim.upload(TRAIN, file_id=fid).id == fid
    with pytest.raises(ValueError, match="already exists"):
        sim.upload(TRAIN, file_id=fid)
    job = sim.create_job(JobSpec(model="Qwen/Qwen3-8B", training_file=fid))
    with pytest.raises(BadRequestError, match="does not pause"):
        sim.pause_job(job.id)
    done, total, per_epoch = sim.progress(job.id)
    assert done == 0 and per_epoch == 50 and total % per_epoch == 0 and total > 0
    with pytest.raises(NotFoundError):
        sim.progress("ft-missing")
    with pytest.raises(NotFoundError):
        sim.raw_event_types("ft-missing")
    assert set(sim.raw_event_types(job.id).values()) == {"job_pending"}


def test_the_dialect_serves_only_the_together_flavor() -> None:
    from fastapi import FastAPI

    from finetune_sdk.server import ServerConfig
    from finetune_sdk.server.together import mount

    app = FastAPI()
    app.state.backends = {}
    with pytest.raises(ValueError, match="together"):
        mount(app, SimulatedProvider(SimulatedSettings(flavor="openai")), ServerConfig(), auth=lambda: None)


def test_the_body_of_a_stream_has_usage_in_its_last_chunk(emu: Emulator) -> None:
    with httpx.stream("POST", f"{emu.together_base_url}/chat/completions",
                      headers={"Authorization": f"Bearer {emu.api_key}"},
                      json={"model": "Qwen/Qwen3-8B", "messages": [{"role": "user", "content": "a b c"}],
                            "stream": True}) as answer:
        datas = [line[5:].strip() for line in answer.iter_lines() if line.startswith("data:")]
    chunks = [json.loads(d) for d in datas[:-1]]
    assert datas[-1] == "[DONE]" and chunks[-1]["usage"]["total_tokens"] > 0
    assert all("usage" not in c for c in chunks[:-1])
