"""The emulator's Azure OpenAI dialect and its Azure Resource Manager deployment routes.

Data plane: the real, unmodified ``openai.AzureOpenAI`` client (``api-key`` and Entra token
auth). Control plane (ARM) and api-version handling: plain httpx. Every JSON body is compared
with the shapes of the Azure example files by the ``wire`` fixture (tests/spec_check.py).
Time is frozen (``speed=0``) and moved with ``emu.clock.advance()``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from spec_check import WireRecorder, azure_example, wire  # noqa: F401  (wire is a fixture)

from finetune_sdk.server.wire import Wire
from finetune_sdk.testing import Emulator, emulator
from finetune_sdk.types import Event

DATASETS = Path(__file__).resolve().parents[1] / "finetune_sdk" / "datasets"
BASE = "gpt-4o-mini-2024-07-18"
VERSION = "2025-04-01-preview"
ARM_VERSION = "2024-10-01"
STANDARD = {"trainingType": "Standard"}
ACCOUNT = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.CognitiveServices/accounts/acct-1"


def _lines(name: str, n: int) -> bytes:
    with open(DATASETS / name, "rb") as fh:
        return b"".join(itertools.islice(fh, n))


TRAIN = _lines("contacts.train.jsonl", 20)
VALID = _lines("contacts.validation.jsonl", 10)
SMALL: Any = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 5}}}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with emulator(speed=0) as e:  # both dialects, as by default
        yield e


@pytest.fixture
def client(emu: Emulator, wire: WireRecorder) -> openai.AzureOpenAI:  # noqa: F811
    return emu.azure_client(api_version=VERSION, http_client=wire.http_client(), max_retries=0)


@pytest.fixture
def http(emu: Emulator, wire: WireRecorder) -> Iterator[httpx.Client]:  # noqa: F811
    with wire.http_client(base_url=emu.base_url) as c:
        yield c


def upload(client: openai.AzureOpenAI, emu: Emulator, data: bytes = TRAIN, name: str = "train.jsonl") -> str:
    f = client.files.create(file=(name, data), purpose="fine-tune")
    emu.clock.advance(emu.timings.file_processing)
    return f.id


def raw_job(client: openai.AzureOpenAI, job_id: str) -> dict[str, Any]:
    return client.fine_tuning.jobs.with_raw_response.retrieve(job_id).http_response.json()


def wait_for(emu: Emulator, client: openai.AzureOpenAI, job_id: str, *statuses: str, step: float | None = None,
             limit: float = 3600) -> tuple[dict[str, Any], list[str]]:
    """Advance the clock until the job's raw status is one of ``statuses``; returns the raw JSON and statuses seen."""
    step = step or emu.timings.step
    seen: list[str] = []
    waited = 0.0
    while True:
        job = raw_job(client, job_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in statuses:
            return job, seen
        if waited > limit:
            raise AssertionError(f"job {job_id} never reached {statuses}; saw {seen}")
        emu.clock.advance(step)
        waited += step


# ---------------------------------------------------------------------------------------------- data plane
def test_job_lifecycle_with_api_key(client: openai.AzureOpenAI, emu: Emulator) -> None:
    created = client.files.with_raw_response.create(file=("train.jsonl", TRAIN), purpose="fine-tune")
    assert created.http_response.status_code == 201
    f = created.parse()
    assert f.status == "pending" and re.fullmatch(r"file-[0-9a-f]{32}", f.id)
    emu.clock.advance(emu.timings.file_processing)
    assert client.files.retrieve(f.id).status == "processed"
    valid = upload(client, emu, VALID, "valid.jsonl")

    response = client.fine_tuning.jobs.with_raw_response.create(
        model=BASE, training_file=f.id, validation_file=valid, suffix="contacts", seed=7, extra_body=STANDARD,
        integrations=[{"type": "wandb", "wandb": {"project": "p", "tags": ["a"]}}])
    assert response.http_response.status_code == 201
    job = response.http_response.json()
    assert response.http_response.headers["location"] == f"{emu.azure_endpoint}/openai/fine_tuning/jobs/{job['id']}"
    assert re.fullmatch(r"ftjob-[0-9a-f]{32}", job["id"])
    assert job["status"] == "pending" and job["organization_id"] is None and job["result_files"] is None
    # Azure renders defaults as integers, -1 meaning "the service picks".
    assert job["hyperparameters"] == {"n_epochs": -1, "batch_size": -1, "learning_rate_multiplier": 1}
    assert job["seed"] == 7 and job["integrations"][0]["wandb"]["project"] == "p"
    assert response.parse().status == "pending"  # the SDK takes Azure's statuses as they are

    running, seen = wait_for(emu, client, job["id"], "running", step=1)
    assert seen == ["pending", "running"]
    assert running["result_files"] is None and running["fine_tuned_model"] is None
    assert running["trained_tokens"] is None and running["finished_at"] is None
    assert isinstance(running["hyperparameters"]["n_epochs"], int) and running["hyperparameters"]["n_epochs"] > 0

    done, _ = wait_for(emu, client, job["id"], "succeeded", "failed", "cancelled", step=30)
    assert done["status"] == "succeeded", done["error"]
    assert re.fullmatch(rf"{re.escape(BASE)}\.ft-[0-9a-f]{{32}}", done["fine_tuned_model"])
    assert done["fine_tuned_model"].endswith(job["id"].removeprefix("ftjob-"))
    assert isinstance(done["result_files"], list) and len(done["result_files"]) == 1
    assert done["trained_tokens"] > 0 and done["finished_at"] >= done["created_at"]

    events = list(client.fine_tuning.jobs.list_events(job["id"], limit=100))  # auto-paginates
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    assert len({e.id for e in events}) == len(events)
    assert {e.level for e in events} <= {"info", "warning", "error"}
    assert events[-1].message == "Job enqueued. Waiting for jobs ahead to complete."
    assert events[0].message == "Job succeeded."
    page = client.fine_tuning.jobs.list_events(job["id"], limit=3)
    assert page.has_more and [e.id for e in page.data] == [e.id for e in events[:3]]
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all({"step", "train_loss", "valid_loss"} <= set(e.data) for e in metrics)

    ckpts = client.fine_tuning.jobs.checkpoints.list(job["id"]).data
    assert len(ckpts) == 3 and ckpts[0].step_number > ckpts[1].step_number > ckpts[2].step_number
    assert all(c.fine_tuned_model_checkpoint == f"{done['fine_tuned_model']}:ckpt-step-{c.step_number}"
               for c in ckpts)

    result = client.files.retrieve(done["result_files"][0])
    assert result.filename == "results.csv" and result.purpose == "fine-tune-results"
    rows = list(csv.reader(io.StringIO(client.files.content(result.id).text)))
    assert rows[0] == ["step", "train_loss", "train_mean_token_accuracy", "valid_loss",
                       "validation_mean_token_accuracy", "full_valid_loss", "full_valid_mean_token_accuracy"]
    assert len(rows) - 1 == metrics[0].data["total_steps"]

    listed = client.fine_tuning.jobs.list()
    assert [j.id for j in listed.data] == [job["id"]]
    assert done["fine_tuned_model"] in [m.id for m in client.models.list()]


def test_entra_token_auth(emu: Emulator, wire: WireRecorder) -> None:  # noqa: F811
    client = emu.azure_client(api_version=VERSION, azure_ad_token_provider=lambda: emu.azure_token,
                              http_client=wire.http_client(), max_retries=0)
    file_id = upload(client, emu)
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id, extra_body=STANDARD)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "pending"
    wrong = emu.azure_client(api_version=VERSION, azure_ad_token_provider=lambda: "not-the-token",
                             http_client=wire.http_client(), max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        wrong.fine_tuning.jobs.list()
    assert exc.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        emu.azure_client(api_version=VERSION, api_key="wrong-key", http_client=wire.http_client(),
                         max_retries=0).files.list()


def test_training_type_is_required(client: openai.AzureOpenAI, emu: Emulator) -> None:
    file_id = upload(client, emu)
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model=BASE, training_file=file_id)
    # What Azure answers when trainingType is missing: misleading, but that is the service (litellm#24687).
    assert exc.value.body["message"] == "The specified base model does not support fine-tuning."
    assert client.fine_tuning.jobs.list().data == []
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id, extra_body={"trainingType": "Standard"})
    assert job.status == "pending"


def test_training_type_not_required_when_configured_off(wire: WireRecorder) -> None:  # noqa: F811
    with emulator(dialect="azure", speed=0, azure_require_training_type=False) as emu:
        client = emu.azure_client(http_client=wire.http_client(), max_retries=0)
        job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, emu))
        assert job.status == "pending"


def test_unsupported_model_and_bad_file(client: openai.AzureOpenAI, emu: Emulator) -> None:
    file_id = upload(client, emu)
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model="gpt-3.5-turbo-0125", training_file=file_id, extra_body=STANDARD)
    assert exc.value.body["message"] == "The specified base model does not support fine-tuning."
    bad = upload(client, emu, b'{"messages": []}\n' * 12, "bad.jsonl")
    assert client.files.retrieve(bad).status == "error"
    job = client.fine_tuning.jobs.create(model=BASE, training_file=bad, extra_body=STANDARD)
    failed, _ = wait_for(emu, client, job.id, "failed", "succeeded", step=1)
    assert failed["error"]["code"] and failed["error"]["message"] and failed["error"]["param"] == "training_file"
    assert failed["fine_tuned_model"] is None


def test_pause_resume_and_cancel(client: openai.AzureOpenAI, emu: Emulator,
                                 wire: WireRecorder) -> None:  # noqa: F811
    file_id = upload(client, emu)
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id, method=SMALL, extra_body=STANDARD)
    wait_for(emu, client, job.id, "running", step=1)
    with pytest.raises(openai.BadRequestError) as exc:  # "trained for at least one step" first
        client.fine_tuning.jobs.pause(job.id)
    assert exc.value.body["code"] == "unexpectedEntityState"
    emu.clock.advance(2 * emu.timings.step)

    old = emu.azure_client(api_version="2024-10-21", http_client=wire.http_client(), max_retries=0)
    for call in (old.fine_tuning.jobs.pause, old.fine_tuning.jobs.resume):
        with pytest.raises(openai.NotFoundError) as exc:
            call(job.id)
        assert exc.value.body == {"code": "404", "message": "Resource not found"}

    pausing = client.fine_tuning.jobs.pause(job.id)
    assert pausing.status == "pausing"
    paused, seen = wait_for(emu, client, job.id, "paused", step=1)
    assert seen == ["pausing", "paused"] and paused["finished_at"] is None
    emu.clock.advance(600)
    assert raw_job(client, job.id)["status"] == "paused"
    assert client.fine_tuning.jobs.resume(job.id).status == "running"
    done, _ = wait_for(emu, client, job.id, "succeeded", "failed")
    assert done["status"] == "succeeded"

    other = client.fine_tuning.jobs.create(model=BASE, training_file=file_id, method=SMALL, extra_body=STANDARD)
    assert client.fine_tuning.jobs.cancel(other.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.cancel(other.id)
    assert exc.value.body["code"] == "unexpectedEntityState"


def test_uploads_api(client: openai.AzureOpenAI) -> None:
    done = client.uploads.upload_file_chunked(file=TRAIN, filename="big.jsonl", bytes=len(TRAIN),
                                              mime_type="application/jsonl", purpose="fine-tune", part_size=2000)
    assert done.status == "completed" and done.file is not None
    assert client.files.content(done.file.id).content == TRAIN
    assert client.files.delete(done.file.id).deleted is True


def test_event_levels_render_per_dialect() -> None:
    # The simulated backend does not emit warnings; render one directly.
    event = Event(id="ftevent-1", created_at=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), level="warning",
                  message="Some lines were skipped.")
    assert Wire("azure").event(event)["level"] == "warning"
    assert Wire("openai").event(event)["level"] == "warn"
    assert Wire("azure").event(event)["created_at"] == 1735689600


def test_api_version_is_required(emu: Emulator, http: httpx.Client) -> None:
    headers = {"api-key": emu.api_key}
    for params in ({}, {"api-version": "2099-01-01"}, {"api-version": ""}):
        r = http.get("/openai/fine_tuning/jobs", params=params, headers=headers)
        assert r.status_code == 404 and r.json() == {"error": {"code": "404", "message": "Resource not found"}}
    r = http.get("/openai/files", params={"api-version": "2024-10-21"}, headers=headers)
    assert r.status_code == 200
    r = http.get("/openai/files", params={"api-version": VERSION})
    assert r.status_code == 401 and r.json()["error"]["code"] == "401"


# ---------------------------------------------------------------------------------------------- ARM
def _deployment_url(name: str) -> str:
    return f"{ACCOUNT}/deployments/{name}"


def _succeeded_model(client: openai.AzureOpenAI, emu: Emulator) -> str:
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, emu), method=SMALL,
                                         extra_body=STANDARD)
    done, _ = wait_for(emu, client, job.id, "succeeded", step=30)
    return str(done["fine_tuned_model"])


def test_arm_deployment_lifecycle_and_chat(client: openai.AzureOpenAI, emu: Emulator, http: httpx.Client) -> None:
    model = _succeeded_model(client, emu)
    auth = {"authorization": f"Bearer {emu.arm_token}"}
    params = {"api-version": ARM_VERSION}
    body = {"sku": {"name": "Standard", "capacity": 1},
            "properties": {"model": {"format": "OpenAI", "name": model, "version": "1"}}}
    t = emu.timings

    put = http.put(_deployment_url("contacts"), params=params, headers=auth, json=body)
    assert put.status_code == 201
    dep = put.json()
    assert dep["properties"]["provisioningState"] == "Accepted" and dep["properties"]["model"]["name"] == model
    assert dep["name"] == "contacts" and dep["id"] == _deployment_url("contacts")
    assert dep["type"] == "Microsoft.CognitiveServices/accounts/deployments"
    operation = put.headers["Azure-AsyncOperation"]
    assert http.get(operation, headers=auth).json()["status"] == "InProgress"

    messages: Any = [{"role": "user", "content": "Lena, 29, Riga"}]

    def chat_code() -> int | str:
        try:
            client.chat.completions.create(model="contacts", messages=messages)
        except openai.NotFoundError as exc:
            assert exc.body["code"] == "DeploymentNotFound"
            return "DeploymentNotFound"
        return 200

    states = []
    for _ in range(int(t.deploy_accepted + t.deploy_creating) + 2):
        state = http.get(_deployment_url("contacts"), params=params, headers=auth).json()
        states.append(state["properties"]["provisioningState"])
        if states[-1] == "Succeeded":
            break
        assert chat_code() == "DeploymentNotFound"
        emu.clock.advance(1)
    assert [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s] == ["Accepted", "Creating", "Succeeded"]
    assert http.get(operation, headers=auth).json()["status"] == "Succeeded"

    # Succeeded, but inference still 404s during the warm-up window, then answers.
    assert chat_code() == "DeploymentNotFound"
    emu.clock.advance(t.deploy_warmup - 1)
    assert chat_code() == "DeploymentNotFound"
    emu.clock.advance(1)
    answer = client.chat.completions.create(model="contacts", messages=messages)
    assert answer.choices[0].message.content and answer.model == model
    chunks = list(client.chat.completions.create(model="contacts", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None

    listed = http.get(f"{ACCOUNT}/deployments", params=params, headers=auth)
    assert listed.status_code == 200 and [d["name"] for d in listed.json()["value"]] == ["contacts"]
    again = http.put(_deployment_url("contacts"), params=params, headers=auth, json=body)
    assert again.status_code == 200 and "Azure-AsyncOperation" in again.headers

    assert http.delete(_deployment_url("contacts"), params=params, headers=auth).status_code == 200
    assert http.delete(_deployment_url("contacts"), params=params, headers=auth).status_code == 204
    missing = http.get(_deployment_url("contacts"), params=params, headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "DeploymentNotFound"
    assert chat_code() == "DeploymentNotFound"


def test_arm_errors(emu: Emulator, http: httpx.Client) -> None:
    auth = {"authorization": f"Bearer {emu.arm_token}"}
    body = {"sku": {"name": "Standard", "capacity": 1},
            "properties": {"model": {"format": "OpenAI", "name": "nope.ft-0123456789abcdef", "version": "1"}}}
    r = http.get(_deployment_url("x"), headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    r = http.put(_deployment_url("x"), headers=auth, json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    params = {"api-version": ARM_VERSION}
    r = http.get(f"{ACCOUNT}/deployments", params=params)
    assert r.status_code == 401 and r.json()["error"]["code"] == "AuthenticationFailed"
    r = http.get(f"{ACCOUNT}/deployments", params=params, headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    r = http.get(f"{ACCOUNT}/deployments", params=params, headers={"api-key": emu.api_key})
    assert r.status_code == 401  # the data-plane key is not an ARM token
    r = http.put(_deployment_url("x"), params=params, headers=auth, json=body)
    assert r.status_code == 400 and r.json()["error"]["code"]
    r = http.get(f"{ACCOUNT}/deployments", params=params, headers=auth)
    assert r.status_code == 200 and r.json()["value"] == []


def test_the_shape_check_rejects_what_azure_would_not_send() -> None:
    recorder = WireRecorder()
    job = azure_example("get_finetuning_job")
    recorder.check("GET", "/openai/fine_tuning/jobs/x", 200, job)
    assert recorder.failures == []
    recorder.check("GET", "/openai/fine_tuning/jobs/x", 200, {**job, "status": "queued"})  # an OpenAI status
    recorder.check("GET", "/openai/fine_tuning/jobs/x", 200, {**job, "hyperparameters": {"n_epochs": "auto"}})
    recorder.check("GET", "/openai/fine_tuning/jobs/x", 200, {k: v for k, v in job.items() if k != "model"})
    recorder.check("GET", "/openai/fine_tuning/jobs/x", 200, {**job, "result_files": None})  # allowed
    recorder.check("GET", "/openai/files/x", 200, {**azure_example("get_file"), "bytes": None})  # not allowed
    assert len(recorder.failures) == 4, recorder.failures
    put = azure_example("mgmt/PutDeployment", "201")
    recorder.failures.clear()
    recorder.check("PUT", f"{ACCOUNT}/deployments/d", 201, put)
    recorder.check("PUT", f"{ACCOUNT}/deployments/d", 201, {**put, "properties": {"model": put["properties"]["model"],
                                                                                  "provisioningState": "Ready"}})
    assert len(recorder.failures) == 1 and "provisioningState" in recorder.failures[0]
