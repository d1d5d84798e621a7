"""The client under injected faults: one job per create call, the complete ordered event stream.

Faults (seeded): 429 with retry-after / retry-after-ms, 500/502/503, dropped connections,
and lost create responses (the job exists, the client saw an error). Time is simulated,
so a run costs milliseconds of waiting, not minutes.
"""

from __future__ import annotations

import logging
import pickle
from typing import Iterator

import pytest

from finetune_sdk import FineTuneClient
from finetune_sdk.client import IDEMPOTENCY_KEY
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import AuthenticationError, RateLimitError
from finetune_sdk.retry import RetryPolicy
from finetune_sdk.server import FaultPlan
from finetune_sdk.testing import Emulator, StaticTokenCredential, emulator
from finetune_sdk.types import JobStatus


def fault_rules(prefix: str) -> list[dict]:
    jobs = f"{prefix}/fine_tuning/jobs"
    return [
        {"route": f"POST {jobs}", "kind": "lost", "probability": 0.15},
        {"route": f"POST {jobs}", "kind": "429", "probability": 0.15, "retry_after": 2},
        {"route": f"POST {jobs}", "kind": "503", "probability": 0.1},
        {"route": f"POST {jobs}", "kind": "drop", "probability": 0.1},
        {"route": f"GET {jobs}*", "kind": "429", "probability": 0.1, "retry_after_ms": 1500},
        {"route": f"GET {jobs}*", "kind": "502", "probability": 0.05},
        {"route": f"GET {jobs}*", "kind": "500", "probability": 0.05},
        {"route": f"GET {jobs}*", "kind": "drop", "probability": 0.05},
        {"route": f"POST {prefix}/files", "kind": "503", "probability": 0.1},
        {"route": f"GET {prefix}/files/*", "kind": "429", "probability": 0.1, "retry_after": 1},
    ]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with emulator(speed=0) as e:
        yield e


def make_client(emu: Emulator, provider: str) -> FineTuneClient:
    return FineTuneClient(provider, ledger=False, credential=emu.credential(), sleep=emu.clock.advance,
                          clock=emu.clock.now, retry=RetryPolicy(attempts=10), timeout=5,
                          max_retries=10, base_model="gpt-4o-mini-2024-07-18", **emu.client_settings(provider))


def one_run(emu: Emulator, provider: str, seed: int) -> None:
    server = emu.openai if provider == "openai" else emu.azure
    prefix = "/v1" if provider == "openai" else "/openai"
    client = make_client(emu, provider)
    try:
        plan = emu.set_faults(FaultPlan.parse(fault_rules(prefix), seed=seed))
        job = client.jobs.create(training_file=dataset_path("contacts", "train"), model="gpt-4o-mini-2024-07-18",
                                 hyperparameters={"n_epochs": 1}, suffix=f"fault-{seed}")
        key = job.metadata[IDEMPOTENCY_KEY]
        events = list(client.jobs.follow(job.id))
        emu.set_faults(None)
        created = server.list_jobs(metadata={IDEMPOTENCY_KEY: key})
        assert len(created) == 1, f"seed {seed}: {len(created)} jobs for one create call"
        assert created[0].id == job.id
        truth = [e.id for e in server.list_events(job.id)]
        assert [e.id for e in events] == truth, f"seed {seed}: event stream has gaps, repeats or disorder"
        assert server.get_job(job.id).status is JobStatus.SUCCEEDED
        assert plan is not None and sum(plan.injected.values()) > 0
    finally:
        emu.set_faults(None)
        client.close()


@pytest.mark.parametrize("provider", ["openai", "azure"])
@pytest.mark.parametrize("seed", range(20))
def test_faulty_runs(emu: Emulator, provider: str, seed: int) -> None:
    one_run(emu, provider, seed)


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_200_faulty_runs(emu: Emulator, provider: str) -> None:
    for seed in range(1000, 1200):
        one_run(emu, provider, seed)


def test_lost_create_response_finds_the_job(emu: Emulator) -> None:
    client = make_client(emu, "openai")
    plan = emu.set_faults("POST /v1/fine_tuning/jobs: lost, lost, ok")
    job = client.jobs.create(training_file=dataset_path("contacts", "train"), suffix="lost")
    emu.set_faults(None)
    assert plan is not None and plan.injected["lost"] == 1  # the second create attempt was never needed
    assert len(emu.openai.list_jobs(metadata={IDEMPOTENCY_KEY: job.metadata[IDEMPOTENCY_KEY]})) == 1


def test_timed_out_create_is_found_not_duplicated(emu: Emulator) -> None:
    """The service handles the request after the client gave up: the client looks before retrying."""
    client = make_client(emu, "openai")
    emu.set_faults([{"route": "POST /v1/fine_tuning/jobs", "kind": "slow", "delay": 0.8, "times": 1}])
    client.provider.client = client.provider.client.with_options(timeout=0.3)
    job = client.jobs.create(training_file=dataset_path("contacts", "train"), suffix="slow")
    emu.set_faults(None)
    assert len(emu.openai.list_jobs(metadata={IDEMPOTENCY_KEY: job.metadata[IDEMPOTENCY_KEY]})) == 1


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
