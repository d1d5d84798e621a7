"""FireworksProvider's translation and its bad inputs: settings, ids, hyperparameters, the
metadata it keeps in displayName, the events it derives from a job, the metrics file, and
the transport pieces it relies on (gRPC statuses, page tokens, signed URLs without the key).
The lifecycle itself runs in test_client_scenario.py and test_client_faults.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from finetune_sdk import FineTuneClient
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import ConfigurationError, ConflictError, NotFoundError, ProviderError, UnsupportedOperation
from finetune_sdk.providers.fireworks import FireworksProvider, FireworksSettings
from finetune_sdk.providers.fireworks.translate import (create_body, display_name, events, key_job_id, metric_points,
                                                        parse_time, read_display_name, slug)
from finetune_sdk.providers.http import Transport, error_from_response
from finetune_sdk.retry import RetryPolicy, is_retryable
from finetune_sdk.testing import Emulator, emulator
from finetune_sdk.types import IDEMPOTENCY_KEY, REQUEST_DIGEST_KEY, Hyperparameters, JobSpec, JobStatus

BASE = "accounts/fireworks/models/qwen3-8b"


def spec(**kwargs: Any) -> JobSpec:
    hyper = kwargs.pop("hyperparameters", {})
    return JobSpec(model=kwargs.pop("model", BASE), training_file="ds", hyperparameters=Hyperparameters(**hyper),
                   **kwargs)


def body(s: JobSpec, evaluation: str | None = None) -> dict[str, Any]:
    return create_body(s, account="me", dataset="accounts/me/datasets/ds", evaluation=evaluation, output_model=None)


# --------------------------------------------------------------------------- settings and ids


def test_settings_explain_what_is_missing_or_wrong() -> None:
    with pytest.raises(ConfigurationError, match="account_id.*FIREWORKS_ACCOUNT_ID.*not an email"):
        FireworksSettings.resolve(provider="fireworks", explicit={"api_key": "k"}, env={})
    with pytest.raises(ConfigurationError, match="api_key.*FIREWORKS_API_KEY"):
        FireworksSettings.resolve(provider="fireworks", explicit={"account_id": "me"}, env={})
    for bad in ("me@example.com", "accounts/me", " me"):
        with pytest.raises(ConfigurationError, match="Invalid setting 'account_id'"):
            FireworksSettings.resolve(provider="fireworks", explicit={"api_key": "k", "account_id": bad}, env={})
    with pytest.raises(ConfigurationError, match="min_replicas"):
        FireworksSettings.resolve(provider="fireworks", explicit={"api_key": "k", "account_id": "me",
                                                                  "min_replicas": -1}, env={})
    s = FireworksSettings.resolve(provider="fireworks", env={"FIREWORKS_API_KEY": "k", "FIREWORKS_ACCOUNT_ID": "me"})
    assert s.base_url == "https://api.fireworks.ai" and s.account_id == "me"


@pytest.fixture
def provider() -> Iterator[FireworksProvider]:
    p = FireworksProvider(FireworksSettings(api_key="k", account_id="me"))
    yield p
    p.close()


def test_job_ids_and_bad_ones(provider: FireworksProvider) -> None:
    assert provider._job_path("ftjob-1") == ("supervisedFineTuningJobs",
                                             "/v1/accounts/me/supervisedFineTuningJobs/ftjob-1")
    assert provider._job_path("dpoJobs/x") == ("dpoJobs", "/v1/accounts/me/dpoJobs/x")
    assert provider._job_path("accounts/o/dpoJobs/x") == ("dpoJobs", "/v1/accounts/o/dpoJobs/x")
    for bad in ("", " ", "a b", "a/b/c", "models/x", "accounts/o/models/x", None):
        with pytest.raises(ValueError, match="not a Fireworks job id"):
            provider.get_job(bad)  # type: ignore[arg-type]
    for bad in ("", "a b"):
        with pytest.raises(ValueError, match="dataset"):
            provider.get_file(bad)
        with pytest.raises(ValueError, match="deployment"):
            provider.get_deployment(bad)
    assert provider.is_job_id("ftjob-1") and provider.is_job_id("dpoJobs/x") and provider.is_job_id("any-id")
    assert not provider.is_job_id("accounts/me/models/x") and not provider.is_job_id(BASE)
    with pytest.raises(ValueError, match="accounts/me/models"):
        provider.delete_model(BASE)
    with pytest.raises(ValueError, match="purpose"):
        provider.upload(dataset_path("contacts", "train"), purpose="batch")


def test_key_ids_and_slugs() -> None:
    assert key_job_id("k") == key_job_id("k") != key_job_id("k2")
    assert key_job_id("x" * 64).startswith("ftjob-") and len(key_job_id("x")) == 30
    assert slug("Recipes v1!", 40) == "recipes-v1" and slug("9 lives", 40) == "m-9-lives"
    assert slug("", 40) == "m" and len(slug("a" * 100, 40)) == 40 and slug("Ünïcode", 40) == "n-code"


# --------------------------------------------------------------------------- create bodies


def test_portable_hyperparameters_are_mapped() -> None:
    b = body(spec(hyperparameters={"n_epochs": 2, "batch_size": 8, "lora_rank": 16, "learning_rate": 1e-4,
                                   "max_length": 2048}), evaluation="accounts/me/datasets/v")
    assert {k: b[k] for k in ("epochs", "batchSizeSamples", "loraRank", "learningRate", "maxContextLength",
                              "baseModel", "evaluationDataset")} == {
        "epochs": 2, "batchSizeSamples": 8, "loraRank": 16, "learningRate": 1e-4, "maxContextLength": 2048,
        "baseModel": BASE, "evaluationDataset": "accounts/me/datasets/v"}
    assert "batchSize" not in b  # Fireworks' batchSize counts tokens, not examples
    auto = body(spec(hyperparameters={"n_epochs": "auto", "batch_size": "auto"}))
    assert "epochs" not in auto and "batchSizeSamples" not in auto
    dpo = body(spec(method="dpo", hyperparameters={"beta": 0.2, "n_epochs": 1}))
    assert dpo["lossConfig"] == {"method": "DPO", "dpo": {"beta": 0.2}} and dpo["trainingConfig"]["epochs"] == 1
    assert body(spec(method="dpo"))["lossConfig"] == {"method": "DPO"}  # the method is always sent
    own = body(spec(model="accounts/me/models/earlier"))
    assert own["warmStartFrom"] == "accounts/me/models/earlier" and "baseModel" not in own
    assert body(spec(extra={"wandbConfig": {"enabled": True}}))["wandbConfig"] == {"enabled": True}


@pytest.mark.parametrize("hyper, match", [
    ({"learning_rate_multiplier": 2.0}, "learning_rate_multiplier"),
    ({"warmup_ratio": 0.1, "gradient_checkpointing": True}, "gradient_checkpointing, warmup_ratio"),
    ({"beta": 0.1}, "beta without method=.dpo."),
])
def test_what_has_no_equivalent_is_refused_by_name(hyper: dict[str, Any], match: str) -> None:
    with pytest.raises(UnsupportedOperation, match=match):
        body(spec(hyperparameters=hyper))


@pytest.mark.parametrize("hyper, match", [
    ({"lora_rank": "8"}, "lora_rank"), ({"lora_rank": 0}, "lora_rank"), ({"lora_rank": 2.5}, "lora_rank"),
    ({"lora_rank": True}, "lora_rank"), ({"learning_rate": 0}, "learning_rate"), ({"learning_rate": "x"},
                                                                                   "learning_rate"),
    ({"max_context_length": 1024, "max_length": 2048}, "disagree"), ({"max_length": -1}, "max_length"),
])
def test_bad_values_are_value_errors(hyper: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        body(spec(hyperparameters=hyper))


@pytest.mark.parametrize("beta", [0, 0.5, -0.1, 1.0, True])
def test_dpo_beta_must_be_between_0_and_half(beta: Any) -> None:
    with pytest.raises(ValueError, match="beta"):
        body(spec(method="dpo", hyperparameters={"beta": beta}))


def test_what_fireworks_cannot_take_is_refused() -> None:
    for s, match in ((spec(method="reinforcement"), "reinforcement"), (spec(seed=1), "seed"),
                     (spec(integrations=[{"type": "wandb"}]), "integrations")):
        with pytest.raises(UnsupportedOperation, match=match):
            body(s)
    with pytest.raises(UnsupportedOperation, match="validation file for DPO"):
        body(spec(method="dpo"), evaluation="accounts/me/datasets/v")


def test_metadata_lives_in_the_display_name() -> None:
    meta = {IDEMPOTENCY_KEY: "k", REQUEST_DIGEST_KEY: "a" * 32, "team": "s&r ok"}
    text = display_name(meta)
    assert text == "ftsdk-req=" + "a" * 32 + " team=s%26r%20ok"  # the key is the job id, not repeated here
    assert read_display_name(text) == {REQUEST_DIGEST_KEY: "a" * 32, "team": "s&r ok"}
    assert read_display_name(display_name({"a=b c": "d=e f"})) == {"a=b c": "d=e f"}
    assert display_name({IDEMPOTENCY_KEY: "k"}) is None
    with pytest.raises(UnsupportedOperation, match="63 characters"):
        display_name({"note": "x" * 60})
    assert read_display_name("My nightly run") == {} and read_display_name(None) == {} and read_display_name("") == {}


# --------------------------------------------------------------------------- events, metrics, times


def reading(state: str, percent: int | None, updated: str, done: str | None = None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": "accounts/me/supervisedFineTuningJobs/j", "state": state,
                           "createTime": "2026-01-01T00:00:00Z", "updateTime": updated, **extra}
    if percent is not None:
        raw["jobProgress"] = {"percent": percent, "epoch": 0}
    if done:
        raw["completedTime"] = done
    return raw


def test_events_only_grow_and_keep_their_ids(provider: FireworksProvider) -> None:
    readings = [reading("JOB_STATE_VALIDATING", None, "2026-01-01T00:00:05Z"),
                reading("JOB_STATE_RUNNING", 25, "2026-01-01T00:01:00Z"),
                reading("JOB_STATE_RUNNING", 70, "2026-01-01T00:02:00Z"),
                reading("JOB_STATE_COMPLETED", None, "2026-01-01T00:04:00Z", "2026-01-01T00:03:00Z")]
    lists = [events(r, "j", provider.job_status(r["state"])) for r in readings]
    for earlier, later in zip(lists, lists[1:]):
        assert [e.id for e in later][:len(earlier)] == [e.id for e in earlier]
    final = lists[-1]
    assert [e.id for e in final] == ["j:created"] + [f"j:progress-{t}" for t in range(10, 101, 10)] + \
        ["j:JOB_STATE_COMPLETED"]
    assert [e.created_at for e in final] == sorted(e.created_at for e in final)
    assert final[-1].kind == "status" and final[-1].data["status"] == "succeeded"
    failed = events(reading("JOB_STATE_FAILED", 0, "2026-01-01T00:01:00Z", "2026-01-01T00:01:00Z",
                            status={"code": "INTERNAL", "message": "Training diverged."}), "j", JobStatus.FAILED)
    assert [e.id for e in failed] == ["j:created", "j:JOB_STATE_FAILED"] and failed[-1].level == "error"
    assert "Training diverged." in failed[-1].message


def test_metrics_file_lines() -> None:
    text = "\n".join([json.dumps({"step": 1, "timestamp": "t", "data": {"train/loss": 2.0, "train/epoch": 0.5,
                                                                       "train/learning_rate": 1e-4}}),
                      "not json", json.dumps([1, 2]), json.dumps({"data": {"train/loss": 1.0}}),
                      json.dumps({"step": 2, "loss": 1.5, "eval/loss": 1.7}),
                      json.dumps({"step": 1, "data": {"train/loss": 1.9}})])
    points = metric_points(text)
    assert [p.step for p in points] == [1, 2] and points[0].train_loss == 1.9  # a repeated step: the last wins
    assert points[1].train_loss == 1.5 and points[1].valid_loss == 1.7
    assert metric_points("") == []


def test_times_as_proto3_json_writes_them() -> None:
    assert parse_time("2026-01-01T00:00:00Z").isoformat() == "2026-01-01T00:00:00+00:00"  # type: ignore[union-attr]
    assert parse_time("2026-01-01T00:00:00.123456789Z").microsecond == 123456  # type: ignore[union-attr]
    assert parse_time("2026-01-01T01:00:00+01:00").utcoffset() is not None  # type: ignore[union-attr]
    for bad in (None, "", "yesterday", 5):
        assert parse_time(bad) is None


# --------------------------------------------------------------------------- the transport pieces


def test_grpc_statuses_become_code_names() -> None:
    def err(status: int, payload: Any) -> ProviderError:
        return error_from_response(httpx.Response(status, json=payload), "fireworks")

    assert err(404, {"code": 5, "message": "gone", "details": []}).code == "NOT_FOUND"
    assert err(403, {"code": 7, "details": [], "message": ""}).code == "PERMISSION_DENIED"
    conflict = err(409, {"code": 6, "message": "exists", "details": []})
    assert isinstance(conflict, ConflictError) and conflict.code == "ALREADY_EXISTS"
    assert not is_retryable(conflict)  # sending the same create again cannot succeed
    assert err(400, {"code": 99, "message": "odd"}).code == "99"  # not a gRPC code: kept as it came
    assert err(400, {"error": {"code": 5, "message": "x"}}).code == "5"  # not a gRPC status body
    assert err(404, {"message": "Model not found", "code": "NOT_FOUND", "param": "model", "type": "error"}).param \
        == "model"


def test_page_tokens_and_signed_urls() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        token = request.url.params.get("pageToken")
        if request.url.path == "/loop":
            return httpx.Response(200, json={"items": [{"id": 1}], "nextPageToken": "same"})
        pages = {None: ({"items": [{"id": 1}], "nextPageToken": "b"}), "b": {"items": [{"id": 2}]}}
        return httpx.Response(200, json=pages[token])

    http = Transport("t", "https://api.example", policy=lambda: RetryPolicy(attempts=1),
                     headers=lambda: {"Authorization": "Bearer secret"}, params=lambda: {"v": "1"},
                     client=httpx.Client(transport=httpx.MockTransport(handler)))
    assert [i["id"] for i in http.pages("/l", items="items", cursor="pageToken", token="nextPageToken")] == [1, 2]
    with pytest.raises(ProviderError, match="twice"):
        list(http.pages("/loop", items="items", cursor="pageToken", token="nextPageToken"))
    http.request("GET", "https://storage.example/signed?sig=1", presigned=True)
    assert "authorization" not in seen[-1].headers and "v" not in seen[-1].url.params
    http.request("GET", "/x")
    assert seen[-1].headers["authorization"] == "Bearer secret"


def test_streams_can_leave_out_stream_options() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        chunk = {"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        return httpx.Response(200, text=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n",
                              headers={"content-type": "text/event-stream"})

    http = Transport("t", "https://api.example", policy=lambda: RetryPolicy(attempts=1),
                     client=httpx.Client(transport=httpx.MockTransport(handler)))
    deltas = list(http.chat_stream("/chat", {"model": "m", "messages": []}, model="m", ask_usage=False))
    assert "stream_options" not in bodies[-1] and bodies[-1]["stream"] is True
    assert deltas[-1].usage is not None and deltas[-1].usage.total_tokens == 2
    list(http.chat_stream("/chat", {"model": "m", "messages": []}, model="m"))
    assert bodies[-1]["stream_options"] == {"include_usage": True}


def test_the_simulated_backend_takes_caller_chosen_job_ids(tmp_path: Any) -> None:
    from finetune_sdk.providers.simulated import SimulatedProvider, SimulatedSettings

    backend = SimulatedProvider(SimulatedSettings(flavor="fireworks", account="acme", speed=0))
    f = backend.upload(dataset_path("contacts", "train"))
    job = backend.create_job(JobSpec(model=BASE, training_file=f.id, suffix="named"), job_id="chosen")
    assert job.id == "chosen"
    with pytest.raises(ConflictError) as taken:
        backend.create_job(JobSpec(model=BASE, training_file=f.id), job_id="chosen")
    assert taken.value.code == "ALREADY_EXISTS"
    backend.clock.advance(3600)
    assert backend.get_job("chosen").fine_tuned_model == "accounts/acme/models/named"
    assert backend.create_job(JobSpec(model=BASE, training_file=f.id)).id.count("-") == 4  # a UUID
    backend.close()


def test_the_default_job_id_test_is_openai_style() -> None:
    from finetune_sdk.providers.base import Provider

    assert Provider().is_job_id("ftjob-abc") and not Provider().is_job_id("ft:gpt-4o-mini:org::x")


# --------------------------------------------------------------------------- against the emulator


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with emulator(speed=0, dialect="fireworks") as e:
        yield e


def client(emu: Emulator, **settings: Any) -> FineTuneClient:
    return FineTuneClient("fireworks", ledger=False, sleep=emu.clock.advance, clock=emu.clock.now, base_model=BASE,
                          **emu.client_settings("fireworks"), **settings)


def test_large_files_use_a_signed_url_without_the_key(emu: Emulator) -> None:
    sent: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [sent.append]})
    c = client(emu, upload_threshold=1000, http_client=http)
    f = c.files.upload(dataset_path("contacts", "train"))
    signed = [r for r in sent if "/_signed/upload/" in r.url.path]
    assert len(signed) == 1 and "authorization" not in signed[0].headers and signed[0].method == "PUT"
    assert c.files.wait_processed(f.id).status == "processed"
    assert c.files.content(f.id) == dataset_path("contacts", "train").read_bytes()
    c.files.delete(f.id)
    with pytest.raises(NotFoundError):
        c.files.get(f.id)
    c.close()


def test_list_filters_deploy_options_and_lora_addons(emu: Emulator) -> None:
    c = client(emu)
    job = c.jobs.create(training_file=dataset_path("contacts", "train"), hyperparameters={"n_epochs": 1},
                        metadata={"team": "a"})
    emu.clock.advance(1)  # created a second apart: newest first is then well defined
    other = c.jobs.create(training_file=dataset_path("contacts", "train"), hyperparameters={"n_epochs": 1},
                          metadata={"team": "b"})
    assert [j.id for j in c.jobs.list(metadata={"team": "a"})] == [job.id]
    assert [j.id for j in c.jobs.list(limit=1)] == [other.id]  # newest first
    job = c.jobs.wait(job.id, progress=False)
    with pytest.raises(ValueError, match="unknown deploy option"):
        c.deployments.create(job, name="x", region="EU")
    first = c.deployments.create(job, name="twice")
    assert c.deployments.create(job, name="twice").name == first.name  # the same model: the same deployment
    with pytest.raises(ConflictError):
        c.deployments.create(c.jobs.wait(other.id, progress=False), name="twice")
    with pytest.raises(NotFoundError):
        c.deployments.get("no-such-deployment")

    shared = httpx.post(f"{emu.fireworks_base_url}/v1/accounts/{emu.account_id}/deployments",
                        params={"deploymentId": "shared"}, json={"baseModel": BASE, "enableAddons": True},
                        headers={"authorization": f"Bearer {emu.api_key}"})
    assert shared.status_code == 200
    emu.clock.advance(60)
    addon = c.deployments.create(other.id, deployment="shared")
    assert addon.name.startswith("deployedModels/") and addon.ready and addon.raw_status == "DEPLOYED"
    assert c.chat(addon, "hi").content.startswith("Fine-tuned")
    assert addon.name in [d.name for d in c.deployments.list()]
    c.deployments.delete(addon)
    assert addon.name not in [d.name for d in c.deployments.list()]
    c.close()
