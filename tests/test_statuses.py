"""Each provider's raw -> normalised status table, row by row, and what happens to a status
no table knows: it is surfaced as ``unknown`` with its raw value, never taken for another.

The expected tables are written out here from the services' documentation
(../shared/reference/hosted-apis.md §1.4 and §3.3, together-fireworks.md §A4, Part B3 and Part C)
and the local job process, independently of the providers' code: a row added, removed or
changed there fails here.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from finetune_sdk.errors import WaitTimeout
from finetune_sdk.providers import get_provider_class
from finetune_sdk.types import Job, JobStatus
from finetune_sdk.waiting import PollSchedule, Waiter

V, Q, R, P = JobStatus.VALIDATING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED
S, F, C = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED

EXPECTED: dict[str, dict[str, JobStatus]] = {
    # OpenAI's enum, plus `paused` (the spec's pause example returns it).
    "openai": {"validating_files": V, "queued": Q, "running": R, "paused": P, "succeeded": S, "failed": F,
               "cancelled": C},
    # Azure's FineTuningState (2025-04-01-preview).
    "azure": {"created": Q, "pending": Q, "running": R, "pausing": R, "paused": P, "resuming": R, "succeeded": S,
              "failed": F, "cancelled": C},
    # Together's FinetuneJobStatus, plus user_error (its SDKs' enum). cancel_requested is not
    # terminal (the job is still stopping); compressing and uploading write the weights.
    "together": {"pending": Q, "queued": Q, "running": R, "compressing": R, "uploading": R, "cancel_requested": R,
                 "completed": S, "error": F, "user_error": F, "cancelled": C},
    # Fireworks' JobState (the SDK's SupervisedFineTuningJob/DpoJob; together-fireworks.md B3 and C).
    # VALIDATING is the SDK's validating (Part C files it under queued); CANCELLING is not over yet.
    # Not in the table, so surfaced as unknown: UNSPECIFIED, IDLE (meaning unverified), DELETING*.
    "fireworks": {"job_state_creating": Q, "job_state_creating_input_dataset": Q, "job_state_validating": V,
                  "job_state_pending": Q, "job_state_re_queueing": Q, "job_state_running": R,
                  "job_state_writing_results": R, "job_state_rollout": R, "job_state_evaluation": R,
                  "job_state_cancelling": R, "job_state_paused": P, "job_state_completed": S,
                  "job_state_early_stopped": S, "job_state_failed": F, "job_state_expired": F,
                  "job_state_cancelled": C},
    # The emulator answers with every imitated service's words (a word two services share means the same).
    "simulated": {"validating_files": V, "pending": Q, "queued": Q, "running": R, "pausing": R, "paused": P,
                  "succeeded": S, "failed": F, "cancelled": C, "cancel_requested": R, "uploading": R,
                  "completed": S, "error": F,
                  "job_state_validating": V, "job_state_pending": Q, "job_state_running": R, "job_state_paused": P,
                  "job_state_writing_results": R, "job_state_completed": S, "job_state_failed": F,
                  "job_state_cancelled": C},
    # What the local job process writes to job.json.
    "local": {"validating": V, "queued": Q, "running": R, "paused": P, "succeeded": S, "failed": F, "cancelled": C},
}
ROWS = [(provider, raw, status) for provider, table in EXPECTED.items() for raw, status in table.items()]


@pytest.mark.parametrize("provider, raw, expected", ROWS, ids=[f"{p}:{r}" for p, r, _ in ROWS])
def test_each_row(provider: str, raw: str, expected: JobStatus) -> None:
    cls = get_provider_class(provider)
    instance = cls.__new__(cls)  # the table needs no settings
    instance._unknown_statuses = set()
    assert instance.job_status(raw) is expected
    assert instance.job_status(raw.upper()) is expected, "raw statuses are matched case-insensitively"


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_no_row_is_untested(provider: str) -> None:
    assert dict(get_provider_class(provider).statuses) == EXPECTED[provider]


@pytest.mark.parametrize("raw", ["JOB_STATE_UNSPECIFIED", "JOB_STATE_IDLE", "JOB_STATE_DELETING",
                                 "JOB_STATE_DELETING_CLEANING_UP", "JOB_STATE_SOMETHING_NEW"])
def test_fireworks_states_without_a_meaning_are_unknown(raw: str) -> None:
    cls = get_provider_class("fireworks")
    instance = cls.__new__(cls)
    instance._unknown_statuses = set()
    assert instance.job_status(raw) is JobStatus.UNKNOWN


def test_an_unknown_status_is_surfaced_once_and_never_terminal(caplog: pytest.LogCaptureFixture) -> None:
    cls = get_provider_class("openai")
    provider = cls.__new__(cls)
    provider._unknown_statuses = set()
    with caplog.at_level(logging.WARNING):
        assert provider.job_status("warming_up") is JobStatus.UNKNOWN
        assert provider.job_status("warming_up") is JobStatus.UNKNOWN
        assert provider.job_status(None) is JobStatus.UNKNOWN
    assert not JobStatus.UNKNOWN.is_terminal
    warnings = [r.getMessage() for r in caplog.records if "warming_up" in r.getMessage()]
    assert len(warnings) == 1 and "openai" in warnings[0] and "unknown" in warnings[0]


class _Stuck:
    """A provider whose job sits in a state the SDK does not know."""

    name = "stuck"
    capabilities: frozenset[Any] = frozenset()

    def __init__(self) -> None:
        self.polls = 0

    def get_job(self, job_id: str) -> Job:
        self.polls += 1
        return Job(id=job_id, provider="stuck", status=JobStatus.UNKNOWN, raw_status="warming_up", model="m")


def test_wait_shows_the_raw_value_of_an_unknown_status() -> None:
    now = [0.0]
    provider = _Stuck()
    waiter = Waiter(provider, schedule=PollSchedule(initial=5, maximum=5),  # type: ignore[arg-type]
                    sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    with pytest.raises(WaitTimeout, match=r"still unknown \(raw 'warming_up'\)") as exc:
        waiter.wait("ftjob-1", timeout=60, progress=False)
    assert exc.value.job is not None and exc.value.job.raw_status == "warming_up"
    assert provider.polls == 13  # every 5 s for 60 s: the wait keeps polling, and says why it waits


def test_the_cli_prints_the_raw_status(capsys: pytest.CaptureFixture[str]) -> None:
    from finetune_sdk.cli.jobs import _print_job

    _print_job(Job(id="ftjob-1", provider="x", status=JobStatus.UNKNOWN, raw_status="warming_up", model="m"))
    assert "unknown (warming_up)" in capsys.readouterr().out
