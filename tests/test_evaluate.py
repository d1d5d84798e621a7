"""finetune evaluate: candidates on the emulator (a fine-tune, its base, base + K shots),
scorers, intervals, tokens, cost, failures, answers written as they arrive, the golden-set
capture, the report's JSON and HTML — and every bad input named clearly.

The emulator's models answer "<Fine-tuned|Base> model M (simulated) answers: <the last user
message>", so the ``contains`` scorer gives a known mix: an example whose expected answer is
its own question's text scores 1, others 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_sdk import FineTuneClient, evaluate
from finetune_sdk.datasets import path as dataset_path
from finetune_sdk.errors import ConfigurationError, DatasetError
from finetune_sdk.evaluation import parse_target
from finetune_sdk.evaluation.scorers import judge_grade, make_scorer
from finetune_sdk.evaluation.stats import bootstrap_mean, paired_difference, percentile
from finetune_sdk.testing import Emulator, emulator

BASE = "gpt-4o-mini-2024-07-18"


def example(question: str, answer: str, system: str | None = "Answer briefly.") -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": msgs}


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with emulator(speed=0, dialect="openai") as e:
        yield e


@pytest.fixture(scope="module")
def tuned(emu: Emulator) -> str:
    with FineTuneClient("openai", ledger=False, sleep=emu.clock.advance, clock=emu.clock.now,
                        **emu.client_settings("openai")) as client:
        job = client.jobs.create(training_file=dataset_path("contacts", "train"), model=BASE,
                                 hyperparameters={"n_epochs": 1}, suffix="eval")
        job = client.jobs.wait(job.id, progress=False)
    assert job.fine_tuned_model
    return job.fine_tuned_model


@pytest.fixture
def client(emu: Emulator) -> Iterator[FineTuneClient]:
    with FineTuneClient("openai", ledger=False, **emu.client_settings("openai")) as c:
        yield c


@pytest.fixture
def data(tmp_path: Path) -> Path:
    # 6 of 10 expected answers are the question's own text: `contains` scores them 1.
    rows = [example(f"q{i}", f"q{i}" if i < 6 else f"other answer {i}") for i in range(10)]
    return write(tmp_path / "eval.jsonl", rows)


def test_candidates_scores_tokens_cost_and_the_files_it_writes(client: FineTuneClient, tuned: str, data: Path,
                                                               tmp_path: Path) -> None:
    shots = write(tmp_path / "shots.jsonl", [example(f"shot {i}", f"answer {i}") for i in range(5)])
    answers, capture, html = tmp_path / "answers.jsonl", tmp_path / "golden.jsonl", tmp_path / "report.html"
    ev = client.evaluate(data, [tuned, BASE], few_shot=2, shots=shots, scorers=["contains", "exact", "similarity"],
                         answers=answers, capture=capture, progress=False, concurrency=4)
    labels = [c.label for c in ev.candidates]
    assert labels == [tuned, BASE, f"{BASE} + 2 shots"], "only the base model gets a few-shot twin"
    first, base, shot = ev.candidates
    contains = first.scores["contains"]
    assert contains.mean is not None and contains.mean.mean == pytest.approx(0.6) and contains.n == 10
    assert contains.mean.low <= 0.6 <= contains.mean.high and contains.mean.high - contains.mean.low > 0.1
    assert first.scores["exact"].mean is not None and first.scores["exact"].mean.mean == 0.0
    assert base.scores["contains"].diff is not None and base.scores["contains"].diff.mean == pytest.approx(0.0)
    assert first.scores["contains"].diff is None  # the reference is not compared with itself
    # Tokens come from the provider's usage; the shots make the prompt longer.
    assert shot.prompt_tokens is not None and base.prompt_tokens is not None and shot.prompt_tokens > base.prompt_tokens
    assert first.latency_p50 is not None and first.latency_p95 is not None and first.latency_p95 >= first.latency_p50
    # gpt-4o-mini has a (third-party-sourced) price; its fine-tune its own, higher one.
    assert base.cost_per_1000 is not None and first.cost_per_1000 is not None
    assert first.cost_per_1000 > base.cost_per_1000 and "third-party" in (first.cost_source or "")
    assert all(c.failures == 0 for c in ev.candidates)

    lines = answers.read_text().splitlines()
    assert len(lines) == 30 and {json.loads(x)["candidate"] for x in lines} == set(labels)
    golden = [json.loads(x) for x in capture.read_text().splitlines()]
    assert len(golden) == 10 and golden[0]["messages"][-1]["content"].startswith("Fine-tuned model")
    assert golden[0]["messages"][:-1] == json.loads(data.read_text().splitlines()[0])["messages"][:-1]

    doc = ev.to_json_dict()
    assert doc["examples"] == 10 and [c["model"] for c in doc["candidates"]] == [tuned, BASE, BASE]
    assert set(doc["candidates"][2]) == {"model", "profile", "shots", "scores", "tokens", "latency", "cost",
                                         "failures"}
    json.dumps(doc)
    ev.write_html(html)
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "<script" not in page and tuned in page
    assert "+ 2 shots" in ev._repr_html_()
    assert "contains 60%" in ev.summary()


def test_a_failing_candidate_is_counted_not_dropped(client: FineTuneClient, tuned: str, data: Path) -> None:
    ev = client.evaluate(data, [tuned, "ft:gpt-4o-mini-2024-07-18:org:gone:zzzz"], scorers=["contains"],
                         progress=False)
    gone = ev.candidates[1]
    assert gone.failures == 10 and gone.scores["contains"].mean is None and gone.scores["contains"].n == 0
    assert all(a.error and "does not exist" in a.error for a in gone.answers)
    assert ev.candidates[0].failures == 0


def test_user_scorers_and_scorer_failures(client: FineTuneClient, tuned: str, data: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_scorers.py").write_text(
        "def long(answer, expected, example):\n    return len(answer) > 40\n"
        "def broken(answer, expected, example):\n    raise RuntimeError('no')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ev = client.evaluate(data, [tuned], scorers=["python:my_scorers:long", "python:my_scorers:broken"],
                         progress=False)
    scores = ev.candidates[0].scores
    assert scores["python:my_scorers:long"].mean is not None and scores["python:my_scorers:long"].mean.mean == 1.0
    assert scores["python:my_scorers:broken"].mean is None and scores["python:my_scorers:broken"].scorer_failures == 10


def test_a_judge_that_gives_no_grade_is_a_scorer_failure(client: FineTuneClient, tuned: str, data: Path) -> None:
    ev = client.evaluate(data, [tuned], scorers=[f"judge:{BASE}"], progress=False, limit=3)
    judge = ev.candidates[0].scores[f"judge:{BASE}"]
    assert judge.n + judge.scorer_failures == 3  # the emulator's judge answers without a 1-5 grade


@pytest.mark.parametrize("reply, score", [("5", 1.0), ("Grade: 3.", 0.5), ("1", 0.0), ("none", None), ("", None),
                                          ("10", None)])
def test_judge_grades(reply: str, score: float | None) -> None:
    assert judge_grade(reply) == score


def test_bad_inputs_are_named(client: FineTuneClient, tuned: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(example("q", "a")) + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]})
                   + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"line 2: the last message is not an assistant message") as exc:
        evaluate(bad, [tuned], client=client)
    assert "line 3: invalid JSON" in str(exc.value)
    good = write(tmp_path / "good.jsonl", [example("q", "a")])
    with pytest.raises(ConfigurationError, match="unknown scorer 'fuzzy'"):
        evaluate(good, [tuned], client=client, scorers=["fuzzy"])
    with pytest.raises(ConfigurationError, match="python:nosuchmodule:f could not be loaded"):
        evaluate(good, [tuned], client=client, scorers=["python:nosuchmodule:f"])
    with pytest.raises(ConfigurationError, match="MODEL@PROFILE"):
        parse_target("gpt@")
    with pytest.raises(ConfigurationError, match="few-shot candidates need shots"):
        evaluate(good, [BASE], client=client, few_shot=1)
    with pytest.raises(DatasetError, match="only 0 example"):
        evaluate(good, [BASE], client=client, few_shot=1, shots=good)  # the shots are the evaluated example
    with pytest.raises(ValueError, match="at least one model"):
        evaluate(good, [], client=client)
    with pytest.raises(FileNotFoundError):
        evaluate(tmp_path / "missing.jsonl", [tuned], client=client)
    assert parse_target("m@azure") == ("m", "azure") and parse_target("accounts/a/models/m") == ("accounts/a/models/m",
                                                                                                None)
    assert make_scorer("similarity")("the cat sat", "the cat sat", {}) == 1.0


def test_statistics() -> None:
    values = [1.0] * 6 + [0.0] * 4
    ci = bootstrap_mean(values, seed=1)
    assert ci is not None and ci.mean == pytest.approx(0.6) and ci.low < 0.6 < ci.high
    assert bootstrap_mean(values, seed=1) == ci, "seeded: the same answers give the same report"
    assert bootstrap_mean([]) is None and bootstrap_mean([0.5]) == (0.5, 0.5, 0.5)
    diff = paired_difference([1, 1, 1, 0], [0, 1, 1, 0])
    assert diff is not None and diff.mean == pytest.approx(0.25)
    with pytest.raises(ValueError):
        paired_difference([1], [1, 2])
    assert percentile([1, 2, 3, 4], 50) == 2.5


def test_the_cli(emu: Emulator, tuned: str, data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OPENAI_API_KEY": emu.api_key, "OPENAI_BASE_URL": emu.openai_base_url,
           "FINETUNE_HOME": str(tmp_path / "home")}
    (tmp_path / "finetune.toml").write_text('default = "openai"\n[profiles.openai]\nprovider = "openai"\n')
    run = [sys.executable, "-m", "finetune_sdk", "evaluate", str(data), "--model", f"{tuned}@openai", "--model",
           BASE, "--scorer", "contains", "--html", str(tmp_path / "r.html")]
    result = subprocess.run([*run, "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["examples"] == 10 and doc["candidates"][0]["profile"] == "openai"
    assert doc["candidates"][0]["scores"]["contains"]["mean"] == pytest.approx(0.6)
    text = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert text.returncode == 0 and "contains 60%" in text.stdout and (tmp_path / "r.html").is_file()
    bad = subprocess.run([*run[:5], "--model", "x@", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert bad.returncode == 2 and "MODEL@PROFILE" in bad.stderr


def test_candidates_on_two_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old model on OpenAI, the migrated one on Azure (by deployment name): one report."""
    with emulator(speed=0, dialect="both") as emu:
        text = ""
        for provider in ("openai", "azure"):
            toml, env = emu.profile(provider, name=provider)
            text += toml + "\n"
            for var, value in env.items():
                monkeypatch.setenv(var, value)
        config = tmp_path / "finetune.toml"
        config.write_text(text)
        made = {}
        for provider in ("openai", "azure"):
            with FineTuneClient.from_config(provider, config=config, ledger=False, sleep=emu.clock.advance,
                                            clock=emu.clock.now) as c:
                job = c.jobs.wait(c.jobs.create(training_file=dataset_path("contacts", "train"),
                                                hyperparameters={"n_epochs": 1}).id, progress=False)
                made[provider] = job.fine_tuned_model if provider == "openai" else \
                    c.deployments.create(job, name="contacts").name
        emu.clock.advance(120)  # past the fresh Azure deployment's warm-up
        rows = [example(f"q{i}", f"q{i}") for i in range(4)]
        ev = evaluate(rows, [f"{made['openai']}@openai", f"{made['azure']}@azure"], config=config,
                      scorers=["contains"], progress=False)
        assert [c.profile for c in ev.candidates] == ["openai", "azure"]
        assert all(c.failures == 0 for c in ev.candidates)
        assert ev.candidates[1].scores["contains"].diff is not None
