"""The client under injected faults: one job per create call, the complete ordered event stream.

Faults (seeded): 429 with retry-after / retry-after-ms, 500/502/503, dropped connections,
and lost create responses (the job exists, the client saw an error). Time is simulated,
so a run costs milliseconds of waiting, not minutes.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator

import pytest

from finetune_sdk import FineTuneClient
from finetune_sdk.client import IDEMPOTENCY_KEY
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import AuthenticationError, RateLimitError, ServerError
from finetune_sdk.retry import RetryPolicy
from finetune_sdk.server import FaultPlan
from finetune_sdk.testing import Emulator, StaticTokenCredential, emulator
from finetune_sdk.types import JobStatus


#: Per provider, the emulator routes of: creating a job, reading jobs (and their events),
#: uploading a file, reading a file. The fault runs hit each with every fault kind.
ROUTES: dict[str, dict[str, str]] = {
    "openai": {"create": "POST /v1/fine_tuning/jobs", "read": "GET /v1/fine_tuning/jobs*",
               "upload": "POST /v1/files", "file": "GET /v1/files/*"},
    "azure": {"create": "POST /openai/fine_tuning/jobs", "read": "GET /openai/fine_tuning/jobs*",
              "upload": "POST /openai/files", "file": "GET /openai/files/*"},
    "together": {"create": "POST /together/v1/fine-tunes", "read": "GET /together/v1/fine-tunes*",
                 "upload": "POST /together/v1/files", "file": "GET /together/v1/files/*"},
    # Fireworks: a dataset is created, then its file uploaded (both "upload"); reading a job is
    # also how its events are read and how a create is looked up (by the job id the key names).
    "fireworks": {"create": "POST /fireworks/v1/accounts/*/supervisedFineTuningJobs",
                  "read": "GET /fireworks/v1/accounts/*/supervisedFineTuningJobs*",
                  "upload": "POST /fireworks/v1/accounts/*/datasets*",
                  "file": "GET /fireworks/v1/accounts/*/datasets/*"},
}
BASE_MODELS = {"openai": "gpt-4o-mini-2024-07-18", "azure": "gpt-4o-mini-2024-07-18",
               "together": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
               "fireworks": "accounts/fireworks/models/qwen3-8b"}
#: Providers whose events are derived from the job object (no events endpoint): the stream is
#: checked against what the provider reads once the job is over, not against the backend's log.
DERIVED_EVENTS = {"fireworks"}


def fault_rules(provider: str) -> list[dict]:
    r = ROUTES[provider]
    return [
        {"route": r["create"], "kind": "lost", "probability": 0.15},
        {"route": r["create"], "kind": "429", "probability": 0.15, "retry_after": 2},
        {"route": r["create"], "kind": "503", "probability": 0.1},
        {"route": r["create"], "kind": "drop", "probability": 0.1},
        {"route": r["read"], "kind": "429", "probability": 0.1, "retry_after_ms": 1500},
        {"route": r["read"], "kind": "502", "probability": 0.05},
        {"route": r["read"], "kind": "500", "probability": 0.05},
        {"route": r["read"], "kind": "drop", "probability": 0.05},
        {"route": r["upload"], "kind": "503", "probability": 0.1},
        {"route": r["file"], "kind": "429", "probability": 0.1, "retry_after": 1},
    ]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with emulator(speed=0, dialect=list(ROUTES)) as e:
        yield e


def make_client(emu: Emulator, provider: str) -> FineTuneClient:
    return FineTuneClient(provider, ledger=False, credential=emu.credential(), sleep=emu.clock.advance,
                          clock=emu.clock.now, retry=RetryPolicy(attempts=10), timeout=5,
                          max_retries=10, base_model=BASE_MODELS[provider], **emu.client_settings(provider))


def one_run(emu: Emulator, provider: str, seed: int) -> None:
    server = emu.backends[provider]
    client = make_client(emu, provider)
    before = {j.id for j in server.list_jobs()}
    try:
        plan = emu.set_faults(FaultPlan.parse(fault_rules(provider), seed=seed))
        job = client.jobs.create(training_file=dataset_path("contacts", "train"), hyperparameters={"n_epochs": 1},
                                 suffix=f"fault-{seed}")
        key = job.metadata[IDEMPOTENCY_KEY]
        assert key
        events = list(client.jobs.follow(job.id))
        emu.set_faults(None)
        created = [j for j in server.list_jobs() if j.id not in before]
        assert len(created) == 1, f"seed {seed}: {len(created)} jobs for one create call"
        assert created[0].id == job.id
        # Found by its key the way the provider finds it (Together keeps the key in the suffix, not metadata).
        found = client.jobs.list(metadata={IDEMPOTENCY_KEY: key})
        assert [j.id for j in found] == [job.id], f"seed {seed}: {len(found)} jobs carry the key"
        truth = [e.id for e in (client.jobs.events(job.id) if provider in DERIVED_EVENTS
                                else server.list_events(job.id))]
        assert [e.id for e in events] == truth, f"seed {seed}: event stream has gaps, repeats or disorder"
        assert server.get_job(job.id).status is JobStatus.SUCCEEDED
        assert plan is not None and sum(plan.injected.values()) > 0
    finally:
        emu.set_faults(None)
        client.close()


@pytest.mark.parametrize("provider", list(ROUTES))
@pytest.mark.parametrize("seed", range(20))
def test_faulty_runs(emu: Emulator, provider: str, seed: int) -> None:
    one_run(emu, provider, seed)


@pytest.mark.slow
@pytest.mark.parametrize("provider", list(ROUTES))
def test_200_faulty_runs(emu: Emulator, provider: str) -> None:
    for seed in range(1000, 1200):
        one_run(emu, provider, seed)


JOBS = "/v1/fine_tuning/jobs"


def quick_client(emu: Emulator, **kwargs: object) -> FineTuneClient:
    """The default retry policy (5 attempts), on the emulator's simulated clock."""
    return FineTuneClient("openai", ledger=False, sleep=emu.clock.advance, clock=emu.clock.now,
                          base_model="gpt-4o-mini-2024-07-18", **emu.client_settings("openai"), **kwargs)


def uploaded(client: FineTuneClient, emu: Emulator) -> str:
    file_id = client.files.upload(dataset_path("contacts", "train")).id
    emu.clock.advance(10)
    return file_id


def test_second_create_after_429_is_a_second_job(emu: Emulator) -> None:
    """The reported defect: a re-run whose create meets a 429 returned the earlier job."""
    client = make_client(emu, "openai")
    file_id = uploaded(client, emu)
    first = client.jobs.create(training_file=file_id, suffix="rerun")
    plan = emu.set_faults(f"POST {JOBS}: 429, ok")
    second = client.jobs.create(training_file=file_id, suffix="rerun")
    emu.set_faults(None)
    assert second.id != first.id
    assert plan is not None and plan.requests == {f"POST {JOBS}": 2}, "a 429 proves nothing was created: no lookup"
    assert {emu.openai.get_job(j.id).id for j in (first, second)} == {first.id, second.id}


@pytest.mark.parametrize("kind", ["lost", "drop", "500", "502", "503"])
def test_a_create_that_may_have_run_is_looked_up_then_made_once(emu: Emulator, kind: str) -> None:
    client = make_client(emu, "openai")
    file_id = uploaded(client, emu)
    before = len(emu.openai.list_jobs())
    plan = emu.set_faults(f"POST {JOBS}: {kind}, ok")
    job = client.jobs.create(training_file=file_id, suffix=f"once-{kind}")
    emu.set_faults(None)
    assert len(emu.openai.list_jobs()) - before == 1
    assert len(emu.openai.list_jobs(metadata={IDEMPOTENCY_KEY: job.metadata[IDEMPOTENCY_KEY]})) == 1
    # lost: the job exists and the lookup finds it; the others: the lookup finds nothing, one more create.
    creates = 1 if kind == "lost" else 2
    assert plan is not None and plan.requests == {f"POST {JOBS}": creates, f"GET {JOBS}": 1}


@pytest.mark.parametrize("provider", ["azure", "together"])
@pytest.mark.parametrize("kind, creates, lookups", [("lost", 1, 1), ("drop", 2, 1), ("500", 2, 1), ("502", 2, 1),
                                                    ("503", 2, 1), ("429", 2, 0)])
def test_one_create_under_each_fault_costs_what_it_must(emu: Emulator, provider: str, kind: str, creates: int,
                                                        lookups: int) -> None:
    """Per fault kind, the requests one create makes on the other hosted providers: a lookup of
    the key only after a failure that may have created the job, and exactly one job."""
    client = make_client(emu, provider)
    file_id = uploaded(client, emu)
    server = emu.backends[provider]
    before = len(server.list_jobs())
    create, read = ROUTES[provider]["create"], ROUTES[provider]["read"].rstrip("*")
    plan = emu.set_faults(f"{create}: {kind}, ok")
    job = client.jobs.create(training_file=file_id, suffix=f"once-{kind}")
    emu.set_faults(None)
    assert len(server.list_jobs()) - before == 1 and server.get_job(job.id)
    assert plan is not None and plan.requests == {create: creates, **({read: lookups} if lookups else {})}


def test_a_failed_lookup_is_retried_before_creating_again(emu: Emulator) -> None:
    client = make_client(emu, "openai")
    file_id = uploaded(client, emu)
    before = len(emu.openai.list_jobs())
    plan = emu.set_faults(f"POST {JOBS}: lost, ok; GET {JOBS}: 503, ok")
    job = client.jobs.create(training_file=file_id, suffix="lookup-fails")
    emu.set_faults(None)
    assert len(emu.openai.list_jobs()) - before == 1 and emu.openai.get_job(job.id)
    assert plan is not None and plan.requests == {f"POST {JOBS}": 1, f"GET {JOBS}": 2}


def test_persistent_503_on_create_spends_the_policy_and_creates_nothing(emu: Emulator) -> None:
    client = quick_client(emu)
    file_id = uploaded(client, emu)
    before = len(emu.openai.list_jobs())
    plan = emu.set_faults(f"POST {JOBS}: 503@1.0")
    with pytest.raises(ServerError):
        client.jobs.create(training_file=file_id, suffix="outage")
    emu.set_faults(None)
    # The default policy's 5 attempts: 5 creates, and a lookup before each of the 4 retries.
    assert plan is not None and plan.requests == {f"POST {JOBS}": 5, f"GET {JOBS}": 4}
    assert len(emu.openai.list_jobs()) == before


def test_lost_create_response_finds_the_job(emu: Emulator) -> None:
    client = make_client(emu, "openai")
    plan = emu.set_faults("POST /v1/fine_tuning/jobs: lost, lost, ok")
    job = client.jobs.create(training_file=dataset_path("contacts", "train"), suffix="lost")
    emu.set_faults(None)
    assert plan is not None and plan.injected["lost"] == 1  # the second create attempt was never needed
    assert len(emu.openai.list_jobs(metadata={IDEMPOTENCY_KEY: job.metadata[IDEMPOTENCY_KEY]})) == 1


def test_timed_out_create_is_found_not_duplicated() -> None:
    """The service handles the request after the client gave up: the client keeps looking
    for one request timeout before it creates again. Real time here: the server's delay is real."""
    with emulator(speed=0) as emu:
        client = FineTuneClient("openai", ledger=False, timeout=0.4, base_model="gpt-4o-mini-2024-07-18",
                                **emu.client_settings("openai"))
        file_id = client.files.upload(dataset_path("contacts", "train")).id
        emu.clock.advance(10)
        plan = emu.set_faults([{"route": f"POST {JOBS}", "kind": "slow", "delay": 0.6, "times": 1}])
        job = client.jobs.create(training_file=file_id, suffix="slow")
        time.sleep(1.0)  # anything still in flight on the server lands
        emu.set_faults(None)
        assert len(emu.openai.list_jobs(metadata={IDEMPOTENCY_KEY: job.metadata[IDEMPOTENCY_KEY]})) == 1
        assert plan is not None and plan.requests[f"POST {JOBS}"] == 1 and plan.requests[f"GET {JOBS}"] >= 1
        client.close()


def test_one_call_under_a_persistent_503_makes_exactly_the_policy_attempts(emu: Emulator) -> None:
    client = quick_client(emu)
    job = client.jobs.create(training_file=uploaded(client, emu), suffix="get")
    for call in (lambda: client.jobs.get(job.id), lambda: client.jobs.checkpoints(job.id),
                 lambda: client.jobs.events(job.id)):
        plan = emu.set_faults(f"GET {JOBS}/*: 503@1.0")
        with pytest.raises(ServerError):
            call()
        assert plan is not None and sum(plan.requests.values()) == 5  # RetryPolicy() default: 5 attempts
    emu.set_faults(None)


def test_wait_under_a_persistent_503_polls_a_bounded_number_of_times(emu: Emulator) -> None:
    """Polls at 0, 2, 5.2, 10.3, ... s (x1.6, at most 60 s), the last one at the end of the
    5-minute outage budget: 12 requests, no retry inside a poll, then the last error."""
    client = quick_client(emu)
    job = client.jobs.create(training_file=uploaded(client, emu), suffix="wait")
    plan = emu.set_faults(f"GET {JOBS}/*: 503@1.0")
    started = emu.clock.now()
    with pytest.raises(ServerError, match="outage budget of 300 s") as exc:
        client.jobs.wait(job.id, progress=False)
    emu.set_faults(None)
    assert plan is not None and sum(plan.requests.values()) == 12
    assert emu.clock.now() - started == pytest.approx(300, abs=1)
    assert exc.value.status_code == 503 and "re-attach with: finetune jobs wait" in str(exc.value)


def test_wait_and_follow_ride_out_a_shorter_outage(emu: Emulator) -> None:
    client = quick_client(emu)
    job = client.jobs.create(training_file=uploaded(client, emu), hyperparameters={"n_epochs": 1}, suffix="blip")
    outage = ", ".join(["503"] * 8)  # two minutes of failed polls
    emu.set_faults(f"GET {JOBS}/*: {outage}")
    assert client.jobs.wait(job.id, progress=False).status is JobStatus.SUCCEEDED
    emu.set_faults(f"GET {JOBS}/*: {outage}")
    events = list(client.jobs.follow(job.id))
    emu.set_faults(None)
    assert [e.id for e in events] == [e.id for e in emu.openai.list_events(job.id)]


def test_a_poll_honours_retry_after(emu: Emulator) -> None:
    client = quick_client(emu)
    job = client.jobs.create(training_file=uploaded(client, emu), suffix="ra")
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        emu.clock.advance(seconds)

    client.waiter.sleep = sleep
    emu.set_faults([{"route": f"GET {JOBS}/*", "kind": "429", "retry_after": 42, "times": 1}])
    client.jobs.wait(job.id, progress=False)
    emu.set_faults(None)
    assert slept[0] == pytest.approx(42)


def test_waiting_for_a_file_under_a_persistent_503_is_bounded(emu: Emulator) -> None:
    client = quick_client(emu)
    f = client.files.upload(dataset_path("contacts", "train"))
    plan = emu.set_faults("GET /v1/files/*: 503@1.0")
    with pytest.raises(ServerError, match="outage budget"):
        client.files.wait_processed(f.id)
    emu.set_faults(None)
    assert plan is not None and 10 <= sum(plan.requests.values()) <= 40


def test_daily_rate_limit_is_not_retried(emu: Emulator) -> None:
    client = make_client(emu, "openai")
    plan = emu.set_faults("POST /v1/fine_tuning/jobs: daily@1.0")
    with pytest.raises(RateLimitError) as exc:
        client.jobs.create(training_file=dataset_path("contacts", "train"), suffix="daily")
    emu.set_faults(None)
    assert exc.value.code == "daily_rate_limit_exceeded" and not exc.value.retryable
    assert "maximum of" in str(exc.value)
    assert plan is not None and plan.injected["daily"] == 1, "a daily limit must not be retried"


def test_4xx_is_not_retried(emu: Emulator) -> None:
    client = make_client(emu, "openai")
    plan = emu.set_faults(FaultPlan())
    with pytest.raises(Exception, match="invalid n_epochs"):
        client.jobs.create(training_file=dataset_path("contacts", "train"), hyperparameters={"n_epochs": 99},
                           validate=True)
    emu.set_faults(None)
    assert plan is not None and plan.requests["POST /v1/fine_tuning/jobs"] == 1


CANARY_KEY = "sk-canary-0123456789abcdef-KEY"
CANARY_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.canary-TOKEN-payload.sig"


def test_canaries_never_leak(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    openai_client = FineTuneClient("openai", ledger=False, api_key=CANARY_KEY, base_url=emu.openai_base_url,
                                   retry=RetryPolicy(attempts=1))
    texts += [repr(openai_client), repr(openai_client.provider.settings), str(openai_client.provider.settings)]
    with pytest.raises(AuthenticationError) as exc:
        openai_client.jobs.list()
    texts += [str(exc.value), repr(exc.value), pickle.dumps(exc.value).decode("latin-1"),
              str(pickle.loads(pickle.dumps(exc.value))), str(exc.value.body)]
    azure_client = FineTuneClient("azure", ledger=False, endpoint=emu.azure_endpoint,
                                  credential=StaticTokenCredential(CANARY_TOKEN), retry=RetryPolicy(attempts=1))
    with pytest.raises(AuthenticationError) as exc2:
        azure_client.jobs.list()
    texts += [repr(azure_client), repr(azure_client.provider.settings), str(exc2.value), repr(exc2.value),
              pickle.dumps(exc2.value).decode("latin-1")]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    for text in texts:
        assert CANARY_KEY not in text and CANARY_TOKEN not in text
    openai_client.close()
    azure_client.close()


FW_JOBS = "/fireworks/v1/accounts/emulator/supervisedFineTuningJobs"
FW_DPO = "/fireworks/v1/accounts/emulator/dpoJobs"


def fw_uploaded(client: FineTuneClient, emu: Emulator) -> str:
    file_id = client.files.upload(dataset_path("contacts", "train")).id
    emu.clock.advance(10)
    return file_id


@pytest.mark.parametrize("kind, creates, lookups", [("lost", 1, 1), ("drop", 2, 2), ("500", 2, 2), ("502", 2, 2),
                                                    ("503", 2, 2), ("429", 2, 0)])
def test_fireworks_create_under_each_fault_kind(emu: Emulator, kind: str, creates: int, lookups: int) -> None:
    """One create under each fault: a lost answer is found by one GET of the job its key names; a
    failure that may have run is looked up (the supervised, then the DPO collection) before one
    more create; a 429 proves nothing ran, so no lookup."""
    client = make_client(emu, "fireworks")
    file_id = fw_uploaded(client, emu)
    before = len(emu.backends["fireworks"].list_jobs())
    plan = emu.set_faults(f"POST {FW_JOBS}: {kind}, ok")
    job = client.jobs.create(training_file=file_id, suffix=f"once-{kind}")
    emu.set_faults(None)
    assert len(emu.backends["fireworks"].list_jobs()) - before == 1
    assert plan is not None
    gets = {route: n for route, n in plan.requests.items() if route.startswith("GET ")}
    assert plan.requests[f"POST {FW_JOBS}"] == creates
    assert sum(gets.values()) == lookups and all(r in (f"GET {FW_JOBS}/{job.id}", f"GET {FW_DPO}/{job.id}")
                                                 for r in gets)


def test_fireworks_timed_out_create_is_found_not_duplicated() -> None:
    """The service creates the job after the client gave up: the client finds it by the id its key
    names, or its next create meets ALREADY_EXISTS and reads that job. Real time: the delay is real."""
    with emulator(speed=0, dialect="fireworks") as emu:
        client = FineTuneClient("fireworks", ledger=False, timeout=0.4, base_model=BASE_MODELS["fireworks"],
                                **emu.client_settings("fireworks"))
        file_id = client.files.upload(dataset_path("contacts", "train")).id
        emu.clock.advance(10)
        plan = emu.set_faults([{"route": f"POST {FW_JOBS}", "kind": "slow", "delay": 0.6, "times": 1}])
        job = client.jobs.create(training_file=file_id, suffix="slow")
        time.sleep(1.0)
        emu.set_faults(None)
        assert [j.id for j in emu.backends["fireworks"].list_jobs()] == [job.id]
        assert plan is not None and plan.requests[f"GET {FW_JOBS}/{job.id}"] >= 1
        client.close()
