"""A GGUF writer for LLaMA-architecture Hugging Face models, for llama.cpp and Ollama.

:func:`write_llama_gguf` writes one GGUF file (``f16``, ``f32`` or ``q8_0``) with the
``gguf`` package, holding the keys, vocabulary and tensors llama.cpp's
``convert_hf_to_gguf.py`` writes for LLaMA (SmolLM2 is one). The q/k projections are
permuted as that converter does, from Hugging Face's rotate-half layout to GGML's
interleaved RoPE layout, so llama.cpp and transformers
(``from_pretrained(DIR, gguf_file=...)``) read the file back correctly. Other
architectures and tokenizers raise :class:`GgufUnsupported`, whose message names what
is outside this writer's scope.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["GGUF_MODEL_TYPES", "GgufUnsupported", "check_llama_gguf", "write_llama_gguf"]

#: model_type values this module writes GGUF for.
GGUF_MODEL_TYPES = frozenset({"llama"})

# Tensors in a checkpoint that are not weights (recomputed by every runtime).
_IGNORED_TENSORS = ("rotary_emb.inv_freq",)


class GgufUnsupported(Exception):
    """This model or tokenizer is outside what :func:`write_llama_gguf` writes; the message says why."""


def check_llama_gguf(config: dict[str, Any], tokenizer_json: Path) -> None:
    """Raise :class:`GgufUnsupported` unless a model with this ``config.json`` and tokenizer file can be written.

    Cheap (no weights read), so an export can refuse before the slow merge.
    """
    _llama_hparams(config)
    _bpe_pre_tokenizer(_load_json(tokenizer_json))


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GgufUnsupported(f"its {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise GgufUnsupported(f"its {path} is not a JSON object")
    return data


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise GgufUnsupported(f"it has no {path.name} (a fast tokenizer file), which the GGUF vocabulary is built from")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GgufUnsupported(f"{path} cannot be read ({exc})") from exc
    return data


def _rope(cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """``(rope_theta, scaling dict)`` from a transformers 4.x or 5.x config."""
    params: dict[str, Any] = cfg["rope_parameters"] if isinstance(cfg.get("rope_parameters"), dict) else {}
    scaling: dict[str, Any] = cfg["rope_scaling"] if isinstance(cfg.get("rope_scaling"), dict) else {}
    theta = cfg.get("rope_theta") or params.get("rope_theta") or scaling.get("rope_theta") or 10000.0
    merged = {**scaling, **params}
    return float(theta), merged


def _llama_hparams(cfg: dict[str, Any]) -> dict[str, Any]:
    model_type = cfg.get("model_type")
    if model_type not in GGUF_MODEL_TYPES:
        raise GgufUnsupported(f"its architecture is {model_type!r} ({', '.join(cfg.get('architectures') or [])}), and "
                           f"only {', '.join(sorted(GGUF_MODEL_TYPES))} is written directly")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise GgufUnsupported(f"its activation is {act!r}; llama.cpp's llama architecture uses silu")
    try:
        n_embd = int(cfg["hidden_size"])
        n_head = int(cfg["num_attention_heads"])
        n_head_kv = int(cfg.get("num_key_value_heads") or n_head)
        hp: dict[str, Any] = {
            "vocab_size": int(cfg["vocab_size"]),
            "context_length": int(cfg.get("max_position_embeddings") or 2048),
            "embedding_length": n_embd,
            "block_count": int(cfg["num_hidden_layers"]),
            "feed_forward_length": int(cfg["intermediate_size"]),
            "head_count": n_head,
            "head_count_kv": n_head_kv,
            "head_dim": int(cfg.get("head_dim") or n_embd // n_head),
            "rms_eps": float(cfg.get("rms_norm_eps", 1e-6)),
            "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise GgufUnsupported(f"its config.json lacks or mangles a LLaMA setting ({exc})") from None
    theta, scaling = _rope(cfg)
    rope_type = str(scaling.get("rope_type") or scaling.get("type") or "default")
    if rope_type not in ("default", "linear"):
        raise GgufUnsupported(f"its RoPE scaling {rope_type!r} is not written here (only default and linear)")
    hp["rope_theta"] = theta
    hp["rope_scaling_linear"] = float(scaling.get("factor", 1.0)) if rope_type == "linear" else None
    if hp["head_count"] % hp["head_count_kv"]:
        raise GgufUnsupported("its attention head count is not a multiple of its key/value head count")
    return hp


def _bpe_pre_tokenizer(tok: dict[str, Any]) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` name for a byte-level BPE tokenizer.json; GgufUnsupported otherwise."""
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise GgufUnsupported("its tokenizer is not a byte-level (GPT-2 style) BPE tokenizer (sentencepiece-style "
                           "vocabularies are not written here)")
    normalizer = tok.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        raise GgufUnsupported(f"its tokenizer has a {normalizer.get('type')!r} normalizer, which GGUF cannot express")
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"    # llama.cpp's name for the GPT-2 split (LLAMA_VOCAB_PRE_TYPE_GPT2)
    if (kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits")
            and steps[1].get("use_regex", True)):
        return "smollm"   # llama.cpp: single digits, then the GPT-2 split
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        known = _known_splits()
        for pre_name in ("llama-bpe", "qwen2", "gpt-4o", "tekken"):
            if pattern is not None and known.get(pre_name) == pattern:
                return pre_name
    raise GgufUnsupported(f"its tokenizer's pre-tokenizer ({' + '.join(str(k) for k in kinds) or 'none'}) is not one "
                       f"this exporter can name for llama.cpp")


def _known_splits() -> dict[str, str]:
    try:  # the regexes transformers uses to read these llama.cpp pre-tokenizer names back
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except Exception:
        return {}
    return dict(GGUF_PRE_TOKENIZER_SPLITS)


def _permute(weights: Any, n_head: int, n_head_kv: int | None) -> Any:
    """llama.cpp's ``LlamaModel.permute``: from HF's rotate-half layout to GGML's interleaved RoPE layout."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _merges(tok: dict[str, Any]) -> list[str]:
    merges = (tok.get("model") or {}).get("merges") or []
    out = []
    for m in merges:
        if isinstance(m, str):
            out.append(m)
        else:  # ["a", "b"] pairs (tokenizers >= 0.20); llama.cpp spells a space inside a part as U+0120
            out.append(" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in m))
    return out


def write_llama_gguf(model_dir: Path, dest: Path, *, gguf_type: str = "f16", name: str | None = None) -> dict[str, Any]:
    """Write the LLaMA-architecture Hugging Face model in ``model_dir`` as a GGUF file ``dest``.

    Returns ``{"chat_template", "eos_token", "notes", ...}`` about what was written. Raises
    :class:`GgufUnsupported` for architectures and tokenizers outside its scope.
    """
    import gguf
    import numpy as np
    from safetensors import safe_open
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    cfg = _read_config(model_dir)
    hp = _llama_hparams(cfg)
    tok_json = _load_json(model_dir / "tokenizer.json")
    pre = _bpe_pre_tokenizer(tok_json)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    notes: list[str] = []

    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]
    arch = gguf.MODEL_ARCH.LLAMA
    writer = gguf.GGUFWriter(str(dest), gguf.MODEL_ARCH_NAMES[arch])

    # -- general + hyperparameters (the keys llama.cpp's converter writes for LLaMA)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or model_dir.name)
    writer.add_vocab_size(hp["vocab_size"])
    writer.add_context_length(hp["context_length"])
    writer.add_embedding_length(hp["embedding_length"])
    writer.add_block_count(hp["block_count"])
    writer.add_feed_forward_length(hp["feed_forward_length"])
    writer.add_head_count(hp["head_count"])
    writer.add_head_count_kv(hp["head_count_kv"])
    writer.add_rope_dimension_count(hp["head_dim"])
    writer.add_rope_freq_base(hp["rope_theta"])
    writer.add_layer_norm_rms_eps(hp["rms_eps"])
    writer.add_key_length(hp["head_dim"])
    writer.add_value_length(hp["head_dim"])
    if hp["rope_scaling_linear"] is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(hp["rope_scaling_linear"])
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # -- tokenizer (gpt2-style BPE, as llama.cpp's get_vocab_base)
    n_vocab = hp["vocab_size"]
    vocab = tokenizer.get_vocab()
    if max(vocab.values(), default=-1) >= n_vocab:
        raise GgufUnsupported(f"its tokenizer has ids up to {max(vocab.values())}, beyond the model's vocab_size "
                           f"{n_vocab}")
    reverse = {i: t for t, i in vocab.items()}
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
        elif i in added:
            tokens.append(reverse[i])
            types.append(int(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED))
        else:
            tokens.append(reverse[i])
            types.append(int(gguf.TokenType.NORMAL))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = _merges(tok_json)
    if not merges:
        raise GgufUnsupported("its tokenizer.json has no BPE merges")
    writer.add_token_merges(merges)
    special = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
               "pad": tokenizer.pad_token_id}
    for kind, tid in special.items():
        if isinstance(tid, int) and 0 <= tid < n_vocab:
            getattr(writer, f"add_{kind}_token_id")(tid)
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    add_bos = bool(special["bos"] is not None and len(full) > len(plain) and full[0] == special["bos"])
    add_eos = bool(special["eos"] is not None and len(full) > len(plain) and full[-1] == special["eos"])
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = [{"name": k, "template": v} for k, v in template.items()]
    if template:
        writer.add_chat_template(template)
    else:
        notes.append("The tokenizer has no chat template, so the GGUF carries none; set one in the runtime.")

    # -- tensors
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise GgufUnsupported(f"{model_dir} has no *.safetensors weights")
    name_map = gguf.get_tensor_name_map(arch, hp["block_count"])
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[gguf_type]
    seen: set[str] = set()
    fallback: list[str] = []
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in sorted(f.keys(), key=_tensor_order):
                if key.endswith(_IGNORED_TENSORS):
                    continue
                if key == "lm_head.weight" and hp["tie_word_embeddings"]:
                    continue   # llama.cpp reuses token_embd when there is no output tensor
                gguf_name = name_map.get_name(key, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise GgufUnsupported(f"its checkpoint has a tensor {key!r} with no GGUF name for LLaMA")
                data = f.get_tensor(key).float().numpy()
                if key.endswith(("q_proj.weight", "q_proj.bias")):
                    data = _permute(data, hp["head_count"], hp["head_count"])
                elif key.endswith(("k_proj.weight", "k_proj.bias")):
                    data = _permute(data, hp["head_count"], hp["head_count_kv"])
                if gguf_name == "token_embd.weight" and data.shape[0] != n_vocab:
                    raise GgufUnsupported(f"its embedding has {data.shape[0]} rows but vocab_size is {n_vocab}")
                data = np.ascontiguousarray(data, dtype=np.float32)
                if data.ndim <= 1 or qtype == gguf.GGMLQuantizationType.F32:
                    writer.add_tensor(gguf_name, data)                        # norms stay F32, as llama.cpp does
                elif qtype == gguf.GGMLQuantizationType.F16:
                    writer.add_tensor(gguf_name, data.astype(np.float16))
                else:
                    try:
                        q = gguf.quants.quantize(data, qtype)
                    except (ValueError, gguf.quants.QuantError):      # row length not a multiple of 32
                        writer.add_tensor(gguf_name, data.astype(np.float16))
                        fallback.append(gguf_name)
                    else:
                        writer.add_tensor(gguf_name, q, raw_shape=q.shape, raw_dtype=qtype)
                seen.add(gguf_name)
    if "token_embd.weight" not in seen:
        raise GgufUnsupported("its checkpoint has no token embedding (model.embed_tokens.weight)")
    if not hp["tie_word_embeddings"] and "output.weight" not in seen:
        raise GgufUnsupported("its config says the output layer is untied, but lm_head.weight is missing")
    if fallback:
        notes.append(f"{len(fallback)} tensor(s) could not be stored as q8_0 (rows not a multiple of 32) and were "
                     f"stored as f16: {', '.join(fallback[:4])}{' ...' if len(fallback) > 4 else ''}.")

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"chat_template": template if isinstance(template, str) else None,
            "eos_token": tokenizer.eos_token, "pre": pre, "notes": notes}


def _tensor_order(key: str) -> tuple[int, int, str]:
    m = re.search(r"\.layers\.(\d+)\.", key)
    if m:
        return (1, int(m.group(1)), key)
    if "embed_tokens" in key:
        return (0, 0, key)
    return (2, 0, key)
