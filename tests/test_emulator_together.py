"""The emulator's Together dialect, driven by Together's official, unmodified SDK over real HTTP.

Every answer under ``/together/v1`` is validated against Together's public OpenAPI
description by the ``together_wire`` fixture (tests/together_spec.py). Time is simulated
(``speed=0``): the tests move the clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("together")
pytest.importorskip("fastapi")

import together

from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.testing import Emulator, emulator
from spec_check import WireRecorder
from together_spec import TOGETHER, together_wire  # noqa: F401  (together_wire is a fixture)

BASE = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"  # fine-tunes of it are served without an endpoint
DEDICATED_ONLY = "Qwen/Qwen3-8B"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with emulator(speed=0, dialect="together") as e:
        yield e


@pytest.fixture
def sdk(emu: Emulator, together_wire: WireRecorder) -> Iterator[together.Together]:  # noqa: F811
    client = emu.together_client(http_client=together_wire.http_client(), max_retries=0)
    yield client
    client.close()


@pytest.fixture
def http(emu: Emulator, together_wire: WireRecorder) -> Iterator[httpx.Client]:  # noqa: F811
    """Plain HTTP to the dialect (for what the SDK does not call), through the same checks."""
    client = together_wire.http_client(base_url=emu.together_base_url,
                                       headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=30)
    yield client
    client.close()


def uploaded(sdk: together.Together, emu: Emulator, name: str = "train") -> str:
    f = sdk.files.upload(dataset_path("contacts", name), check=True)
    emu.clock.advance(5)
    return f.id


def test_the_sdk_trains_and_chats_from_start_to_end(sdk: together.Together, emu: Emulator,
                                                     together_wire: WireRecorder) -> None:  # noqa: F811
    f = sdk.files.upload(dataset_path("contacts", "train"), check=True)  # 302, PUT, preprocess
    assert f.id.startswith("file-") and f.purpose == "fine-tune" and f.bytes > 0
    emu.clock.advance(5)
    listed = sdk.files.retrieve(f.id)
    assert listed.processing_status == "COMPLETED"
    assert listed.validation_report is not None and listed.validation_report.nlines == 300
    assert sdk.files.content(f.id).read() == dataset_path("contacts", "train").read_bytes()
    val = uploaded(sdk, emu, "validation")

    job = sdk.fine_tuning.create(training_file=f.id, validation_file=val, model=BASE, n_epochs=2, n_evals=2,
                                 suffix="recipes", lora=True, lora_r=8, learning_rate=2e-5, train_on_inputs="auto")
    assert job.id.startswith("ft-") and job.status == "pending"
    assert job.output_name and job.output_name.endswith(tuple("0123456789abcdef")) and "-recipes-" in job.output_name
    seen = {job.status}
    for _ in range(200):
        emu.clock.advance(5)
        state = sdk.fine_tuning.retrieve(job.id)
        seen.add(state.status)
        if state.status in ("completed", "error", "cancelled"):
            break
    assert state.status == "completed", state
    assert {"pending", "queued", "running", "uploading", "completed"} <= seen
    assert state.x_model_output_name == job.output_name and state.training_type is not None

    events = sdk.fine_tuning.list_events(job.id).data
    types = [e.type for e in events]
    assert types[0] == "job_pending" and types[-1] == "job_complete"
    assert types.count("checkpoint_save") == 2 and "training_start" in types and "model_upload_complete" in types
    assert len({e.hash for e in events}) == len(events)
    ckpts = sdk.fine_tuning.list_checkpoints(job.id).data
    assert sorted(c.step for c in ckpts) == [50, 100] and {c.checkpoint_type for c in ckpts} == {"Final",
                                                                                                  "Intermediate"}
    metrics = sdk.fine_tuning.list_metrics(job.id).metrics or []
    train = [m for m in metrics if "train/loss" in m]
    evals = [m for m in metrics if "eval/loss" in m]
    assert len(train) == 100 and [m["train/global_step"] for m in evals] == [50.0, 100.0]
    assert train[0]["train/loss"] > train[-1]["train/loss"]

    reply = sdk.chat.completions.create(model=job.output_name, messages=[{"role": "user", "content": "Maria, 34"}])
    assert reply.choices[0].message.content.startswith("Fine-tuned model")
    stream = sdk.chat.completions.create(model=job.output_name, messages=[{"role": "user", "content": "Maria, 34"}],
                                         stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0

    assert any(j.id == job.id for j in sdk.fine_tuning.list().data)
    assert any(x.id == f.id for x in sdk.files.list().data)
    assert sdk.files.delete(f.id).deleted
    checked = " ".join(together_wire.checked)
    for schema in ("FileResponse", "FinetuneResponse ", "FinetuneResponseTruncated", "FineTuneModelLimits",
                   "FinetuneListEvents", "FinetuneListCheckpoints", "ChatCompletionChunk", "estimate-price"):
        assert schema in checked, f"nothing was validated against {schema}"


def test_cancelling_is_gradual(sdk: together.Together, emu: Emulator) -> None:
    job = sdk.fine_tuning.create(training_file=uploaded(sdk, emu), model=BASE, suffix="stop")
    emu.clock.advance(30)
    assert sdk.fine_tuning.cancel(job.id).status == "cancel_requested"
    assert sdk.fine_tuning.retrieve(job.id).status == "cancel_requested"  # not terminal: still stopping
    emu.clock.advance(5)
    assert sdk.fine_tuning.retrieve(job.id).status == "cancelled"
    types = [e.type for e in sdk.fine_tuning.list_events(job.id).data]
    assert types[-2:] == ["cancel_requested", "job_stopped"]
    with pytest.raises(together.BadRequestError):
        sdk.fine_tuning.cancel(job.id)


def test_dpo_and_full_training_are_rendered_as_asked(sdk: together.Together, emu: Emulator, tmp_path: Path) -> None:
    pref = tmp_path / "pref.jsonl"
    row = {"input": {"messages": [{"role": "user", "content": "Say hi"}]},
           "preferred_output": [{"role": "assistant", "content": "Hi!"}],
           "non_preferred_output": [{"role": "assistant", "content": "No."}]}
    pref.write_text("\n".join(json.dumps(row) for _ in range(20)) + "\n")
    f = sdk.files.upload(pref, check=True)
    emu.clock.advance(5)
    job = sdk.fine_tuning.create(training_file=f.id, model=DEDICATED_ONLY, training_method="dpo", dpo_beta=0.2,
                                 lora=False, batch_size=8)
    got = sdk.fine_tuning.retrieve(job.id)
    assert got.training_method.method == "dpo" and got.training_method.dpo_beta == 0.2
    assert got.training_type.type == "Full"


def test_a_bad_file_fails_its_job_with_a_reason(sdk: together.Together, emu: Emulator, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n' * 12)  # nothing to learn
    f = sdk.files.upload(bad, check=False)
    emu.clock.advance(5)
    got = sdk.files.retrieve(f.id)
    assert got.processing_status == "INVALID_FORMAT" and got.validation_report and not got.validation_report.valid
    job = sdk.fine_tuning.create(training_file=f.id, model=BASE)
    emu.clock.advance(30)
    assert sdk.fine_tuning.retrieve(job.id).status == "error"
    last = sdk.fine_tuning.list_events(job.id).data[-1]
    assert last.type == "job_error" and last.level == "error" and "file" in last.message


def test_a_non_serverless_fine_tune_needs_a_dedicated_endpoint(sdk: together.Together, emu: Emulator,
                                                                http: httpx.Client) -> None:
    job = sdk.fine_tuning.create(training_file=uploaded(sdk, emu), model=DEDICATED_ONLY, suffix="dedicated")
    emu.clock.advance(400)
    output = sdk.fine_tuning.retrieve(job.id).x_model_output_name
    with pytest.raises(together.BadRequestError, match="non-serverless"):
        sdk.chat.completions.create(model=output, messages=[{"role": "user", "content": "hi"}])

    hardware = http.get("/hardware", params={"model": output}).json()["data"][0]["id"]
    created = http.post("/endpoints", json={"model": output, "hardware": hardware, "display_name": "demo",
                                            "autoscaling": {"min_replicas": 1, "max_replicas": 2}})
    assert created.status_code == 200, created.text
    ep = created.json()
    assert ep["id"].startswith("endpoint-") and ep["state"] == "PENDING" and ep["name"].endswith(ep["id"][9:17])
    states = [ep["state"]]
    for _ in range(10):
        emu.clock.advance(2)
        states.append(http.get(f"/endpoints/{ep['id']}").json()["state"])
    assert states[0] == "PENDING" and "STARTING" in states and states[-1] == "STARTED"
    with pytest.raises(together.BadRequestError):  # chat addresses an endpoint by its name, not the model
        sdk.chat.completions.create(model=output, messages=[{"role": "user", "content": "hi"}])
    reply = sdk.chat.completions.create(model=ep["name"], messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content.startswith("Fine-tuned model")
    assert [e["id"] for e in http.get("/endpoints", params={"type": "dedicated"}).json()["data"]] == [ep["id"]]
    stopped = http.patch(f"/endpoints/{ep['id']}", json={"state": "STOPPED"}).json()
    assert stopped["state"] == "STOPPED"
    with pytest.raises(together.BadRequestError, match="not running"):
        sdk.chat.completions.create(model=ep["name"], messages=[{"role": "user", "content": "hi"}])
    assert http.delete(f"/endpoints/{ep['id']}").status_code == 204
    assert http.get(f"/endpoints/{ep['id']}").status_code == 404


def test_what_the_sdk_asks_before_creating(sdk: together.Together, emu: Emulator, http: httpx.Client) -> None:
    assert BASE in sdk.fine_tuning.model_limits(model_name=BASE).api_model_name
    assert BASE in http.get("/fine-tunes/models/supported").json()["models"]
    estimate = http.post("/fine-tunes/estimate-price", json={"training_file": uploaded(sdk, emu), "model": BASE,
                                                             "n_epochs": 2}).json()
    assert estimate["estimated_total_price"] > 0 and estimate["allowed_to_proceed"] is True
    direct = http.post("/files/upload", data={"purpose": "fine-tune", "file_name": "t.jsonl"},
                       files={"file": ("t.jsonl", dataset_path("contacts", "train").read_bytes())})
    assert direct.status_code == 200 and direct.json()["FileType"] == "jsonl"
    models = http.get("/models").json()
    assert isinstance(models, list) and any(m["id"] == BASE for m in models)


@pytest.mark.parametrize("call, error, status", [
    (lambda c: c.fine_tuning.retrieve("ft-00000000-0000-4000-8000-000000000000"), together.NotFoundError, 404),
    (lambda c: c.fine_tuning.model_limits(model_name="acme/not-a-model"), together.NotFoundError, 404),
    (lambda c: c.files.retrieve("file-missing"), together.NotFoundError, 404),
    (lambda c: c.fine_tuning.create(training_file="file-missing", model=BASE,
                                    model_limits=c.fine_tuning.model_limits(model_name=BASE)), together.BadRequestError,
     400),
    (lambda c: c.chat.completions.create(model="acme/unknown", messages=[{"role": "user", "content": "x"}]),
     together.NotFoundError, 404),
], ids=["unknown-job", "limits-of-an-unsupported-model", "unknown-file", "missing-training-file", "unknown-model"])
def test_errors_come_in_together_s_envelope(sdk: together.Together, call: object, error: type, status: int) -> None:
    with pytest.raises(error) as exc:
        call(sdk)  # type: ignore[operator]
    assert exc.value.status_code == status


def test_a_bad_key_is_a_401_in_together_s_envelope(emu: Emulator,
                                                   together_wire: WireRecorder) -> None:  # noqa: F811
    client = together.Together(api_key="wrong", base_url=f"{emu.base_url}/together",
                               http_client=together_wire.http_client(), max_retries=0)
    with pytest.raises(together.AuthenticationError) as exc:
        client.fine_tuning.list()
    body = exc.value.body
    assert exc.value.status_code == 401 and isinstance(body, dict)
    assert {"message", "type"} <= set(body.get("error", body)) and "API key" in str(exc.value)


@pytest.mark.parametrize("body, param", [
    ({"model": BASE, "training_file": "x", "n_epochs": 0}, "n_epochs"),
    ({"model": BASE, "training_file": "x", "batch_size": "big"}, "batch_size"),
    ({"model": BASE}, "training_file"),
    ({"model": BASE, "training_file": "x", "lora_rank": 8}, "lora_rank"),
    ({"model": BASE, "training_file": "x", "training_type": {"type": "Lora", "lora_r": 512, "lora_alpha": 8}},
     "training_type.lora_r"),
    ({"model": "acme/unknown", "training_file": "x"}, "model"),
    ({"model": BASE, "training_file": "x", "suffix": "s" * 41}, "suffix"),
    ({"model": BASE, "training_file": "x", "from_checkpoint": "ft-1"}, "from_checkpoint"),
], ids=["n_epochs", "batch_size", "no-file", "unknown-field", "rank-over-limit", "unknown-model", "long-suffix",
        "from-checkpoint"])
def test_bad_create_bodies_are_400s_naming_the_field(http: httpx.Client, body: dict, param: str) -> None:
    answer = http.post("/fine-tunes", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("POST", "/fine-tunes", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
    ("POST", "/files", {"data": {"purpose": "homework", "file_name": "a.jsonl"}}, 400),
    ("POST", "/files", {"data": {"purpose": "fine-tune", "file_name": "a.txt"}}, 400),
    ("POST", "/files/file-unknown/preprocess", {}, 404),
    ("POST", "/endpoints", {"json": {"model": BASE, "hardware": "1x_abacus", "autoscaling":
                                     {"min_replicas": 1, "max_replicas": 1}}}, 400),
    ("POST", "/endpoints", {"json": {"model": BASE, "hardware": "1x_nvidia_h100_80gb_sxm", "autoscaling":
                                     {"min_replicas": 3, "max_replicas": 1}}}, 400),
    ("GET", "/fine-tunes/ft-unknown/metrics", {"params": {"logged_at_from": "2026-01-01T00:00:00Z"}}, 400),
    ("POST", "/chat/completions", {"json": {"model": BASE, "messages": []}}, 400),
    ("GET", "/no-such-route", {}, 404),
])
def test_bad_requests_get_4xx_never_5xx(http: httpx.Client, method: str, path: str, kwargs: dict,
                                        status: int) -> None:
    answer = http.request(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]


def test_the_upload_url_needs_its_signature(emu: Emulator, http: httpx.Client) -> None:
    started = http.post("/files", data={"purpose": "fine-tune", "file_name": "a.jsonl"})
    assert started.status_code == 302 and started.headers["x-together-file-id"].startswith("file-")
    url = httpx.URL(started.headers["location"])
    forged = url.copy_set_param("signature", "0" * 64)
    assert httpx.put(str(forged), content=b"{}\n").status_code == 403
    assert httpx.put(str(url), content=b'{"text": "hi"}\n').status_code == 200
    wrong = http.post(f"/files/{started.headers['x-together-file-id']}/preprocess")
    assert wrong.status_code == 200 and wrong.json()["Processed"] is False  # accepted, being processed


def test_injected_faults_answer_in_together_s_envelope(emu: Emulator, http: httpx.Client) -> None:
    plan = emu.set_faults("GET /together/v1/fine-tunes: 503, 429")
    try:
        assert http.get("/fine-tunes").status_code == 503
        limited = http.get("/fine-tunes")
        assert limited.status_code == 429 and limited.headers["retry-after"]
        assert http.get("/fine-tunes").status_code == 200
    finally:
        emu.set_faults(None)
    assert plan is not None and plan.injected["503"] == 1


def test_the_description_s_patch_is_needed() -> None:
    """The cosine scheduler arguments match both oneOf members of the unpatched description."""
    import copy

    from spec_check import _as_json_schema

    raw = TOGETHER.document()["components"]["schemas"]["LRScheduler"]["properties"]["lr_scheduler_args"]
    assert "oneOf" in _as_json_schema(copy.deepcopy(raw))
    assert not TOGETHER.problems("LRScheduler", {"lr_scheduler_type": "cosine",
                                                 "lr_scheduler_args": {"min_lr_ratio": 0.0, "num_cycles": 0.5}})
