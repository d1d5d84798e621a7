"""Pushing a finished local job to the Hugging Face Hub, against an HTTP fake of the Hub."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fake_hub import fake_hub

from finetune_sdk.errors import FineTuneError
from finetune_sdk.metrics import points_from_events, to_results_csv
from finetune_sdk.providers.local.jobs.hparams import TrainConfig
from finetune_sdk.providers.local.jobs.store import JobRecord, JobStore
from finetune_sdk.providers.local.publish.hub import HubError, PushResult, model_card, push_job_to_hub
from finetune_sdk.types import DatasetReport, Distribution, Event, JobError, JobSpec, TokenStats, from_timestamp

TOKEN = "hf_FakeWriteToken0123456789abcdef"
JOB = "ftjob-x"
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "README.md"}


# --------------------------------------------------------------------------- fixtures

def _record(job_id: str, base: Path, status: str, **extra: Any) -> JobRecord:
    cfg = TrainConfig(lora_rank=4, lora_alpha=8, lora_dropout=0.0, n_epochs=2, batch_size=4,
                      learning_rate_multiplier=0.5, max_length=512, seed=7).model_dump()
    return JobRecord(id=job_id, status=status, spec=JobSpec(model=str(base), training_file="file-train0001"),
                     config=cfg, created_at=time.time() - 60, base_model_path=str(base), **extra)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FINETUNE_HOME with a succeeded LoRA job around the tiny model, and an unfinished and a failed one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune_sdk.providers.local.training.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("hub-home")
    base = make_tiny_model(root / "tiny-base")
    home = root / "home"
    store = JobStore(home)
    d = store.create(_record(JOB, base, "succeeded", fine_tuned_model="ft:tiny-base:local::x", trained_tokens=10080,
                             finished_at=time.time()))

    model = AutoModelForCausalLM.from_pretrained(str(base))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():  # B starts at zero: make the adapter do something, so merging is observable
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    peft_model.save_pretrained(str(d / "adapter"))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(d / "adapter"))

    for step, (train, valid, full) in enumerate([(2.75, None, None), (2.31, 2.4, None), (1.9876, 2.05, 2.0412)], 1):
        data: dict[str, Any] = {"step": step, "train_loss": train, "train_mean_token_accuracy": 0.3 + step / 10,
                                "step_seconds": 0.1}
        if valid is not None:
            data["valid_loss"] = valid
        if full is not None:
            data["full_valid_loss"] = full
        store.append_event(JOB, Event(id=f"ftevent-{step}", created_at=from_timestamp(time.time()),
                                      message=f"Step {step}/3", type="metrics", data=data))
    store.append_event(JOB, Event(id="ftevent-done", created_at=from_timestamp(time.time()),
                                  message="The job has successfully completed"))
    (d / "results.csv").write_text(to_results_csv(points_from_events(store.events(JOB))), encoding="utf-8")
    tokens = TokenStats(encoding="chat_template:tiny-base", exact=True, examples_counted=42, total_tokens=5040,
                        assistant_tokens=1302, per_example=Distribution.of([100 + i * 2 for i in range(42)]))
    report = DatasetReport(path="train.jsonl", format="chat", lines=42, examples=42, tokens=tokens,
                           validation=DatasetReport(path="validation.jsonl", format="chat", lines=8, examples=8,
                                                    tokens=TokenStats(encoding="x", exact=True, total_tokens=960)))
    (d / "validation_report.json").write_text(json.dumps(report.to_json_dict(), indent=1), encoding="utf-8")

    store.create(_record("ftjob-running", base, "running"))
    store.create(_record("ftjob-failed", base, "failed", error=JobError(code="out_of_memory", message="OOM")))
    return home


@pytest.fixture(autouse=True)
def no_ambient_hub_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token or endpoint from the developer's machine leaks into a test."""
    import huggingface_hub.constants as hf_constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub() -> Iterator[Any]:
    with fake_hub(tokens={TOKEN: "alice"}, orgs={"team": {"bob"}}) as h:
        yield h


def _adapter_dir(home: Path) -> Path:
    return home / "jobs" / JOB / "adapter"


# --------------------------------------------------------------------------- pushing an adapter

def test_push_adapter_creates_repo_and_uploads_files_in_one_commit(home: Path, hub: Any) -> None:
    result = push_job_to_hub(home, JOB, "alice/tiny-lora", token=TOKEN, endpoint=hub.url)

    assert isinstance(result, PushResult)
    assert result.repo_id == "alice/tiny-lora"
    assert result.url == f"{hub.url}/alice/tiny-lora"
    assert result.commit_url and result.commit_url.startswith(f"{hub.url}/alice/tiny-lora/commit/")

    # Exactly these Hub endpoints, in this order.
    assert hub.endpoints() == [
        "POST /api/repos/create",
        "POST /api/validate-yaml",
        "POST /api/models/alice/tiny-lora/preupload/main",
        "POST /api/models/alice/tiny-lora/commit/main",
    ]
    repo = hub.repos["alice/tiny-lora"]
    assert repo["private"] is False
    assert len(repo["commits"]) == 1, "everything goes in ONE commit"
    assert repo["commits"][0]["summary"] == f"Upload LoRA adapter from finetune-sdk job {JOB}"

    # Byte-identical files, except: PEFT's template README is replaced by our card, and the adapter
    # config names the base model instead of a path on this machine.
    adapter = _adapter_dir(home)
    local = {p.name for p in adapter.iterdir() if p.is_file()}
    assert set(repo["files"]) == local
    assert ADAPTER_FILES <= set(repo["files"])
    assert result.files == sorted(repo["files"])
    for name, data in repo["files"].items():
        if name not in ("README.md", "adapter_config.json"):
            assert data == (adapter / name).read_bytes(), name
    published = json.loads(repo["files"]["adapter_config.json"])
    original = json.loads((adapter / "adapter_config.json").read_text())
    assert published["base_model_name_or_path"] == Path(original["base_model_name_or_path"]).name
    assert {k: v for k, v in published.items() if k != "base_model_name_or_path"} == \
        {k: v for k, v in original.items() if k != "base_model_name_or_path"}
    card = repo["files"]["README.md"].decode()
    assert card != (adapter / "README.md").read_text()
    assert card == model_card(home, JOB, repo_id="alice/tiny-lora", merged=False)
    assert hub.validated_yaml == [card]


def test_private_flag_is_honoured(home: Path, hub: Any) -> None:
    push_job_to_hub(home, JOB, "alice/secret-lora", private=True, token=TOKEN, endpoint=hub.url)
    assert hub.repos["alice/secret-lora"]["private"] is True


def test_endpoint_and_token_from_the_environment(home: Path, hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_ENDPOINT only at import: the push must read it at call time.
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = push_job_to_hub(home, JOB, "alice/env-lora")
    assert result.url == f"{hub.url}/alice/env-lora"
    assert "adapter_model.safetensors" in hub.repos["alice/env-lora"]["files"]


def test_token_stored_by_hf_auth_login(home: Path, hub: Any, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    import huggingface_hub.constants as hf_constants

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(token_file))
    push_job_to_hub(home, JOB, "alice/stored-token", endpoint=hub.url)
    assert "alice/stored-token" in hub.repos


def test_repush_of_unchanged_files_makes_no_new_commit(home: Path, hub: Any) -> None:
    first = push_job_to_hub(home, JOB, "alice/again", token=TOKEN, endpoint=hub.url)
    hub.reset_requests()
    second = push_job_to_hub(home, JOB, "alice/again", token=TOKEN, endpoint=hub.url)
    assert len(hub.repos["alice/again"]["commits"]) == 1
    assert second.commit_url == first.commit_url
    assert hub.endpoints() == [
        "POST /api/repos/create",                         # 409 exists: fine (exist_ok)
        "POST /api/validate-yaml",
        "POST /api/models/alice/again/preupload/main",   # every oid matches: nothing to commit
        "GET /api/models/alice/again/revision/main",      # the latest commit, for the result
    ]


# --------------------------------------------------------------------------- the model card

def test_model_card_content(home: Path) -> None:
    import yaml

    card = model_card(home, JOB, repo_id="alice/tiny-lora", merged=False)
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "peft"
    assert {"finetune-sdk", "lora", "peft"} <= set(meta["tags"])
    assert "base_model" not in meta  # a local directory is not a Hub id
    assert "license" not in meta      # unknown for a local directory

    assert "tiny-base" in card                     # base model (its name, never the local path)
    assert str(home.parent) not in card
    assert "| Training examples | 42 |" in card     # data statistics
    assert "| Validation examples | 8 |" in card
    assert "5,040" in card and "1,302" in card and "10,080" in card
    assert "| LoRA rank / alpha / dropout | 4 / 8 / 0 |" in card   # hyperparameters
    assert "| Epochs | 2 |" in card and "| Batch size (examples per step) | 4 |" in card
    assert "| Learning rate | 0.0001 (multiplier 0.5) |" in card
    assert "| Max length (tokens) | 512 |" in card
    assert "| Training loss | 1.9876 | 3 |" in card  # final metrics
    assert "| Validation loss | 2.0500 | 3 |" in card
    assert "| Full validation loss | 2.0412 | 3 |" in card
    assert "PeftModel.from_pretrained(base, 'alice/tiny-lora')" in card   # usage
    assert "vllm serve path/to/tiny-base --enable-lora --lora-modules tiny-lora=alice/tiny-lora" in card
    assert "finetune serve --model ft:tiny-base:local::x" in card


def test_model_card_for_the_embedded_smollm2(home: Path, tmp_path: Path) -> None:
    import shutil

    import yaml

    job_home = tmp_path / "home"
    shutil.copytree(home / "jobs" / JOB, job_home / "jobs" / JOB, ignore=shutil.ignore_patterns("adapter"))
    (job_home / "jobs" / JOB / "adapter").mkdir()
    (job_home / "jobs" / JOB / "adapter" / "adapter_config.json").write_text("{}")
    store = JobStore(job_home)
    store.update(JOB, change=lambda r: setattr(r.spec, "model", "smollm2"))

    adapter_card = model_card(job_home, JOB, repo_id="alice/smol-lora", merged=False)
    meta = yaml.safe_load(adapter_card.split("---\n")[1])
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["license"] == "apache-2.0"
    assert meta["library_name"] == "peft"
    assert ("vllm serve HuggingFaceTB/SmolLM2-135M-Instruct --enable-lora "
            "--lora-modules smol-lora=alice/smol-lora --max-lora-rank 16") in adapter_card

    merged_card = model_card(job_home, JOB, repo_id="alice/smol-merged", merged=True)
    meta = yaml.safe_load(merged_card.split("---\n")[1])
    assert meta["library_name"] == "transformers"
    assert "merged" in meta["tags"]
    assert "vllm serve alice/smol-merged\n" in merged_card
    assert "finetune serve --model alice/smol-merged\n" in merged_card
    assert "PeftModel" not in merged_card


# --------------------------------------------------------------------------- merged

def test_push_merged_model_loads_back_with_transformers(home: Path, hub: Any, tmp_path: Path) -> None:
    import torch
    from huggingface_hub import snapshot_download
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = push_job_to_hub(home, JOB, "alice/tiny-merged", merged=True, token=TOKEN, endpoint=hub.url)
    files = hub.repos["alice/tiny-merged"]["files"]
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(files)
    assert not any(name.startswith("adapter_") for name in files)
    assert result.files == sorted(files)
    assert hub.endpoints() == [
        "POST /api/repos/create",
        "POST /api/validate-yaml",
        "POST /api/models/alice/tiny-merged/preupload/main",
        "POST /api/models/alice/tiny-merged/commit/main",
    ]
    assert "library_name: transformers" in files["README.md"].decode()

    # Download it back through huggingface_hub, and load it.
    hub.reset_requests()
    local = snapshot_download("alice/tiny-merged", endpoint=hub.url, token=TOKEN, local_dir=tmp_path / "dl",
                              cache_dir=tmp_path / "cache")
    assert "GET /api/models/alice/tiny-merged/revision/main" in hub.endpoints()
    merged = AutoModelForCausalLM.from_pretrained(local).eval()
    tokenizer = AutoTokenizer.from_pretrained(local)

    base_dir = Path(JobStore(home).read(JOB).base_model_path or "")
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)),
                                          str(_adapter_dir(home))).eval()
    plain = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    ids = tokenizer("Hello, how are you today?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        got, want, before = merged(ids).logits, reference(ids).logits, plain(ids).logits
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, before, atol=1e-3), "the adapter must be merged in"


def test_push_full_fine_tune(home: Path, hub: Any, tmp_path: Path) -> None:
    import shutil

    import yaml

    full_home = tmp_path / "home"
    base = Path(JobStore(home).read(JOB).base_model_path or "")
    record = _record("ftjob-full", base, "succeeded", fine_tuned_model="ft:tiny-base:local::full")
    record.config["lora"] = False
    d = JobStore(full_home).create(record)
    shutil.copytree(base, d / "model")

    result = push_job_to_hub(full_home, "ftjob-full", "alice/tiny-full", token=TOKEN, endpoint=hub.url)
    files = hub.repos["alice/tiny-full"]["files"]
    assert result.files == sorted(files)
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert files[name] == (d / "model" / name).read_bytes()
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and "full-fine-tune" in meta["tags"]
    assert "The dataset statistics were not recorded." in card and "No metrics were recorded." in card
    assert "vllm serve alice/tiny-full\n" in card
    assert hub.repos["alice/tiny-full"]["commits"][0]["summary"] == (
        "Upload fine-tuned model from finetune-sdk job ftjob-full")


# --------------------------------------------------------------------------- errors

def test_missing_token_says_how_to_log_in(home: Path, hub: Any) -> None:
    with pytest.raises(HubError) as info:
        push_job_to_hub(home, JOB, "alice/x", endpoint=hub.url)
    assert isinstance(info.value, FineTuneError)
    assert "hf auth login" in str(info.value) and "HF_TOKEN" in str(info.value)
    assert hub.requests == [], "nothing is sent without a token"


def test_bad_token_is_rejected_without_leaking_it(home: Path, hub: Any) -> None:
    bad = "hf_ThisTokenIsWrong0123456789xyz"
    with pytest.raises(HubError) as info:
        push_job_to_hub(home, JOB, "alice/x", token=bad, endpoint=hub.url)
    err = info.value
    assert err.status_code == 401
    assert "Invalid credentials in Authorization header" in str(err)   # the Hub's message
    assert "hf auth login" in str(err)                                 # what to do
    for text in (str(err), repr(err), str(err.server_message), str(pickle.loads(pickle.dumps(err)))):
        assert bad not in text
    assert err.__cause__ is None
    assert hub.endpoints()[0] == "POST /api/repos/create"
    assert "alice/x" not in hub.repos


def test_no_write_access_to_namespace_is_403(home: Path, hub: Any) -> None:
    with pytest.raises(HubError) as info:
        push_job_to_hub(home, JOB, "team/model", token=TOKEN, endpoint=hub.url)
    assert info.value.status_code == 403
    assert "rights to create a model" in str(info.value) and "write access" in str(info.value)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


@pytest.mark.parametrize("status, message, hint", [
    (503, "Service Unavailable", "retry in a few minutes"),
    (409, "A commit has happened since. Please refresh and try again.", "concurrent commit"),
])
def test_hub_errors_on_commit(home: Path, hub: Any, status: int, message: str, hint: str) -> None:
    hub.fail("POST", r"/commit/", status, message)
    with pytest.raises(HubError) as info:
        push_job_to_hub(home, JOB, "alice/flaky", token=TOKEN, endpoint=hub.url)
    assert info.value.status_code == status
    assert message.rstrip(".") in str(info.value) and hint in str(info.value)
    assert hub.repos["alice/flaky"]["files"] == {}


def test_unreachable_hub(home: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HubError) as info:
        push_job_to_hub(home, JOB, "alice/x", token=TOKEN, endpoint=f"http://127.0.0.1:{port}")
    assert "Could not reach the Hugging Face Hub" in str(info.value)
    assert TOKEN not in str(info.value)


def test_unknown_job(home: Path, hub: Any) -> None:
    with pytest.raises(HubError, match="No local fine-tuning job 'ftjob-nope'.*finetune jobs list"):
        push_job_to_hub(home, "ftjob-nope", "alice/x", token=TOKEN, endpoint=hub.url)
    with pytest.raises(HubError, match="No local fine-tuning job"):
        model_card(home, "../etc", repo_id="alice/x", merged=False)
    assert hub.requests == []


@pytest.mark.parametrize("job_id, words", [("ftjob-running", "still running"), ("ftjob-failed", "failed (OOM)")])
def test_unfinished_job(home: Path, hub: Any, job_id: str, words: str) -> None:
    with pytest.raises(HubError) as info:
        push_job_to_hub(home, job_id, "alice/x", token=TOKEN, endpoint=hub.url)
    assert words in str(info.value) and "finetune jobs wait" in str(info.value)
    assert hub.requests == []
