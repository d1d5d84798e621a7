"""Exports of finished local jobs: adapter, merged model, GGUF (real and offline, on a tiny Llama)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
gguf = pytest.importorskip("gguf")

from finetune_sdk.errors import FineTuneError
from finetune_sdk.providers.local.jobs.store import JobRecord, JobStore
from finetune_sdk.providers.local.publish.export import ExportError, ExportResult, export_job
from finetune_sdk.providers.local.training.tiny import make_tiny_model
from finetune_sdk.types import JobSpec

JOB = "ftjob-x"
MESSAGES = [
    {"role": "system", "content": "Reply with JSON only."},
    {"role": "user", "content": "Maria is 34 and lives in Lisbon. 0123456789"},
    {"role": "assistant", "content": '{"name":"Maria","age":34,"city":"Lisbon"}'},
]


def _write_job(home: Path, job_id: str, *, model: str, base_path: str | None, lora: bool = True,
               status: str = "succeeded", rank: int = 4) -> Path:
    spec = JobSpec(model=model, training_file="file-abc")
    record = JobRecord(id=job_id, status=status, spec=spec, created_at=time.time(), finished_at=time.time(),
                       config={"lora": lora, "lora_rank": rank, "lora_alpha": 8, "method": "supervised"},
                       base_model_path=base_path,
                       fine_tuned_model=f"ft:{Path(model).name}:local::{job_id.removeprefix('ftjob-')[:8]}")
    d = JobStore(home).create(record) if not JobStore(home).exists(job_id) else JobStore(home).dir(job_id)
    return d


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("export")
    base = make_tiny_model(root / "tiny")
    home = root / "home"
    job_dir = _write_job(home, JOB, model=str(base), base_path=str(base))

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    with torch.no_grad():
        for pname, p in peft_model.named_parameters():
            if "lora_B" in pname:
                p.normal_(0, 0.2)   # a non-trivial adapter
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    peft_model.save_pretrained(str(job_dir / "adapter"))
    tokenizer.save_pretrained(str(job_dir / "adapter"))
    peft_model.eval()
    ids = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    input_ids = torch.tensor([tokenizer(ids, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        expected = peft_model(input_ids).logits
        with peft_model.disable_adapter():
            base_logits = peft_model(input_ids).logits
    assert (expected - base_logits).abs().max().item() > 0.1, "the adapter must change the model"
    return {"home": home, "base": base, "root": root, "tokenizer": tokenizer, "input_ids": input_ids,
            "expected": expected, "base_logits": base_logits, "chat": ids}


def _logits(model_dir: Path, input_ids, **kw):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, **kw)
    model.eval()
    with torch.no_grad():
        return model(input_ids).logits


# --------------------------------------------------------------------------- adapter

def test_adapter_export(env, tmp_path):
    out = tmp_path / "adapter-out"
    res = export_job(env["home"], JOB, format="adapter", out=out, name="mine")
    assert isinstance(res, ExportResult) and res.format == "adapter" and res.path == out.absolute()
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert (out / "tokenizer.json").is_file()
    assert out / "adapter_model.safetensors" in res.files
    assert res.commands == [f"vllm serve {env['base']} --enable-lora --lora-modules mine={out}"]
    assert not list(tmp_path.glob(".*tmp")), "the temporary directory is gone"


def test_adapter_export_high_rank_and_embedded_base(env, tmp_path):
    home = tmp_path / "home"
    d = _write_job(home, "ftjob-r", model="smollm2", base_path=str(env["base"]), rank=40)
    shutil.copytree(Path(env["home"]) / "jobs" / JOB / "adapter", d / "adapter")
    cfg = json.loads((d / "adapter" / "adapter_config.json").read_text())
    cfg["r"] = 40
    (d / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    res = export_job(home, "ftjob-r", format="adapter", out=tmp_path / "o")
    cmd = res.commands[0]
    assert cmd.startswith("vllm serve HuggingFaceTB/SmolLM2-135M-Instruct --enable-lora --lora-modules ")
    assert cmd.endswith(" --max-lora-rank 64")   # the smallest rank vLLM accepts that is >= 40
    assert "ft-smollm2-local-r=" in cmd
    assert any("Q4_1" in n for n in res.notes)


# --------------------------------------------------------------------------- merged

def test_merged_export_matches_base_plus_adapter(env, tmp_path):
    out = tmp_path / "merged"
    res = export_job(env["home"], JOB, format="merged", out=out)
    assert res.commands == [f"vllm serve {out}"]
    assert any(p.suffix == ".safetensors" for p in res.files)
    assert (out / "generation_config.json").is_file()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == env["chat"]
    got = _logits(out, env["input_ids"])
    torch.testing.assert_close(got, env["expected"], atol=1e-5, rtol=1e-5)
    assert (got - env["base_logits"]).abs().max().item() > 0.1   # the adapter is in the weights


# --------------------------------------------------------------------------- gguf

@pytest.fixture(scope="module")
def merged_logits(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "merged"
    export_job(env["home"], JOB, format="merged", out=out)
    return _logits(out, env["input_ids"])


@pytest.mark.parametrize("gguf_type,atol", [("f32", 1e-5), ("f16", 5e-3), ("q8_0", 5e-2)])
def test_gguf_round_trips_through_transformers(env, merged_logits, tmp_path, gguf_type, atol):
    out = tmp_path / f"gguf-{gguf_type}"
    res = export_job(env["home"], JOB, format="gguf", out=out, gguf_type=gguf_type, name="tiny-ft")
    filename = f"tiny-ft-{gguf_type}.gguf"
    assert sorted(p.name for p in res.files) == ["Modelfile", filename]
    assert f"ollama create tiny-ft -f {out / 'Modelfile'}" in res.commands
    assert f"llama-cli -m {out / filename} -cnv" in res.commands

    reader = gguf.GGUFReader(str(out / filename))
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["llama.block_count"].contents() == 2
    assert fields["llama.attention.head_count_kv"].contents() == 2
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["tokenizer.ggml.pre"].contents() == "gpt-2"   # llama.cpp's name
    assert fields["tokenizer.ggml.add_bos_token"].contents() is False
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()
    assert fields["tokenizer.ggml.eos_token_id"].contents() == env["tokenizer"].eos_token_id
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names and "token_embd.weight" in names   # tied embeddings
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == gguf_type.upper()

    got = _logits(out, env["input_ids"], gguf_file=filename)
    diff = (got - merged_logits).abs().max().item()
    assert diff < atol, f"{gguf_type}: max |logit diff| {diff}"

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out), gguf_file=filename)
    ref = env["tokenizer"]
    assert tok(env["chat"], add_special_tokens=True)["input_ids"] == ref(env["chat"])["input_ids"]
    assert tok.eos_token == "<|im_end|>"

    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{filename}" in modelfile
    assert 'TEMPLATE """' in modelfile and "{{ .Content }}<|im_end|>" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile


def test_gguf_permutation_is_needed(env, tmp_path, monkeypatch):
    """Writing q/k unpermuted gives a file transformers reads back wrong: the permutation is real."""
    from finetune_sdk.providers.local.publish import gguf_writer

    monkeypatch.setattr(gguf_writer, "_permute", lambda w, n_head, n_head_kv: w)
    out = tmp_path / "bad"
    export_job(env["home"], JOB, format="gguf", out=out, gguf_type="f32", name="bad")
    merged = tmp_path / "merged"
    export_job(env["home"], JOB, format="merged", out=merged)
    diff = (_logits(out, env["input_ids"], gguf_file="bad-f32.gguf") - _logits(merged, env["input_ids"])).abs().max()
    assert diff.item() > 1e-3


# --------------------------------------------------------------------------- full fine-tunes

@pytest.fixture(scope="module")
def full_job(env):
    home = env["root"] / "home-full"
    d = _write_job(home, "ftjob-full", model=str(env["base"]), base_path=str(env["base"]), lora=False)
    shutil.copytree(env["base"], d / "model")
    return home


def test_full_finetune_adapter_refused(full_job, tmp_path):
    with pytest.raises(ExportError, match="no adapter: export merged instead"):
        export_job(full_job, "ftjob-full", format="adapter", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_full_finetune_merged_and_gguf(env, full_job, tmp_path):
    res = export_job(full_job, "ftjob-full", format="merged", out=tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    want = _logits(tmp_path / "m", env["input_ids"])
    res = export_job(full_job, "ftjob-full", format="gguf", out=tmp_path / "g", gguf_type="f32")
    gguf_file = next(p.name for p in res.files if p.suffix == ".gguf")
    got = _logits(tmp_path / "g", env["input_ids"], gguf_file=gguf_file)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- errors

def test_unknown_job(env, tmp_path):
    with pytest.raises(ExportError) as err:
        export_job(env["home"], "ftjob-nope", format="adapter", out=tmp_path / "o")
    msg = str(err.value)
    assert "ftjob-nope" in msg and str(Path(env["home"]) / "jobs") in msg and JOB in msg
    assert isinstance(err.value, FineTuneError)
    with pytest.raises(ExportError, match="not a valid job id"):
        export_job(env["home"], "../x", format="adapter", out=tmp_path / "o")


@pytest.mark.parametrize("status,phrase", [("running", "still running"), ("failed", "it failed")])
def test_job_not_succeeded(env, tmp_path, status, phrase):
    home = tmp_path / "home"
    _write_job(home, "ftjob-s", model=str(env["base"]), base_path=str(env["base"]), status=status)
    with pytest.raises(ExportError, match=phrase):
        export_job(home, "ftjob-s", format="merged", out=tmp_path / "o")


def test_out_not_empty(env, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_job(env["home"], JOB, format="adapter", out=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # An existing empty directory is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    export_job(env["home"], JOB, format="adapter", out=empty)
    assert (empty / "adapter_model.safetensors").is_file()


def test_bad_arguments(env, tmp_path):
    with pytest.raises(ExportError, match="Unknown export format"):
        export_job(env["home"], JOB, format="onnx", out=tmp_path / "o")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="gguf_type"):
        export_job(env["home"], JOB, format="gguf", out=tmp_path / "o", gguf_type="q4_0")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="not usable"):
        export_job(env["home"], JOB, format="adapter", out=tmp_path / "o", name="bad name/..")


def test_unsupported_architecture(env, tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(str(env["base"]))
    gpt2_dir = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64)) \
        .save_pretrained(str(gpt2_dir))
    tok.save_pretrained(str(gpt2_dir))
    home = tmp_path / "home"
    d = _write_job(home, "ftjob-g", model=str(gpt2_dir), base_path=str(gpt2_dir), lora=False)
    shutil.copytree(gpt2_dir, d / "model")
    out = tmp_path / "o"
    with pytest.raises(ExportError) as err:
        export_job(home, "ftjob-g", format="gguf", out=out)
    msg = str(err.value)
    assert "'gpt2'" in msg and "format='merged'" in msg
    assert "python convert_hf_to_gguf.py <merged dir> --outfile model.gguf --outtype f16" in msg
    assert not out.exists() and not list(tmp_path.glob(".o.*"))


def test_failure_leaves_nothing_behind(env, tmp_path, monkeypatch):
    from finetune_sdk.providers.local.publish import export as export_mod

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "write_llama_gguf", boom)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError, match="disk full"):
        export_job(env["home"], JOB, format="gguf", out=out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- pieces

def test_permutation_is_what_transformers_reverses():
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from finetune_sdk.providers.local.publish.gguf_writer import _permute

    rng = np.random.default_rng(0)
    proc = LlamaTensorProcessor(config={"num_attention_heads": 6, "num_key_value_heads": 2})
    q = rng.normal(size=(6 * 8, 12)).astype(np.float32)
    k = rng.normal(size=(2 * 8, 12)).astype(np.float32)
    assert not np.array_equal(_permute(q, 6, 6), q)
    np.testing.assert_array_equal(proc.process(_permute(q, 6, 6), "blk.0.attn_q.weight").weights, q)
    np.testing.assert_array_equal(proc.process(_permute(k, 6, 2), "blk.0.attn_k.weight").weights, k)


def test_pre_tokenizer_names():
    from finetune_sdk.providers.local.publish.gguf_writer import GgufUnsupported, _bpe_pre_tokenizer

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    bpe = {"type": "BPE", "merges": ["a b"]}
    assert _bpe_pre_tokenizer({"model": bpe, "pre_tokenizer": byte_level}) == "gpt-2"
    smollm = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert _bpe_pre_tokenizer({"model": bpe, "pre_tokenizer": smollm}) == "smollm"
    with pytest.raises(GgufUnsupported, match="byte-level"):
        _bpe_pre_tokenizer({"model": {**bpe, "byte_fallback": True}, "pre_tokenizer": None})
    with pytest.raises(GgufUnsupported, match="pre-tokenizer"):
        _bpe_pre_tokenizer({"model": bpe, "pre_tokenizer": {"type": "Whitespace"}})
