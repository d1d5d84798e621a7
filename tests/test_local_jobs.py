"""Local jobs as supervised processes, on a tiny random Llama: lifecycle, queueing, cancel,
pause/resume, kill-and-resume (same weights as an uninterrupted run), bad input, DPO,
and a 2-process data-parallel run (gloo) matching the single-process result.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from safetensors.torch import load_file

from finetune_sdk import FineTuneClient
from finetune_sdk.errors import BadRequestError, DatasetError, JobFailedError
from finetune_sdk.providers.local.training.tiny import make_tiny_model
from finetune_sdk.types import JobStatus
from finetune_sdk.waiting import PollSchedule

FAST = PollSchedule(initial=0.3, maximum=1.0, near_end=0.3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


def chat_file(path: Path, n: int = 24, seed: int = 0) -> Path:
    rows = []
    for i in range(n):
        age = 20 + (i * 7 + seed) % 50
        rows.append({"messages": [{"role": "system", "content": "Reply with JSON only."},
                                  {"role": "user", "content": f"Maria is {age} and lives in Lisbon."},
                                  {"role": "assistant", "content": json.dumps({"name": "Maria", "age": age})}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def client(home: Path) -> FineTuneClient:
    return FineTuneClient("local", home=str(home), ledger=False, poll=FAST)


def wait_for(predicate: Any, timeout: float = 120.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def adapter(job_dir: Path) -> dict[str, Any]:
    return load_file(str(job_dir / "adapter" / "adapter_model.safetensors"))


def test_lifecycle_events_metrics_checkpoints(tiny: str, tmp_path: Path) -> None:
    c = client(tmp_path / "home")
    job = c.jobs.create(model=tiny, training_file=chat_file(tmp_path / "t.jsonl"),
                        validation_file=chat_file(tmp_path / "v.jsonl", 6, seed=3),
                        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 5})
    assert job.status is JobStatus.VALIDATING and job.provider == "local"
    events = list(c.jobs.follow(job.id))
    messages = [e.message for e in events]
    assert messages[0].startswith("Validating training file") and messages[-1] == "The job has successfully completed"
    assert any(m.startswith("Files validated") for m in messages)
    job = c.jobs.wait(job.id, progress=False)
    assert job.status is JobStatus.SUCCEEDED and job.fine_tuned_model.startswith("ft:model:local:")
    metrics = c.jobs.metrics(job.id)
    assert [p.step for p in metrics] == list(range(1, 13))
    last = metrics[-1]
    assert last.full_valid_loss is not None and last.valid_loss is not None
    extra = last.model_extra or {}
    assert {"tokens_per_second", "learning_rate", "grad_norm", "eta_seconds"} <= set(extra)
    assert metrics[0].train_loss > metrics[-1].train_loss
    ckpts = c.jobs.checkpoints(job.id)
    assert [k.step for k in ckpts] == [6, 12] and all(Path(k.path).is_dir() for k in ckpts)
    csv = c.files.content(job.result_files[0]).decode()
    assert csv.splitlines()[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    job_dir = tmp_path / "home" / "jobs" / job.id
    assert (job_dir / "adapter" / "adapter_config.json").is_file() and (job_dir / "train.log").is_file()


def test_bad_input_fails_early_and_clearly(tiny: str, tmp_path: Path) -> None:
    c = client(tmp_path / "home")
    with pytest.raises(BadRequestError, match="smollm9|alias|not"):
        c.jobs.create(model="smollm9-unknown", training_file=chat_file(tmp_path / "t.jsonl"))
    with pytest.raises(BadRequestError, match="lora_rnak"):
        c.jobs.create(model=tiny, training_file=chat_file(tmp_path / "t.jsonl"), hyperparameters={"lora_rnak": 4})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n' * 3)
    with pytest.raises(DatasetError, match="no_trainable_assistant"):  # the client validates before uploading
        c.jobs.create(model=tiny, training_file=bad)
    job = c.jobs.create(model=tiny, training_file=bad, validate=False)  # the job validates again, in its process
    with pytest.raises(JobFailedError, match="no_trainable_assistant") as exc:
        c.jobs.wait(job.id, progress=False)
    assert exc.value.job.error.code == "invalid_training_file"
    report = tmp_path / "home" / "jobs" / job.id / "validation_report.json"
    assert json.loads(report.read_text())["valid"] is False


def test_data_with_images_is_refused_before_a_job_exists(tiny: str, tmp_path: Path) -> None:
    """Text-only base models: create names the lines with images (20, then a count) and creates nothing."""
    from finetune_sdk.providers.base import Provider
    from finetune_sdk.providers.local.provider import LocalProvider

    assert Provider.accepts_images is True and LocalProvider.accepts_images is False
    image_example = json.dumps({"messages": [
        {"role": "system", "content": "Reply with JSON only."},
        {"role": "user", "content": [{"type": "text", "text": "Who is this?"},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/maria.png"}}]},
        {"role": "assistant", "content": '{"name": "Maria"}'}]})
    lines = chat_file(tmp_path / "plain.jsonl", 50).read_text().splitlines()
    for n in range(2, 51, 2):  # 25 lines with an image: 2, 4, ..., 50
        lines[n - 1] = image_example
    train = tmp_path / "t.jsonl"
    train.write_text("\n".join(lines) + "\n")
    valid = tmp_path / "v.jsonl"
    valid.write_text(chat_file(tmp_path / "v0.jsonl", 3).read_text() + image_example + "\n")
    c = client(tmp_path / "home")
    # The client checks by the local rules first: nothing is even uploaded.
    with pytest.raises(DatasetError, match="nothing was uploaded") as first:
        c.jobs.create(model=tiny, training_file=train, validation_file=valid)
    assert first.value.report is not None
    assert first.value.report.error_counts == {"images_not_supported_by_model": 25}
    assert not c.files.list()
    # A file uploaded as it is (validate=False) still meets the provider's own refusal.
    with pytest.raises(DatasetError) as exc:
        c.jobs.create(model=tiny, training_file=train, validation_file=valid, validate=False)
    message = str(exc.value)
    listed = ", ".join(str(n) for n in range(2, 41, 2))
    assert f"has images on 25 line(s): {listed} and 5 more" in message
    assert "validation file" in message and "has images on 1 line(s): 4" in message
    assert "text-only" in message and "hosted provider" in message
    assert c.jobs.list() == []
    assert not (tmp_path / "home" / "jobs").exists() or not any((tmp_path / "home" / "jobs").iterdir())


@pytest.mark.parametrize("failure, code, advice", [
    ("nan", "non_finite_loss", "learning_rate_multiplier"),
    ("oom", "out_of_memory", "batch_size"),
])
def test_training_failures_end_the_job_with_advice(tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   failure: str, code: str, advice: str) -> None:
    """The training process itself is run in-process here, so a failure can be injected into it."""
    from finetune_sdk.providers.local.training import trainer as trainer_mod
    from finetune_sdk.providers.local.training.train import JobRunner

    c = FineTuneClient("local", home=str(tmp_path / "home"), ledger=False, poll=FAST, launcher="true")
    job = c.jobs.create(model=tiny, training_file=chat_file(tmp_path / "t.jsonl"), hyperparameters={"batch_size": 4})

    def broken(self: Any) -> Any:
        if failure == "nan":
            raise trainer_mod.NonFiniteLoss(f"the loss became nan at step {self.step + 1}")
        raise MemoryError()

    monkeypatch.setattr(trainer_mod.Trainer, "run_step", broken)
    assert JobRunner(tmp_path / "home" / "jobs" / job.id).run() == 1
    failed = c.jobs.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error.code == code
    assert advice in failed.error.message


def test_non_finite_loss_is_detected(tiny: str) -> None:
    from finetune_sdk.providers.local import models
    from finetune_sdk.providers.local.jobs.hparams import TrainConfig
    from finetune_sdk.providers.local.training.batching import ChatRenderer
    from finetune_sdk.providers.local.training.trainer import Dist, NonFiniteLoss, Trainer

    resolved = models.resolve_base_model(tiny)
    tok = models.load_tokenizer(resolved)
    model = models.load_model(resolved)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    seqs = [ChatRenderer(tok, 64).chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])]
    t = Trainer(TrainConfig(lora=False, batch_size=1), model, seqs, [], device=torch.device("cpu"), dist=Dist(),
                mask="bool", emit=lambda *a: None, checkpoint_dir=Path("/nonexistent"), should_stop=lambda: None,
                save_adapter=lambda p: None)
    with pytest.raises(NonFiniteLoss, match="step 1"):
        t.run_step()


def test_queue_cancel_and_pause(tiny: str, tmp_path: Path) -> None:
    c = client(tmp_path / "home")
    data = chat_file(tmp_path / "t.jsonl", 64)
    slow = {"n_epochs": 50, "batch_size": 2, "checkpoint_every": 5}
    first = c.jobs.create(model=tiny, training_file=data, hyperparameters=slow)
    wait_for(lambda: c.jobs.get(first.id).status is JobStatus.RUNNING)
    second = c.jobs.create(model=tiny, training_file=data, hyperparameters=slow)
    wait_for(lambda: c.jobs.get(second.id).status is JobStatus.QUEUED)  # one running job per device
    assert any("Queued" in e.message for e in c.jobs.events(second.id))

    wait_for(lambda: (c.jobs.get(first.id).raw or {}).get("step", 0) >= 6)
    cancelled = c.jobs.cancel(first.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert c.jobs.checkpoints(first.id), "cancel keeps the last checkpoint"

    wait_for(lambda: c.jobs.get(second.id).status is JobStatus.RUNNING)  # the queue moves on
    wait_for(lambda: (c.jobs.get(second.id).raw or {}).get("step", 0) >= 2)
    paused = c.jobs.pause(second.id)
    assert paused.status is JobStatus.PAUSED
    step = paused.raw["step"]
    time.sleep(1.5)
    assert c.jobs.get(second.id).raw["step"] == step, "a paused job kept training"
    resumed = c.jobs.resume(second.id)
    assert resumed.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    wait_for(lambda: (c.jobs.get(second.id).raw or {}).get("step", 0) > step)
    assert any("resumed" in e.message.lower() for e in c.jobs.events(second.id))
    assert c.jobs.cancel(second.id).status is JobStatus.CANCELLED


def train_to_end(c: FineTuneClient, tiny: str, data: Path, **hp: Any) -> Any:
    """A short run for the parity tests, in float32.

    bf16 rounding is discontinuous: a last-bit difference anywhere (a reduction order that
    the thread pool picks under load) flips some roundings, and Adam at this learning rate
    turns that into 1e-4-sized weight differences. The parity these tests check is of the
    bookkeeping (checkpoint state, data position, rank split), so they run where arithmetic
    is continuous; bf16 steps are covered in test_local_batching.py.
    """
    job = c.jobs.create(model=tiny, training_file=data, seed=7,
                        hyperparameters={"n_epochs": 2, "batch_size": 4, "checkpoint_every": 2,
                                         "learning_rate_multiplier": 5, "dtype": "float32", **hp})
    return job


def test_kill_and_resume_matches_uninterrupted(tiny: str, tmp_path: Path) -> None:
    data = chat_file(tmp_path / "t.jsonl", 24)
    ref_client = client(tmp_path / "ref")
    ref = ref_client.jobs.wait(train_to_end(ref_client, tiny, data).id, progress=False)

    c = client(tmp_path / "home")
    job = train_to_end(c, tiny, data)
    wait_for(lambda: len(c.jobs.checkpoints(job.id)) >= 2)  # steps 2 and 4 checkpointed
    pid = c.jobs.get(job.id).raw["pid"]
    os.killpg(pid, signal.SIGKILL)  # a hard kill: no chance to save anything
    failed = wait_for(lambda: (lambda j: j if j.status is JobStatus.FAILED else None)(c.jobs.get(job.id)))
    assert failed.error.code == "process_lost" and "train.log" in failed.error.message
    c.jobs.resume(job.id)
    done = c.jobs.wait(job.id, progress=False)
    assert done.status is JobStatus.SUCCEEDED
    # Every step after the resume sees the same batch with the same optimizer state: the
    # per-step losses agree with the uninterrupted run's (a lost data position or optimizer
    # state would show at the first resumed step).
    resumed = {m.step: m.train_loss for m in c.jobs.metrics(job.id)}
    uninterrupted = {m.step: m.train_loss for m in ref_client.jobs.metrics(ref.id)}
    assert resumed.keys() == uninterrupted.keys()
    assert all(abs(resumed[k] - uninterrupted[k]) < 1e-4 for k in resumed), (resumed, uninterrupted)
    ours = adapter(tmp_path / "home" / "jobs" / job.id)
    theirs = adapter(tmp_path / "ref" / "jobs" / ref.id)
    assert ours.keys() == theirs.keys()
    for key in ours:
        # Same weights up to float32 noise. Adam divides each gradient by its own running
        # magnitude, so for the rare element whose gradient is ~0 a last-bit difference
        # becomes a learning-rate-sized step (measured: 3 of 1,024 elements of one tensor in
        # ~1 of 6 kill timings). A resume bug moves every element instead.
        off = (ours[key] - theirs[key]).abs() > 1e-5
        assert float(off.float().mean()) <= 0.01, (key, int(off.sum()))
        assert float((ours[key] - theirs[key]).norm()) <= 5e-3 * float(theirs[key].norm()) + 1e-6, key


def test_two_process_data_parallel_matches_single_process(tiny: str, tmp_path: Path) -> None:
    if shutil.which("torchrun") is None and not Path(os.path.dirname(os.sys.executable), "torchrun").exists():
        pytest.skip("torchrun is not installed")
    data = chat_file(tmp_path / "t.jsonl", 16)
    single = client(tmp_path / "one")
    one = single.jobs.wait(train_to_end(single, tiny, data, lora_dropout=0.0).id, progress=False)
    torchrun = str(Path(os.sys.executable).with_name("torchrun"))
    ddp = FineTuneClient("local", home=str(tmp_path / "two"), ledger=False, poll=FAST,
                         launcher=f"{torchrun} --nproc-per-node 2 --master-port 29533")
    two = ddp.jobs.wait(train_to_end(ddp, tiny, data, lora_dropout=0.0).id, progress=False)
    a, b = adapter(tmp_path / "one" / "jobs" / one.id), adapter(tmp_path / "two" / "jobs" / two.id)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4), key
    la, lb = single.jobs.metrics(one.id), ddp.jobs.metrics(two.id)
    assert [round(p.train_loss, 4) for p in la] == [round(p.train_loss, 4) for p in lb]


def test_dpo_on_preference_data(tiny: str, tmp_path: Path) -> None:
    rows = [{"input": {"messages": [{"role": "user", "content": f"Say yes {i}"}]},
             "preferred_output": [{"role": "assistant", "content": "yes"}],
             "non_preferred_output": [{"role": "assistant", "content": "no way"}]} for i in range(12)]
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = client(tmp_path / "home")
    job = c.jobs.create(model=tiny, training_file=data, method="dpo",
                        hyperparameters={"n_epochs": 2, "batch_size": 4, "beta": 0.5, "learning_rate_multiplier": 20})
    job = c.jobs.wait(job.id, progress=False)
    assert job.status is JobStatus.SUCCEEDED and job.method == "dpo"
    points = c.jobs.metrics(job.id)
    assert points[-1].train_loss < points[0].train_loss  # the policy moves towards the preferred answers
    assert "reward_accuracy" in (points[-1].model_extra or {})
