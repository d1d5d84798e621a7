"""The emulator's Fireworks AI dialect, through the official, unmodified ``fireworks-ai`` SDK over HTTP.

The SDK's own types are the contract (there is no Fireworks OpenAPI file): every client is
built with ``_strict_response_validation=True``, so each answer is validated against the
SDK's pydantic models (an int64 sent as a number instead of a string fails, for example).
Time is frozen (``speed=0``) and moved with ``emu.clock.advance()``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

fireworks = pytest.importorskip("fireworks")
import httpx
from fireworks import Fireworks

from finetune_sdk.testing import Emulator, emulator

DATASETS = Path(__file__).resolve().parents[1] / "finetune_sdk" / "datasets"
BASE = "accounts/fireworks/models/qwen3-8b"
ACCT = "accounts/emulator"


def _lines(name: str, n: int) -> bytes:
    with open(DATASETS / name, "rb") as fh:
        return b"".join(itertools.islice(fh, n))


TRAIN = _lines("contacts.train.jsonl", 20)  # 20 examples
VALID = _lines("contacts.validation.jsonl", 10)
PREFERENCE = "".join(json.dumps({
    "input": {"messages": [{"role": "user", "content": f"Name a colour, please ({i})."}]},
    "preferred_output": [{"role": "assistant", "content": "Blue."}],
    "non_preferred_output": [{"role": "assistant", "content": "I would rather not say."}],
}) + "\n" for i in range(12)).encode()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with emulator(speed=0, dialect="fireworks") as e:
        yield e


def control(emu: Emulator, **kwargs: Any) -> Fireworks:
    return Fireworks(api_key=kwargs.pop("api_key", emu.api_key), base_url=emu.fireworks_base_url,
                     account_id=emu.account_id, max_retries=0, _strict_response_validation=True, **kwargs)


def inference(emu: Emulator) -> Fireworks:
    # With its base URL overridden, the SDK posts chat to {base_url}/v1/chat/completions.
    return Fireworks(api_key=emu.api_key, base_url=emu.fireworks_base_url + "/inference", max_retries=0,
                     _strict_response_validation=True)


@pytest.fixture
def fw(emu: Emulator) -> Fireworks:
    return control(emu)


def dataset(fw: Fireworks, emu: Emulator, did: str, data: bytes = TRAIN) -> str:
    fw.datasets.create(dataset_id=did, dataset={"displayName": did, "format": "CHAT", "userUploaded": {}})
    fw.datasets.upload(did, file=(f"{did}.jsonl", data))
    emu.clock.advance(emu.timings.file_processing)
    assert fw.datasets.get(did).state == "READY"
    return f"{ACCT}/datasets/{did}"


def until(emu: Emulator, get: Any, done: Any, limit: float = 7200) -> tuple[Any, list[str]]:
    """Advance the clock until ``done(get())``; also the states seen on the way."""
    seen: list[str] = []
    for _ in range(int(limit // 2)):
        value = get()
        if not seen or seen[-1] != value.state:
            seen.append(value.state)
        if done(value):
            return value, seen
        emu.clock.advance(2)
    raise AssertionError(f"not done after {limit} simulated seconds; seen {seen}")


def test_sft_lifecycle_deploy_and_chat(emu: Emulator, fw: Fireworks) -> None:
    train, valid = dataset(fw, emu, "contacts-train"), dataset(fw, emu, "contacts-valid", VALID)
    ds = fw.datasets.get("contacts-train")
    assert ds.example_count == "20" and ds.name == f"{ACCT}/datasets/contacts-train" and ds.format == "CHAT"

    job = fw.supervised_fine_tuning_jobs.create(
        dataset=train, evaluation_dataset=valid, base_model=BASE, supervised_fine_tuning_job_id="recipes-1",
        display_name="recipes", epochs=2, batch_size_samples=5, learning_rate=1e-4, lora_rank=16,
        max_context_length=4096, output_model="recipes-model")
    assert job.name == f"{ACCT}/supervisedFineTuningJobs/recipes-1" and job.state == "JOB_STATE_VALIDATING"
    assert job.output_model == f"{ACCT}/models/recipes-model" and job.lora_rank == 16 and job.epochs == 2
    assert job.status is not None and job.status.code == "OK" and job.create_time is not None

    percents: list[int] = []

    def get() -> Any:
        j = fw.supervised_fine_tuning_jobs.get("recipes-1")
        if j.job_progress and j.job_progress.percent is not None:
            percents.append(j.job_progress.percent)
        return j

    job, seen = until(emu, get, lambda j: j.state == "JOB_STATE_COMPLETED")
    assert seen == ["JOB_STATE_VALIDATING", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_WRITING_RESULTS",
                    "JOB_STATE_COMPLETED"]
    assert percents == sorted(percents) and percents[-1] == 100 and job.completed_time is not None
    assert job.job_progress is not None and job.job_progress.epoch == 1  # the last epoch, counted from 0

    assert job.metrics_file_signed_url
    lines = [json.loads(line) for line in httpx.get(job.metrics_file_signed_url).text.splitlines()]  # no API key
    assert [r["step"] for r in lines] == list(range(1, 9))  # 20 examples / 5 per batch x 2 epochs
    assert lines[0]["data"]["train/loss"] > lines[-1]["data"]["train/loss"]
    assert [r["step"] for r in lines if "eval/loss" in r["data"]] == [4, 8]  # evaluated at the end of each epoch

    model = fw.models.get("recipes-model")
    assert model.kind == "HF_PEFT_ADDON" and model.state == "READY" and model.fine_tuning_job == job.name
    assert model.peft_details is not None and model.peft_details.base_model == BASE and model.peft_details.r == 16
    assert f"{ACCT}/models/recipes-model" in [m.name for m in fw.models.list()]
    assert BASE in [m.name for m in fw.models.list(account_id="fireworks")]

    dep = fw.deployments.create(base_model=job.output_model, deployment_id="recipes-dep", min_replica_count=0,
                                max_replica_count=1, accelerator_type="NVIDIA_H100_80GB")
    assert dep.state == "CREATING" and dep.name == f"{ACCT}/deployments/recipes-dep"
    chat = inference(emu)
    with pytest.raises(fireworks.NotFoundError) as not_yet:
        chat.chat.completions.create(model=job.output_model, messages=[{"role": "user", "content": "hi"}])
    assert not_yet.value.body == {"message": "Model not found, inaccessible, and/or not deployed", "param": "model",
                                  "code": "NOT_FOUND", "type": "error"}
    dep, seen = until(emu, lambda: fw.deployments.get("recipes-dep"), lambda d: d.state == "READY")
    assert seen == ["CREATING", "READY"] and dep.accelerator_type == "NVIDIA_H100_80GB"

    reply = chat.chat.completions.create(model=job.output_model, messages=[{"role": "user", "content": "Maria, 34"}])
    assert reply.choices[0].message.content.startswith("Fine-tuned model") and reply.usage is not None
    pinned = chat.chat.completions.create(model=f"{job.output_model}#{ACCT}/deployments/recipes-dep",
                                          messages=[{"role": "user", "content": "Maria, 34"}])
    assert pinned.choices[0].message.content == reply.choices[0].message.content
    chunks = list(chat.chat.completions.create(model=job.output_model, stream=True,
                                               messages=[{"role": "user", "content": "Maria, 34"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is not None
    base = chat.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "hi"}])
    assert base.choices[0].message.content.startswith("Base model")

    fw.deployments.delete("recipes-dep")
    with pytest.raises(fireworks.NotFoundError):
        chat.chat.completions.create(model=job.output_model, messages=[{"role": "user", "content": "hi"}])
    fw.models.delete("recipes-model")
    with pytest.raises(fireworks.NotFoundError):
        fw.models.get("recipes-model")
    fw.supervised_fine_tuning_jobs.delete("recipes-1")
    assert [j.name for j in fw.supervised_fine_tuning_jobs.list()] == []


def test_the_wire_is_proto3_json(emu: Emulator, fw: Fireworks) -> None:
    dataset(fw, emu, "wire-check")
    raw = fw.datasets.with_raw_response.get("wire-check").http_response.json()
    assert raw["exampleCount"] == "20" and raw["createTime"].endswith("Z") and raw["userUploaded"] == {}
    assert raw["status"] == {"code": "OK", "message": ""} and "sourceJobName" not in raw  # unset: left out


def test_lists_page_with_tokens(emu: Emulator, fw: Fireworks) -> None:
    for i in range(5):
        fw.datasets.create(dataset_id=f"page-{i}", dataset={"format": "CHAT"})
    first = fw.datasets.list(page_size=2)
    assert [d.name.rsplit("/", 1)[-1] for d in first.datasets] == ["page-0", "page-1"] and first.next_page_token
    assert [d.name.rsplit("/", 1)[-1] for d in fw.datasets.list(page_size=2)] == [f"page-{i}" for i in range(5)]
    assert [d.name for d in fw.datasets.list(order_by="name desc")][0].endswith("page-4")
    with pytest.raises(fireworks.BadRequestError) as bad:
        fw.datasets.list(page_token="not-a-token")
    assert bad.value.body["code"] == 3


def test_large_files_go_through_a_signed_url(emu: Emulator, fw: Fireworks) -> None:
    fw.datasets.create(dataset_id="big", dataset={"format": "CHAT"})
    urls = fw.datasets.get_upload_endpoint("big", filename_to_size={"big.jsonl": str(len(TRAIN))})
    url = urls.filename_to_signed_urls["big.jsonl"]
    assert httpx.put(url, content=TRAIN[:-1]).status_code == 400  # the size was promised
    assert httpx.put(url, content=TRAIN, headers={"x-goog-content-length-range": f"{len(TRAIN)},{len(TRAIN)}"},
                     ).status_code == 200
    fw.datasets.validate_upload("big", body={})
    emu.clock.advance(emu.timings.file_processing)
    assert fw.datasets.get("big").state == "READY"
    download = fw.datasets.get_download_endpoint("big").filename_to_signed_urls
    assert [httpx.get(u).content for u in download.values()] == [TRAIN]
    with pytest.raises(fireworks.BadRequestError) as again:
        fw.datasets.upload("big", file=("again.jsonl", TRAIN))
    assert again.value.body["code"] == 9  # FAILED_PRECONDITION: a dataset holds one file


def test_dpo_job(emu: Emulator, fw: Fireworks) -> None:
    prefs = dataset(fw, emu, "prefs", PREFERENCE)
    with pytest.raises(fireworks.BadRequestError) as bad_beta:
        fw.dpo_jobs.create(dataset=prefs, training_config={"base_model": BASE},
                           loss_config={"method": "DPO", "dpo": {"beta": 0.6}})
    assert bad_beta.value.body["code"] == 3 and "beta" in bad_beta.value.body["message"]
    job = fw.dpo_jobs.create(dataset=prefs, dpo_job_id="prefs-1", display_name="prefs",
                             training_config={"base_model": BASE, "epochs": 1, "lora_rank": 8},
                             loss_config={"method": "DPO", "dpo": {"beta": 0.1}})
    assert job.name == f"{ACCT}/dpoJobs/prefs-1" and job.loss_config is not None and job.loss_config.dpo is not None
    assert job.loss_config.dpo.beta == 0.1 and job.training_config is not None
    assert job.training_config.output_model == f"{ACCT}/models/prefs-1"
    job, _ = until(emu, lambda: fw.dpo_jobs.get("prefs-1"), lambda j: j.state == "JOB_STATE_COMPLETED")
    signed = fw.dpo_jobs.get_metrics_file_endpoint("prefs-1").signed_url
    assert signed and httpx.get(signed).text.count("\n") >= 1
    with pytest.raises(fireworks.NotFoundError):  # a DPO job is not a supervised one
        fw.supervised_fine_tuning_jobs.get("prefs-1")


def test_cancel_and_resume(emu: Emulator, fw: Fireworks) -> None:
    train = dataset(fw, emu, "ctl")
    fw.supervised_fine_tuning_jobs.create(dataset=train, base_model=BASE, supervised_fine_tuning_job_id="doomed")
    assert fw.supervised_fine_tuning_jobs.cancel("doomed", body={}) == {}  # the route is unverified; {} here
    assert fw.supervised_fine_tuning_jobs.get("doomed").state == "JOB_STATE_CANCELLED"
    with pytest.raises(fireworks.BadRequestError) as twice:
        fw.supervised_fine_tuning_jobs.cancel("doomed", body={})
    assert twice.value.body["code"] == 9

    fw.supervised_fine_tuning_jobs.create(dataset=train, base_model=BASE, supervised_fine_tuning_job_id="held")
    emu.clock.advance(30)
    with pytest.raises(fireworks.BadRequestError):  # only a paused job resumes
        fw.supervised_fine_tuning_jobs.resume("held", body={})
    assert emu.fireworks is not None
    emu.fireworks.pause_job("held")  # what "account suspension or manual intervention" does
    assert fw.supervised_fine_tuning_jobs.get("held").state == "JOB_STATE_PAUSED"
    assert fw.supervised_fine_tuning_jobs.resume("held", body={}).state == "JOB_STATE_RUNNING"


def test_lora_addons_on_a_base_deployment(emu: Emulator, fw: Fireworks) -> None:
    train = dataset(fw, emu, "addon")
    fw.supervised_fine_tuning_jobs.create(dataset=train, base_model=BASE, supervised_fine_tuning_job_id="addon-1")
    job, _ = until(emu, lambda: fw.supervised_fine_tuning_jobs.get("addon-1"),
                   lambda j: j.state == "JOB_STATE_COMPLETED")
    fw.deployments.create(base_model=BASE, deployment_id="plain")
    with pytest.raises(fireworks.BadRequestError):  # addons need enableAddons
        fw.lora.load(model=job.output_model, deployment=f"{ACCT}/deployments/plain")
    fw.deployments.create(base_model=BASE, deployment_id="shared", enable_addons=True)
    loaded = fw.lora.load(model=job.output_model, deployment=f"{ACCT}/deployments/shared")
    assert loaded.state == "DEPLOYING" and loaded.default is True and loaded.name
    lid = loaded.name.rsplit("/", 1)[-1]
    loaded, seen = until(emu, lambda: fw.lora.get(lid), lambda m: m.state == "DEPLOYED")
    assert seen == ["DEPLOYING", "DEPLOYED"]
    assert [r.state for r in fw.models.get("addon-1").deployed_model_refs or []] == ["DEPLOYED"]
    with pytest.raises(fireworks.ConflictError):
        fw.lora.load(model=job.output_model, deployment=f"{ACCT}/deployments/shared")
    reply = inference(emu).chat.completions.create(model=f"{job.output_model}#{ACCT}/deployments/shared",
                                                   messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content.startswith("Fine-tuned")
    fw.lora.unload(lid)
    assert [m.name for m in fw.lora.list()] == []


def test_errors_are_grpc_statuses_the_sdk_parses(emu: Emulator, fw: Fireworks) -> None:
    with pytest.raises(fireworks.AuthenticationError) as unauth:
        control(emu, api_key="wrong").datasets.list()
    assert unauth.value.body["code"] == 16 and unauth.value.body["details"] == []
    with pytest.raises(fireworks.NotFoundError) as missing:
        fw.supervised_fine_tuning_jobs.get("no-such-job")
    assert missing.value.body["code"] == 5 and "no-such-job" in missing.value.body["message"]
    with pytest.raises(fireworks.PermissionDeniedError) as other:
        fw.datasets.list(account_id="someone-else")
    assert other.value.body["code"] == 7
    train = dataset(fw, emu, "errs")
    for kwargs, field in (({"dataset": train}, "baseModel"),  # neither baseModel nor warmStartFrom
                          ({"dataset": "errs", "base_model": BASE}, "dataset"),  # not a resource name
                          ({"dataset": train, "base_model": "accounts/fireworks/models/nope"}, "model"),
                          ({"dataset": train, "base_model": BASE, "lora_rank": 1000}, "loraRank"),
                          ({"dataset": train, "base_model": BASE, "supervised_fine_tuning_job_id": "9-starts-digit"},
                           "supervisedFineTuningJobId")):
        with pytest.raises(fireworks.BadRequestError) as bad:
            fw.supervised_fine_tuning_jobs.create(**kwargs)
        assert bad.value.body["code"] == 3, (kwargs, bad.value.body)
        assert field.lower() in bad.value.body["message"].lower(), (field, bad.value.body)
    with pytest.raises(fireworks.BadRequestError) as unknown:
        fw.supervised_fine_tuning_jobs.create(dataset=train, base_model=BASE, extra_body={"frobnicate": 1})
    assert unknown.value.body["code"] == 3 and "frobnicate" in unknown.value.body["message"]
    fw.datasets.create(dataset_id="dup", dataset={})
    with pytest.raises(fireworks.ConflictError) as dup:
        fw.datasets.create(dataset_id="dup", dataset={})
    assert dup.value.body["code"] == 6


def test_bad_requests_never_5xx(emu: Emulator) -> None:
    auth = {"authorization": f"Bearer {emu.api_key}"}
    with httpx.Client(base_url=emu.fireworks_base_url, headers=auth) as http:
        for method, path, kwargs in (
                ("POST", f"/v1/{ACCT}/datasets", {"content": b"{not json", "headers": {"content-type":
                                                                                       "application/json"}}),
                ("POST", f"/v1/{ACCT}/datasets", {"json": []}),
                ("POST", f"/v1/{ACCT}/supervisedFineTuningJobs", {"json": {"dataset": 7}}),
                ("POST", f"/v1/{ACCT}/datasets/x:upload", {"data": {"no": "file"}}),
                ("GET", f"/v1/{ACCT}/datasets/%2e%2e", {}),
                ("GET", f"/v1/{ACCT}/supervisedFineTuningJobs", {"params": {"pageSize": "many"}}),
                ("GET", f"/v1/{ACCT}/deployments", {"params": {"filter": "state=READY"}}),
                ("DELETE", f"/v1/{ACCT}/deployedModels/none", {}),
                ("PATCH", f"/v1/{ACCT}/datasets/x", {"json": {}})):
            r = http.request(method, path, **kwargs)
            assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
            body = r.json()
            assert set(body) == {"code", "message", "details"} and isinstance(body["code"], int), body
        r = http.post("/inference/v1/chat/completions", json={"model": BASE, "messages": []})
        assert r.status_code == 400 and r.json()["type"] == "error" and r.json()["code"] == "INVALID_ARGUMENT"


def test_injected_faults_speak_the_dialect(emu: Emulator, fw: Fireworks) -> None:
    plan = emu.set_faults(f"GET /fireworks/v1/{ACCT}/datasets: 503, 429; POST /fireworks/inference/*: 429")
    with pytest.raises(fireworks.InternalServerError) as unavailable:
        fw.datasets.list()
    assert unavailable.value.body["code"] == 14  # UNAVAILABLE
    with pytest.raises(fireworks.RateLimitError) as limited:
        fw.datasets.list()
    assert limited.value.body["code"] == 8 and limited.value.response.headers["retry-after"]
    with pytest.raises(fireworks.RateLimitError) as chat_limited:
        inference(emu).chat.completions.create(model=BASE, messages=[{"role": "user", "content": "hi"}])
    assert chat_limited.value.body["code"] == "RESOURCE_EXHAUSTED" and chat_limited.value.body["type"] == "error"
    assert plan is not None and sum(plan.injected.values()) == 3


# --------------------------------------------------------------------------- schemathesis over the dialect's routes

try:
    import schemathesis
    from hypothesis import HealthCheck, settings
    from schemathesis.checks import not_a_server_error
except ImportError:  # pragma: no cover - dev extra
    schemathesis = None


def _fuzz_app() -> Any:
    from finetune_sdk.providers.simulated import SimulatedProvider, SimulatedSettings
    from finetune_sdk.server import ServerConfig, create_app

    return create_app(dialects={"fireworks": SimulatedProvider(SimulatedSettings(flavor="fireworks", speed=0))},
                      config=ServerConfig(api_key=None, extra={"account_id": "emulator"}))


if schemathesis is not None:
    _APP = _fuzz_app()
    _SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", _APP).include(path_regex="^/fireworks/")

    @pytest.fixture(scope="module", autouse=True)
    def _close_fuzz_backend() -> Iterator[None]:
        yield
        for backend in _APP.state.backends.values():
            backend.uploads.close()
            backend.provider.close()

    @_SCHEMA.parametrize()
    @settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def test_fuzzed_requests_never_5xx(case: Any) -> None:
        if case.path_parameters and "account" in case.path_parameters:
            case.path_parameters["account"] = "emulator"  # past the account check, into the handlers
        case.validate_response(case.call(), checks=[not_a_server_error])
