"""Fault injection in the emulator, seen from the official ``openai`` client and from raw HTTP.

Each fault kind of ``finetune_sdk.server.faults`` behaves as its docstring says: rate limits
and server errors in the right envelope and with the right headers, dropped connections that
never reach the handler, lost responses whose request *was* executed, slow answers, scripted
sequences, seeded probabilities, ``times`` limits, the Azure dialect, and the ``/_emulator``
admin routes that drive all of this over HTTP.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx
import openai

from finetune_sdk.server.faults import KINDS, FaultPlan, FaultRule, FaultSequence
from finetune_sdk.testing import Emulator, emulator

MODEL = "gpt-4o-mini-2024-07-18"
AZURE_VERSION = "2025-04-01-preview"
JOBS = "POST /v1/fine_tuning/jobs"
AZURE_JOBS = "POST /openai/fine_tuning/jobs"

OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}


def _example(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "You extract contact details."},
                         {"role": "user", "content": f"Reach Ana Silva {i} at ana{i}@example.com"},
                         {"role": "assistant",
                          "content": f'{{"name": "Ana Silva {i}", "email": "ana{i}@example.com"}}'}]}


@pytest.fixture(scope="module")
def training_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "train.jsonl"
    path.write_text("".join(json.dumps(_example(i)) + "\n" for i in range(12)), encoding="utf-8")
    return path


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # speed=0: simulated time only moves when a test says so.
    with emulator(speed=0) as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> openai.OpenAI:
    return emu.openai_client(max_retries=0, timeout=10)


@pytest.fixture
def http(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers={"authorization": f"Bearer {emu.api_key}"},
                      timeout=10) as c:
        yield c


@pytest.fixture
def training_file(client: openai.OpenAI, training_path: Path) -> str:
    with open(training_path, "rb") as fh:
        return client.files.create(file=fh, purpose="fine-tune").id


def _create_job(client: openai.OpenAI, training_file: str) -> Any:
    return client.fine_tuning.jobs.create(model=MODEL, training_file=training_file)


def _job_ids(client: openai.OpenAI) -> list[str]:
    return [j.id for j in client.fine_tuning.jobs.list(limit=100).data]


def _assert_openai_envelope(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == OPENAI_ERROR_KEYS, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    return err


def _assert_azure_envelope(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert {"code", "message"} <= set(err) <= {"code", "message", "target"}, err
    assert "type" not in err and "param" not in err
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    return err


# --------------------------------------------------------------------------- 429 and daily


def test_429_carries_retry_after_and_retry_after_ms(emu: Emulator, client: openai.OpenAI, training_file: str) -> None:
    plan = emu.set_faults([{"route": JOBS, "kind": "429", "retry_after": 2, "retry_after_ms": 1500}])
    with pytest.raises(openai.RateLimitError) as info:
        _create_job(client, training_file)
    exc = info.value
    assert exc.status_code == 429
    assert exc.response.headers["retry-after"] == "2"
    assert exc.response.headers["retry-after-ms"] == "1500"
    assert exc.code == "rate_limit_exceeded"
    err = _assert_openai_envelope(exc.response.json())
    assert err["type"] == "requests"
    assert plan is not None and plan.injected["429"] == 1
    emu.set_faults(None)
    assert _job_ids(client) == []  # the rate-limited request never reached the handler


def test_429_headers_over_raw_http(emu: Emulator, http: httpx.Client) -> None:
    emu.set_faults([{"route": "GET /v1/models", "kind": "429", "retry_after": 0.5, "retry_after_ms": 500}])
    r = http.get("/v1/models")
    assert r.status_code == 429
    assert float(r.headers["retry-after"]) == 0.5
    assert int(r.headers["retry-after-ms"]) == 500
    assert r.headers["content-type"].startswith("application/json")
    assert _assert_openai_envelope(r.json())["code"] == "rate_limit_exceeded"


def test_openai_client_retries_429_honouring_retry_after_ms(emu: Emulator, training_file: str) -> None:
    plan = emu.set_faults([{"route": JOBS, "kind": "429", "retry_after_ms": 20, "times": 2}])
    retrying = emu.openai_client(max_retries=2, timeout=10)
    start = time.monotonic()
    job = _create_job(retrying, training_file)
    assert time.monotonic() - start < 5  # it waited milliseconds, not the default back-off cap
    assert plan is not None
    assert plan.requests[JOBS] == 3 and plan.injected["429"] == 2
    assert _job_ids(retrying) == [job.id]


@pytest.mark.parametrize("spec", ["GET /v1/models: 429@1", "GET /v1/models: 429"])
def test_429_from_spec_string_carries_a_retry_after_header(emu: Emulator, http: httpx.Client, spec: str) -> None:
    emu.set_faults(spec)
    r = http.get("/v1/models")
    assert r.status_code == 429
    assert "retry-after" in r.headers or "retry-after-ms" in r.headers


def test_daily_limit_is_429_daily_rate_limit_exceeded(emu: Emulator, client: openai.OpenAI,
                                                       training_file: str) -> None:
    emu.set_faults(f"{JOBS}: daily")
    with pytest.raises(openai.RateLimitError) as info:
        _create_job(client, training_file)
    exc = info.value
    assert exc.status_code == 429
    assert exc.code == "daily_rate_limit_exceeded"
    err = _assert_openai_envelope(exc.response.json())
    assert err["code"] == "daily_rate_limit_exceeded" and "per day" in err["message"]
    emu.set_faults(None)
    assert _job_ids(client) == []


# --------------------------------------------------------------------------- 5xx


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_server_error_envelopes(emu: Emulator, client: openai.OpenAI, training_file: str, kind: str) -> None:
    plan = emu.set_faults(f"{JOBS}: {kind}")
    with pytest.raises(openai.InternalServerError) as info:
        _create_job(client, training_file)
    exc = info.value
    assert exc.status_code == int(kind)
    err = _assert_openai_envelope(exc.response.json())
    assert err == {"message": err["message"], "type": "server_error", "param": None, "code": None}
    assert plan is not None and plan.injected[kind] == 1
    emu.set_faults(None)
    assert _job_ids(client) == []  # an injected 5xx is answered before the handler runs


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_server_error_over_raw_http(emu: Emulator, http: httpx.Client, kind: str) -> None:
    emu.set_faults(f"GET /v1/fine_tuning/jobs: {kind}")
    r = http.get("/v1/fine_tuning/jobs")
    assert r.status_code == int(kind)
    assert _assert_openai_envelope(r.json())["type"] == "server_error"


def test_openai_client_retries_server_errors(emu: Emulator, training_file: str) -> None:
    plan = emu.set_faults(f"{JOBS}: 503, 500, ok")
    retrying = emu.openai_client(max_retries=2, timeout=10)
    job = _create_job(retrying, training_file)
    assert plan is not None and plan.requests[JOBS] == 3
    assert plan.injected == {"503": 1, "500": 1}
    assert _job_ids(retrying) == [job.id]


# --------------------------------------------------------------------------- drop, lost, slow


def test_drop_is_a_connection_error_and_the_request_is_not_executed(emu: Emulator, client: openai.OpenAI,
                                                                     training_file: str) -> None:
    plan = emu.set_faults(f"{JOBS}: drop")
    with pytest.raises(openai.APIConnectionError) as info:
        _create_job(client, training_file)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert plan is not None and plan.injected["drop"] == 1
    emu.set_faults(None)
    assert _job_ids(client) == []


def test_drop_over_raw_http(emu: Emulator, http: httpx.Client) -> None:
    emu.set_faults("GET /v1/models: drop")
    with pytest.raises(httpx.TransportError):
        http.get("/v1/models")
    emu.set_faults(None)
    assert http.get("/v1/models").status_code == 200  # the server is fine afterwards


def test_lost_is_a_connection_error_but_the_request_was_executed(emu: Emulator, client: openai.OpenAI,
                                                                  training_file: str) -> None:
    plan = emu.set_faults(f"{JOBS}: lost")
    with pytest.raises(openai.APIConnectionError) as info:
        _create_job(client, training_file)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert plan is not None and plan.injected["lost"] == 1
    emu.set_faults(None)
    jobs = client.fine_tuning.jobs.list().data
    assert len(jobs) == 1
    assert jobs[0].training_file == training_file and jobs[0].model == MODEL


def test_lost_plus_client_retry_creates_a_duplicate_job(emu: Emulator, training_file: str) -> None:
    """Why 'lost' exists: a retried non-idempotent POST runs twice."""
    plan = emu.set_faults(f"{JOBS}: lost")
    retrying = emu.openai_client(max_retries=1, timeout=10)
    job = _create_job(retrying, training_file)
    assert plan is not None and plan.requests[JOBS] == 2
    ids = _job_ids(retrying)
    assert len(ids) == 2 and job.id in ids


def test_lost_over_raw_http(emu: Emulator, http: httpx.Client, training_file: str) -> None:
    emu.set_faults(f"{JOBS}: lost")
    with pytest.raises(httpx.TransportError):
        http.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": training_file})
    emu.set_faults(None)
    assert len(http.get("/v1/fine_tuning/jobs").json()["data"]) == 1


def test_slow_past_the_client_timeout_is_an_api_timeout(emu: Emulator, client: openai.OpenAI,
                                                        training_file: str) -> None:
    plan = emu.set_faults([{"route": JOBS, "kind": "slow", "delay": 1.5}])
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).fine_tuning.jobs.create(model=MODEL, training_file=training_file)
    assert time.monotonic() - start < 1.4
    assert plan is not None and plan.injected["slow"] == 1


def test_slow_past_the_client_timeout_still_creates_the_job(emu: Emulator, client: openai.OpenAI,
                                                            training_file: str) -> None:
    emu.set_faults([{"route": JOBS, "kind": "slow", "delay": 1.0}])
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).fine_tuning.jobs.create(model=MODEL, training_file=training_file)
    deadline = time.monotonic() + 5
    jobs: list[str] = []
    while time.monotonic() < deadline:
        time.sleep(0.2)
        emu.set_faults(None)
        jobs = _job_ids(client)
        if jobs:
            break
    assert len(jobs) == 1


def test_slow_within_the_timeout_is_delayed_and_handled(emu: Emulator, client: openai.OpenAI,
                                                        training_file: str) -> None:
    emu.set_faults([{"route": JOBS, "kind": "slow", "delay": 0.4}])
    start = time.monotonic()
    job = _create_job(client, training_file)
    assert time.monotonic() - start >= 0.35
    emu.set_faults(None)
    assert _job_ids(client) == [job.id]


# --------------------------------------------------------------------------- sequences, probabilities, times


def test_sequence_applies_in_order_then_stops(emu: Emulator, client: openai.OpenAI, training_file: str) -> None:
    plan = emu.set_faults(f"{JOBS}: lost, ok, 429")
    with pytest.raises(openai.APIConnectionError):     # 1: lost -- executed, answer never arrives
        _create_job(client, training_file)
    second = _create_job(client, training_file)       # 2: ok
    with pytest.raises(openai.RateLimitError):         # 3: 429 -- not executed
        _create_job(client, training_file)
    fourth = _create_job(client, training_file)       # 4: the sequence is spent
    fifth = _create_job(client, training_file)
    assert plan is not None
    assert plan.requests[JOBS] == 5
    assert plan.injected == {"lost": 1, "429": 1}
    ids = _job_ids(client)
    assert len(ids) == 4 and {second.id, fourth.id, fifth.id} <= set(ids)


def test_sequence_only_counts_matching_requests(emu: Emulator, http: httpx.Client) -> None:
    plan = emu.set_faults("GET /v1/models: 503, ok, 500")
    statuses = []
    for _ in range(2):
        assert http.get("/v1/fine_tuning/jobs").status_code == 200  # other routes neither fault nor advance it
        statuses.append(http.get("/v1/models").status_code)
    statuses.append(http.get("/v1/models").status_code)
    statuses.append(http.get("/v1/models").status_code)
    assert statuses == [503, 200, 500, 200]
    assert plan is not None
    assert plan.requests["GET /v1/models"] == 4 and plan.requests["GET /v1/fine_tuning/jobs"] == 2


def test_route_globs(emu: Emulator, http: httpx.Client, client: openai.OpenAI, training_file: str) -> None:
    job = _create_job(client, training_file)
    emu.set_faults("GET /v1/fine_tuning/jobs/*: 500@1")
    assert http.get(f"/v1/fine_tuning/jobs/{job.id}").status_code == 500
    assert http.get(f"/v1/fine_tuning/jobs/{job.id}/events").status_code == 500
    assert http.get("/v1/fine_tuning/jobs").status_code == 200              # the list route does not match
    assert http.post(f"/v1/fine_tuning/jobs/{job.id}/cancel").status_code == 200  # nor does another method
    emu.set_faults("* /v1/models: 503@1")                                    # any method
    assert http.get("/v1/models").status_code == 503
    emu.set_faults("/v1/files*: 502@1")                                      # no method: any method
    assert http.get("/v1/files").status_code == 502
    emu.set_faults("*: 500@1")                                               # everything
    assert http.get("/health").status_code == 500
    assert http.get("/v1/models").status_code == 500


def test_ok_shields_later_rules(emu: Emulator, http: httpx.Client) -> None:
    plan = emu.set_faults("GET /v1/models: ok@1, 500@1")
    assert [http.get("/v1/models").status_code for _ in range(5)] == [200] * 5
    assert plan is not None and not plan.injected


def _statuses(emu: Emulator, http: httpx.Client, spec: str, seed: int, n: int = 40) -> list[int]:
    emu.set_faults(spec, seed=seed)
    return [http.get("/v1/models").status_code for _ in range(n)]


def test_probability_rules_are_reproducible_with_the_same_seed(emu: Emulator, http: httpx.Client) -> None:
    spec = "GET /v1/models: 500@0.5"
    first = _statuses(emu, http, spec, seed=7)
    again = _statuses(emu, http, spec, seed=7)
    other = _statuses(emu, http, spec, seed=8)
    assert first == again
    assert first != other
    rng = random.Random(7)  # one draw per matching request, in order
    assert first == [500 if rng.random() < 0.5 else 200 for _ in range(40)]
    assert 0 < first.count(500) < 40


def test_several_probability_rules_are_reproducible(emu: Emulator, http: httpx.Client) -> None:
    spec = "GET /v1/models: 429@0.2, 503@0.3"
    first = _statuses(emu, http, spec, seed=3, n=60)
    assert first == _statuses(emu, http, spec, seed=3, n=60)
    assert set(first) == {200, 429, 503}


def test_probability_zero_and_one(emu: Emulator, http: httpx.Client) -> None:
    assert set(_statuses(emu, http, "GET /v1/models: 500@0", seed=1, n=20)) == {200}
    assert set(_statuses(emu, http, "GET /v1/models: 500@1", seed=1, n=20)) == {500}


def test_times_limits_a_rule(emu: Emulator, http: httpx.Client) -> None:
    plan = emu.set_faults([{"route": "GET /v1/models", "kind": "503", "times": 2},
                           {"route": "GET /v1/models", "kind": "429", "probability": 1.0, "times": 1}])
    assert [http.get("/v1/models").status_code for _ in range(5)] == [503, 503, 429, 200, 200]
    assert plan is not None and plan.injected == {"503": 2, "429": 1}
    assert plan.requests["GET /v1/models"] == 5


def test_faults_given_at_construction(training_path: Path) -> None:
    with emulator(speed=0, faults="GET /v1/models: 503") as e, \
            httpx.Client(base_url=e.base_url, headers={"authorization": f"Bearer {e.api_key}"}) as c:
        assert c.get("/v1/models").status_code == 503
        assert c.get("/v1/models").status_code == 200


# --------------------------------------------------------------------------- Azure


@pytest.mark.parametrize("kind, status, code", [("429", 429, "tooManyRequests"),
                                                ("daily", 429, "daily_rate_limit_exceeded"),
                                                ("500", 500, "internalFailure"),
                                                ("502", 502, "serviceUnavailable"),
                                                ("503", 503, "serviceUnavailable")])
def test_azure_routes_get_the_azure_envelope(emu: Emulator, kind: str, status: int, code: str) -> None:
    emu.set_faults([{"route": AZURE_JOBS, "kind": kind, "retry_after": 1}])
    r = httpx.post(f"{emu.base_url}/openai/fine_tuning/jobs", params={"api-version": AZURE_VERSION},
                   headers={"api-key": emu.api_key},
                   json={"model": MODEL, "training_file": "file-x", "trainingType": "Standard"})
    assert r.status_code == status
    assert _assert_azure_envelope(r.json())["code"] == code


def test_azure_client_sees_azure_faults(emu: Emulator, training_path: Path) -> None:
    az = emu.azure_client(max_retries=0, timeout=10)
    with open(training_path, "rb") as fh:
        fid = az.files.create(file=fh, purpose="fine-tune").id
    plan = emu.set_faults(f"{AZURE_JOBS}: 429, drop, lost, 503")
    create: dict[str, Any] = {"model": MODEL, "training_file": fid, "extra_body": {"trainingType": "Standard"}}
    with pytest.raises(openai.RateLimitError) as info:
        az.fine_tuning.jobs.create(**create)
    assert info.value.code == "tooManyRequests"
    with pytest.raises(openai.APIConnectionError):
        az.fine_tuning.jobs.create(**create)
    assert az.fine_tuning.jobs.list().data == []          # drop: not executed
    with pytest.raises(openai.APIConnectionError):
        az.fine_tuning.jobs.create(**create)
    assert len(az.fine_tuning.jobs.list().data) == 1      # lost: executed
    with pytest.raises(openai.InternalServerError) as err:
        az.fine_tuning.jobs.create(**create)
    assert err.value.status_code == 503 and err.value.code == "serviceUnavailable"
    assert plan is not None and plan.injected == {"429": 1, "drop": 1, "lost": 1, "503": 1}
    # The OpenAI dialect's routes are untouched by an Azure rule.
    assert emu.openai_client(max_retries=0).models.list().data


def test_arm_routes_get_the_azure_envelope(emu: Emulator) -> None:
    emu.set_faults("GET /subscriptions/*: 503")
    r = httpx.get(f"{emu.base_url}/subscriptions/s/resourceGroups/g/providers/Microsoft.CognitiveServices/"
                  f"accounts/a/deployments", params={"api-version": "2024-10-01"},
                  headers={"authorization": f"Bearer {emu.arm_token}"})
    assert r.status_code == 503
    _assert_azure_envelope(r.json())


# --------------------------------------------------------------------------- /_emulator admin routes


def test_admin_faults_put_stats_delete(emu: Emulator, http: httpx.Client) -> None:
    r = http.put("/_emulator/faults", json={"spec": "GET /v1/models: 503, ok; GET /v1/files: 500@1", "seed": 5})
    assert r.status_code == 200 and r.json() == {"rules": 1, "sequences": 1}
    assert http.get("/v1/models").status_code == 503
    assert http.get("/v1/models").status_code == 200
    assert http.get("/v1/files").status_code == 500
    stats = http.get("/_emulator/stats")
    assert stats.status_code == 200
    assert stats.json() == {"requests": {"GET /v1/models": 2, "GET /v1/files": 1},
                            "injected": {"503": 1, "500": 1}}
    r = http.delete("/_emulator/faults")
    assert r.status_code == 200 and r.json() == {"rules": 0, "sequences": 0}
    assert http.get("/v1/files").status_code == 200
    assert http.get("/_emulator/stats").json() == {"requests": {}, "injected": {}}


def test_admin_faults_accepts_rule_lists(emu: Emulator, http: httpx.Client) -> None:
    rules = [{"route": "GET /v1/models", "kind": "429", "retry_after_ms": 250, "times": 1},
             {"route": "GET /v1/files", "steps": ["502", "ok"]}]
    r = http.put("/_emulator/faults", json=rules)  # a bare list is a spec too
    assert r.status_code == 200 and r.json() == {"rules": 1, "sequences": 1}
    first = http.get("/v1/models")
    assert first.status_code == 429 and first.headers["retry-after-ms"] == "250"
    assert http.get("/v1/models").status_code == 200
    assert [http.get("/v1/files").status_code for _ in range(3)] == [502, 200, 200]
    r = http.put("/_emulator/faults", json={"spec": json.dumps(rules)})  # or a JSON string of one
    assert r.status_code == 200 and r.json() == {"rules": 1, "sequences": 1}


def test_admin_faults_seed_is_reproducible(emu: Emulator, http: httpx.Client) -> None:
    def run(seed: int) -> list[int]:
        assert http.put("/_emulator/faults", json={"spec": "GET /v1/models: 500@0.5", "seed": seed}).status_code == 200
        return [http.get("/v1/models").status_code for _ in range(30)]

    assert run(11) == run(11)
    rng = random.Random(11)
    assert run(11) == [500 if rng.random() < 0.5 else 200 for _ in range(30)]


@pytest.mark.parametrize("body", [{"spec": "GET /v1/models: teapot"}, {"spec": "GET /v1/models: 429@2"},
                                  {"spec": "GET /v1/models: 429@0.5, 500"}, {"spec": "429@0.5"},
                                  {"spec": "[not json"}, {"spec": [{"route": "*", "kind": "nope"}]},
                                  {"spec": [{"route": "*"}]}, {"spec": 5}, {"spec": "GET /x: 429@1", "seed": "x"}])
def test_admin_faults_rejects_bad_specs(emu: Emulator, http: httpx.Client, body: dict[str, Any]) -> None:
    r = http.put("/_emulator/faults", json=body)
    assert r.status_code == 400
    assert _assert_openai_envelope(r.json())["param"] == ("seed" if "seed" in body else "spec")
    assert http.get("/v1/models").status_code == 200  # the old (empty) plan stays


def test_admin_clock(emu: Emulator, http: httpx.Client) -> None:
    before = emu.clock.now()
    r = http.post("/_emulator/clock", json={"advance": 60})
    assert r.status_code == 200
    assert r.json()["now"] == pytest.approx(before + 60, abs=0.01)  # speed 0: only the advance moves it
    r = http.post("/_emulator/clock", json={"speed": 2.5})
    assert r.status_code == 200 and emu.clock.speed == 2.5
    for bad in ({"advance": -1}, {"advance": "1"}, {"advance": True}, {"speed": -2}, {"speed": "fast"}):
        r = http.post("/_emulator/clock", json=bad)
        assert r.status_code == 400, bad
        assert _assert_openai_envelope(r.json())["param"] in ("advance", "speed")


def test_admin_clock_moves_jobs(emu: Emulator, http: httpx.Client, client: openai.OpenAI,
                                training_file: str) -> None:
    job = _create_job(client, training_file)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "validating_files"
    assert http.post("/_emulator/clock", json={"advance": 3600}).status_code == 200
    assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"


def test_admin_fail_job(emu: Emulator, http: httpx.Client, client: openai.OpenAI, training_file: str) -> None:
    job = _create_job(client, training_file)
    r = http.post(f"/_emulator/jobs/{job.id}/fail", json={"message": "GPU on fire"})
    assert r.status_code == 200
    assert r.json()["id"] == job.id and r.json()["status"] == "failed"
    got = client.fine_tuning.jobs.retrieve(job.id)
    assert got.status == "failed" and got.error is not None and got.error.message == "GPU on fire"
    assert http.post("/_emulator/jobs/ftjob-nope/fail", json={}).status_code == 404
    r = http.post(f"/_emulator/jobs/{job.id}/fail", params={"dialect": "klingon"}, json={})
    assert r.status_code == 400 and _assert_openai_envelope(r.json())["param"] == "dialect"


def test_admin_fail_job_at_a_step(emu: Emulator, http: httpx.Client, client: openai.OpenAI,
                                  training_file: str) -> None:
    job = _create_job(client, training_file)
    r = http.post(f"/_emulator/jobs/{job.id}/fail", json={"at_step": 2})
    assert r.status_code == 200 and r.json()["status"] != "failed"
    emu.clock.advance(3600)
    got = client.fine_tuning.jobs.retrieve(job.id)
    assert got.status == "failed"


def test_admin_fail_job_in_the_azure_dialect(emu: Emulator, http: httpx.Client, training_path: Path) -> None:
    az = emu.azure_client(max_retries=0)
    with open(training_path, "rb") as fh:
        fid = az.files.create(file=fh, purpose="fine-tune").id
    job = az.fine_tuning.jobs.create(model=MODEL, training_file=fid, extra_body={"trainingType": "Standard"})
    r = http.post(f"/_emulator/jobs/{job.id}/fail", params={"dialect": "azure"}, json={})
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert az.fine_tuning.jobs.retrieve(job.id).status == "failed"


def test_admin_routes_are_not_faulted_or_counted(emu: Emulator, http: httpx.Client) -> None:
    plan = emu.set_faults("*: 500@1")
    assert http.get("/_emulator/stats").status_code == 200
    assert http.post("/_emulator/clock", json={"advance": 1}).status_code == 200
    assert http.delete("/_emulator/faults").status_code == 200
    assert plan is not None and sum(plan.requests.values()) == 0


_ADMIN_CALLS = [("PUT", "/_emulator/faults", {"spec": "GET /v1/models: 500@1"}),
                ("DELETE", "/_emulator/faults", None),
                ("POST", "/_emulator/clock", {"advance": 10}),
                ("GET", "/_emulator/stats", None),
                ("POST", "/_emulator/jobs/ftjob-x/fail", {})]


@pytest.mark.parametrize("method, path, body", _ADMIN_CALLS)
@pytest.mark.parametrize("auth", [{"authorization": "Bearer sk-wrong"}, {}, {"api-key": "sk-emulator-key"}],
                         ids=["wrong-key", "no-key", "azure-header"])
def test_admin_routes_reject_a_wrong_key(emu: Emulator, method: str, path: str, body: Any,
                                         auth: dict[str, str]) -> None:
    before = emu.clock.now()
    r = httpx.request(method, emu.base_url + path, headers=auth, json=body)
    assert r.status_code == 401
    _assert_openai_envelope(r.json())
    assert emu.config.faults is None and emu.clock.now() == before  # nothing changed


def test_admin_routes_work_over_a_real_socket_from_another_client(emu: Emulator) -> None:
    # The same controls the CLI banner advertises, driven with nothing but HTTP.
    h = {"authorization": f"Bearer {emu.api_key}"}
    assert httpx.put(f"{emu.base_url}/_emulator/faults", headers=h, json="GET /v1/models: 503").status_code == 200
    assert httpx.get(f"{emu.base_url}/v1/models", headers=h).status_code == 503
    assert httpx.get(f"{emu.base_url}/_emulator/stats", headers=h).json()["injected"] == {"503": 1}


# --------------------------------------------------------------------------- FaultPlan.parse


def test_parse_spec_strings() -> None:
    plan = FaultPlan.parse("POST /v1/fine_tuning/jobs: 429@0.3, 500@0.1; GET /v1/fine_tuning/jobs/*: drop@0.05;"
                           " GET /v1/models: lost, ok, 429")
    assert [(r.route, r.kind, r.probability) for r in plan.rules] == [
        ("POST /v1/fine_tuning/jobs", "429", 0.3), ("POST /v1/fine_tuning/jobs", "500", 0.1),
        ("GET /v1/fine_tuning/jobs/*", "drop", 0.05)]
    assert [(s.route, s.steps) for s in plan.sequences] == [("GET /v1/models", ["lost", "ok", "429"])]
    assert FaultPlan.parse(None).rules == [] and FaultPlan.parse("").sequences == []
    listed = FaultPlan.parse([{"route": "*", "kind": "slow", "delay": 0.5, "times": 3},
                              {"route": "GET /x", "steps": ["500"]}], seed=4)
    assert listed.rules == [FaultRule("*", "slow", delay=0.5, times=3)]
    assert listed.sequences == [FaultSequence("GET /x", ["500"])] and listed.seed == 4
    assert set(KINDS) == {"429", "daily", "500", "502", "503", "drop", "slow", "lost", "ok"}


@pytest.mark.parametrize("spec", [
    "GET /v1/models: teapot",                 # bad kind in a sequence
    "GET /v1/models: 404@0.5",                # bad kind with a probability
    "GET /v1/models: 429, 418",               # bad kind later in a sequence
    "GET /v1/models: 429@abc",                # probability not a number
    "GET /v1/models: 429@1.5",                # probability above 1
    "GET /v1/models: 429@-0.1",               # probability below 0
    "GET /v1/models: 429@nan",                # probability not comparable
    "GET /v1/models: 429@0.5, 500",           # mixed clause
    "GET /v1/models: ok, 500@1",              # mixed clause, the other way round
    "429@0.5",                                # no route
    ": 429@0.5",                              # empty route
    "GET /v1/models: 429@0.5; 500",           # a second clause without a route
    "[{\"route\": \"*\", \"kind\": \"boom\"}]",  # JSON list, bad kind
    "[not json",                              # a JSON list that is not JSON
])
def test_parse_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        FaultPlan.parse(spec)


@pytest.mark.parametrize("rule", [{"route": "*", "kind": "418"}, {"route": "*", "kind": "429", "probability": 2},
                                  {"route": "*", "kind": "429", "probability": -1},
                                  {"route": "*", "steps": ["429", "nope"]}])
def test_parse_rejects_bad_rule_dicts(rule: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultPlan.parse([rule])


def test_emulator_rejects_a_bad_spec() -> None:
    with pytest.raises(ValueError):
        Emulator(faults="GET /v1/models: 429@0.5, 500")
    with emulator(speed=0) as e:
        with pytest.raises(ValueError):
            e.set_faults("GET /v1/models: kaboom")
        assert e.config.faults is None
