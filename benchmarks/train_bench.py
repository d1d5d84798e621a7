"""Our local trainer vs TRL's SFTTrainer: same data, model, LoRA, batches and steps, one run.

What is compared (by default on CPU with all its cores, in bf16 autocast on both sides where the CPU
has native bf16 units — TRL's SFTConfig defaults to bf16, our trainer picks it there — else float32;
scripts/gpu_bench.sh runs it on CUDA, bf16):

* Model: the embedded SmolLM2-135M-Instruct (``resolve_base_model("smollm2-135m-instruct")``,
  converted once into ``$FINETUNE_MODEL_CACHE``, default /tmp/ft-model-cache); TRL gets the
  resolved local directory as its ``model`` string. ``--model DIR`` takes any local model.
* LoRA r=16, alpha=32, dropout 0 (PEFT's default; ``--lora-dropout``), ``target_modules="all-linear"``
  on both sides; AdamW,
  lr 2e-4, cosine schedule with no warm-up (identical schedules: our warm-up of
  ``ceil(0.05*steps)`` steps and HF's differ in their first step), weight decay 0,
  grad-norm clip 1.0, seed 0.
* Data: the same examples in the same optimizer steps. Our Trainer picks each step's
  ``batch_size`` examples (seeded shuffle); TRL receives the training set in exactly that
  order with ``train_sampling_strategy="sequential"``, so every step of both sides sees
  the same examples (checked: per-step token and supervised-token counts must agree).
  Primary data: 400 deterministic synthetic chats of 30-600 tokens (short Q&A, medium
  explanations, long multi-turn conversations, most with a system prompt), the last 40
  held out. Secondary: the bundled contacts.train/validation.jsonl (short, uniform).
* Supervised tokens: assistant-only loss on both sides. Ours: ChatRenderer (assistant
  content through ``<|im_end|>``). TRL: ``assistant_only_loss=True`` with SmolLM2's ChatML
  template copied and ``{% generation %}...{% endgeneration %}`` put around the assistant
  content + ``<|im_end|>`` (the rendered text is checked to be identical to the original
  template's, and TRL's tokenized input_ids/labels are checked to equal ours, example by example).
* Ours: the Trainer constructed in-process as ``train.py``'s ``_build`` does (on CPU:
  per-sequence attention over packed rows, ``finetune_segments``; micro-batches of
  ``micro_batch_tokens``, default max(1024, max_length) on CPU; chunked loss on supervised
  positions only). ``run_step()`` is called ``--steps`` times. TRL's model gets the same
  attention implementation (for one unpacked sequence it is plain sdpa).
* TRL: no packing (its CPU packing lets packed sequences attend to each other),
  ``per_device_train_batch_size`` (``--trl-micro-batch``, default 1: no padding, TRL's
  fastest split on CPU here; 8 pads ~2.7x) x ``gradient_accumulation_steps`` =
  ``--batch-size``, run with gradient checkpointing off (its fastest: the headline) and
  on (SFTConfig's default). Ours runs with gradient checkpointing off (our default) and on
  (compared with TRL's gc=on: the lean configurations side by side).

Measured: only the optimizer steps. Ours: wall time of each ``run_step()``. TRL: time
between consecutive ``on_step_end`` callbacks (so it includes fetching and collating the
next batch, as our step includes building its micro-batches); the first ``--warmup``
steps of each side are excluded. Tokens/s counts every non-padding input token;
supervised tokens/s counts scored positions; tok/CPU-s divides by the child's CPU time
instead of wall time (steadier on a shared machine). The val-loss target allows the larger
of 0.0005 and the step-1 loss gap (identical weights on both sides at step 1, so that gap is
pure arithmetic noise between the implementations, ~0.005 in bf16, ~1e-5 in float32). Peak RSS: ``ru_maxrss`` of a fresh
child process per side and run at the end of training (model load included on both sides,
validation not). Validation loss: after training, each child computes the token-mean NLL
on the same held-out split with the same code (``_bench_common.validation_loss``: our
chunked loss on the backbone's hidden states, one sequence at a time, eval mode), first
in the training weights' dtype, then after converting the trained model to float32 — the
quality criterion, because in bf16 a short run's small adapter updates partly round away
at evaluation.

Defaults are sized for a 2-core machine (~100-350 tokens/s): 5 steps of 8 examples, one
run per configuration, about 7 minutes. On faster machines use ``--steps 20 --runs 3``.

    python benchmarks/train_bench.py                 # default
    python benchmarks/train_bench.py --quick         # a smoke run (~4 min)
    python benchmarks/train_bench.py --steps 20 --runs 3 --extra-trl-micro-batch 8

Child mode (used by the parent): ``--side ours|trl --dataset DIR --out FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import _bench_common as common  # noqa: E402  (found through the sys.path entry above)

MODEL = "smollm2-135m-instruct"
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}  # PEFT's default dropout
LR = 2e-4
SEED = 0
TARGET_SPEEDUP = 2.0


def _resolve(name: str = MODEL) -> Any:
    """An alias of an embedded model (converted once into $FINETUNE_MODEL_CACHE) or a model directory."""
    os.environ.setdefault("FINETUNE_MODEL_CACHE", "/tmp/ft-model-cache")
    from finetune_sdk.providers.local import models

    return models.resolve_base_model(name, progress=lambda m: print(f"  {m}", flush=True))


def _attention(args: argparse.Namespace, device: Any) -> tuple[str, str]:
    """(attn_implementation, mask kind) exactly as our JobRunner picks them; TRL gets the same implementation."""
    from types import SimpleNamespace

    from finetune_sdk.providers.local.training.train import JobRunner

    return JobRunner._attention(SimpleNamespace(attn_implementation=args.attn), device)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gpu_peak(device: Any) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _flops_per_token(model: Any) -> float:
    """4N for LoRA, N = parameters outside the embeddings and the adapters (as our Trainer counts for MFU)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return 4.0 * sum(p.numel() for name, p in base.named_parameters()
                     if "embed_tokens" not in name and "lora_" not in name)


def _load_split(data_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return common.read_jsonl(data_dir / "train.jsonl"), common.read_jsonl(data_dir / "validation.jsonl")


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


# =========================================================================== child: ours

def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from finetune_sdk.providers.local import models
    from finetune_sdk.providers.local.jobs.hparams import TrainConfig
    from finetune_sdk.providers.local.training.train import JobRunner
    from finetune_sdk.providers.local.training.trainer import Dist, Trainer

    _threads(args.threads)
    settings = {"batch_size": args.batch_size, "max_steps": args.steps, "max_length": args.max_length, "n_epochs": 1000,
                    "lora": True, "lora_rank": LORA["r"], "lora_alpha": LORA["lora_alpha"],
                    "lora_dropout": LORA["lora_dropout"], "target_modules": LORA["target_modules"],
                    "warmup_ratio": 0.0, "weight_decay": 0.0, "max_grad_norm": 1.0,
                    "gradient_checkpointing": args.gc, "seed": SEED, "dtype": args.dtype, "device": args.device,
                    "attn_implementation": args.attn}
    settings.update(json.loads(args.ours_config) if args.ours_config else {})  # --ours-config overrides anything
    cfg = TrainConfig(**settings)
    assert abs(cfg.learning_rate - LR) < 1e-12
    device = torch.device(args.device)
    torch.manual_seed(cfg.seed)  # as JobRunner._build does
    resolved = _resolve(args.model)
    tokenizer = models.load_tokenizer(resolved)
    attn, mask = JobRunner._attention(cfg, device)
    dtype = JobRunner._dtype(cfg, device)
    model = JobRunner._load_model(None, models, resolved, cfg, device, dtype, attn)  # type: ignore[arg-type]
    train_rows, valid_rows = _load_split(Path(args.dataset))
    train, _ = common.tokenize_ours(tokenizer, train_rows, cfg.max_length)
    valid, _ = common.tokenize_ours(tokenizer, valid_rows, cfg.max_length)
    ckpt = Path(tempfile.mkdtemp(prefix="train-bench-ckpt-"))
    trainer = Trainer(cfg, model, train, valid, device=device, dist=Dist(), mask=mask, emit=lambda *_: None,
                      checkpoint_dir=ckpt, should_stop=lambda: None, save_adapter=lambda _p: None)
    rss_before = common.current_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps = []
    for _ in range(args.steps):
        _sync(device)
        t0, c0 = time.perf_counter(), common.cpu_seconds()
        out = trainer.run_step()
        _sync(device)
        dt, dc = time.perf_counter() - t0, common.cpu_seconds() - c0
        steps.append({"seconds": dt, "cpu_seconds": dc, "tokens": out["tokens"], "supervised": out["supervised_tokens"],
                      "loss": out["train_loss"], "padded": out["tokens"]})
    result: dict[str, Any] = {"steps": steps, "rss_before_train_mib": rss_before, "attn": attn, "mask": mask,
                              "micro_batch_tokens": trainer.capacity, "threads": torch.get_num_threads(),
                              "gpu_peak_mib": _gpu_peak(device), "flops_per_token": _flops_per_token(trainer.model)}
    result["train_peak_rss_mib"] = common.peak_rss_mib()  # before validation (the float32 copy) adds its own
    if args.val:
        result.update(common.validation_loss(trainer.model, valid))
        result["val_loss_fp32"] = common.validation_loss(trainer.model, valid, float32=True)["val_loss"]
    return result


# =========================================================================== child: TRL

def child_trl(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    _threads(args.threads)
    device = torch.device(args.device)
    resolved = _resolve(args.model)
    path = str(resolved.path)
    attn, _ = _attention(args, device)
    train_rows, valid_rows = _load_split(Path(args.dataset))

    # Our tokenization: defines the step order (the same examples per step) and the reference labels.
    from finetune_sdk.providers.local import models

    our_tok = models.load_tokenizer(resolved)
    ours_train, kept = common.tokenize_ours(our_tok, train_rows, args.max_length)
    ours_valid, _ = common.tokenize_ours(our_tok, valid_rows, args.max_length)
    order = [i for step in common.step_order(len(ours_train), args.batch_size, args.steps, SEED) for i in step]
    rows = [{"messages": train_rows[kept[i]]["messages"]} for i in order]
    expected = [ours_train[i] for i in order]

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = common.SMOLLM2_TEMPLATE_WITH_GENERATION  # checked below against the model's template
    template_diffs = common.check_template_equivalent(our_tok, rows)

    mb = args.trl_micro_batch
    if args.batch_size % mb:
        raise SystemExit(f"--trl-micro-batch {mb} must divide --batch-size {args.batch_size}")
    out_dir = tempfile.mkdtemp(prefix="train-bench-trl-")
    config = SFTConfig(
        output_dir=out_dir, max_steps=args.steps, per_device_train_batch_size=mb,
        gradient_accumulation_steps=args.batch_size // mb, learning_rate=LR, lr_scheduler_type="cosine",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", seed=SEED, data_seed=SEED,
        gradient_checkpointing=args.gc, bf16=args.dtype == "bfloat16", fp16=False, use_cpu=device.type == "cpu",
        max_length=args.max_length, packing=False, padding_free=args.trl_padding_free, assistant_only_loss=True,
        train_sampling_strategy="sequential", dataloader_num_workers=0,
        report_to="none", save_strategy="no", eval_strategy="no", logging_steps=1, disable_tqdm=True,
        model_init_kwargs={"dtype": args.dtype, "attn_implementation": attn},
    )

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.cpu_ends: list[float] = []
            self.begins: list[float] = []
            self.begin_train = 0.0
            self.cpu_begin_train = 0.0
            self.losses: list[float] = []

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.begin_train, self.cpu_begin_train = time.perf_counter(), common.cpu_seconds()

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.begins.append(time.perf_counter())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            _sync(device)
            self.ends.append(time.perf_counter())
            self.cpu_ends.append(common.cpu_seconds())
            counts.append(dict(current))
            current.update(tokens=0, supervised=0, padded=0)

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict[str, Any] | None = None, **k: Any) -> None:
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    counts: list[dict[str, int]] = []
    current = {"tokens": 0, "supervised": 0, "padded": 0}

    class CountingSFT(SFTTrainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], *a: Any, **k: Any) -> Any:
            if model.training:
                mask = inputs.get("attention_mask")  # absent when padding-free: no padding then
                current["tokens"] += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
                current["padded"] += int(inputs["input_ids"].numel())
                current["supervised"] += int((inputs["labels"][:, 1:] != -100).sum())
            return super().compute_loss(model, inputs, *a, **k)

    timer = Timer()
    trainer = CountingSFT(model=path, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA), callbacks=[timer])
    # The supervised tokens must be ours, example by example.
    ds = trainer.train_dataset
    label_diffs = 0
    if len(ds) != len(expected):
        label_diffs = abs(len(ds) - len(expected)) or -1
    else:
        for row, ref in zip(ds, expected):
            label_diffs += row["input_ids"] != ref.input_ids or row["labels"] != ref.labels
    rss_before = common.current_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train()
    ends = timer.ends
    starts = [timer.begin_train] + ends[:-1]
    cpu_starts = [timer.cpu_begin_train] + timer.cpu_ends[:-1]
    steps = []
    for i, (a, b) in enumerate(zip(starts, ends)):
        c = counts[i]
        steps.append({"seconds": b - a, "cpu_seconds": timer.cpu_ends[i] - cpu_starts[i],
                      "compute_seconds": b - timer.begins[i], "tokens": c["tokens"],
                      "supervised": c["supervised"], "padded": c["padded"],
                      "loss": timer.losses[i] if i < len(timer.losses) else None})
    result: dict[str, Any] = {"steps": steps, "rss_before_train_mib": rss_before, "template_diffs": template_diffs,
                              "label_diffs": label_diffs, "threads": torch.get_num_threads(),
                              "attn": trainer.model.get_base_model().config._attn_implementation,
                              "gradient_checkpointing": args.gc, "micro_batch": mb, "gpu_peak_mib": _gpu_peak(device),
                              "padding_free": args.trl_padding_free, "flops_per_token": _flops_per_token(trainer.model)}
    result["train_peak_rss_mib"] = common.peak_rss_mib()  # before validation (the float32 copy) adds its own
    if args.val:
        result.update(common.validation_loss(trainer.model, ours_valid))
        result["val_loss_fp32"] = common.validation_loss(trainer.model, ours_valid, float32=True)["val_loss"]
    return result


def child_main(args: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = child_ours(args) if args.side == "ours" else child_trl(args)
    result["peak_rss_mib"] = common.peak_rss_mib()
    Path(args.out).write_text(json.dumps(result))
    return 0


# =========================================================================== parent

def prepare_data(root: Path, tokenizer: Any, args: argparse.Namespace) -> dict[str, Path]:
    """synthetic: N varied chats (default 400), the last 40 held out. contacts: the bundled train/validation files."""
    out = {}
    quick = args.quick
    syn = common.synthetic_chat(tokenizer, n=args.synthetic_examples, seed=1234, hi=args.synthetic_max_tokens)
    d = root / "synthetic"
    d.mkdir()
    common.write_jsonl(d / "train.jsonl", syn[:-40])
    common.write_jsonl(d / "validation.jsonl", syn[-40:] if not quick else syn[-40:-28])
    out["synthetic"] = d
    if args.no_contacts:
        return out
    src = ROOT / "finetune_sdk" / "datasets"
    d = root / "contacts"
    d.mkdir()
    common.write_jsonl(d / "train.jsonl", common.read_jsonl(src / "contacts.train.jsonl"))
    valid = common.read_jsonl(src / "contacts.validation.jsonl")
    common.write_jsonl(d / "validation.jsonl", valid if not quick else valid[:12])
    out["contacts"] = d
    return out


def run_child(args: argparse.Namespace, side: str, data: Path, gc: bool, mb: int, val: bool, work: Path,
              tag: str) -> dict[str, Any]:
    out = work / f"{tag}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--dataset", str(data), "--out", str(out),
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
           "--trl-micro-batch", str(mb), "--threads", str(args.threads), "--device", args.device, "--dtype", args.dtype,
           "--attn", args.attn, "--model", args.model, "--lora-dropout", str(args.lora_dropout)]
    if args.trl_padding_free:
        cmd.append("--trl-padding-free")
    if gc:
        cmd.append("--gc")
    if val:
        cmd.append("--val")
    if args.ours_config:
        cmd += ["--ours-config", args.ours_config]
    started = time.perf_counter()
    with open(work / f"{tag}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its peak RSS alone
    code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if code != 0 or not out.exists():
        tail = (work / f"{tag}.log").read_text()[-4000:]
        raise SystemExit(f"child {tag} failed (exit {code}):\n{tail}")
    result = json.loads(out.read_text())
    result["child_maxrss_mib"] = usage.ru_maxrss / 1024.0
    result["wall_s"] = wall
    result["loadavg_after"] = common.loadavg()
    return result


def summarise(result: dict[str, Any], warmup: int) -> dict[str, Any]:
    steps = result["steps"][warmup:] or result["steps"]
    secs = sum(s["seconds"] for s in steps)
    cpu = sum(s["cpu_seconds"] for s in steps)
    tokens = sum(s["tokens"] for s in steps)
    sup = sum(s["supervised"] for s in steps)
    padded = sum(s["padded"] for s in steps)
    return {"tps": tokens / secs, "sup_tps": sup / secs, "tpcpu": tokens / cpu, "gpu": result.get("gpu_peak_mib"),
            "fpt": result.get("flops_per_token"),
            "step_s": statistics.median(s["seconds"] for s in steps), "tokens": tokens, "padded": padded,
            "rss": result.get("train_peak_rss_mib", result["child_maxrss_mib"]), "val": result.get("val_loss"),
            "val32": result.get("val_loss_fp32"), "first_loss": result["steps"][0]["loss"],
            "step_seconds": [s["seconds"] for s in steps]}


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def _auto_threads() -> int:
    """torch threads for the children: torch's default, all the machine's cores, as a user's job gets.

    Both sides always get the same number. On a machine other jobs are loading, pass
    ``--threads 1``: with more runnable threads than cores, OpenMP's barrier-synchronised
    parallel regions stall whenever one of their threads is descheduled (on a 2-core box
    under load, 2 threads ran a step 2-4x slower than 1). The load average is printed at
    the start and after every child so such runs can be spotted.
    """
    import torch

    return torch.get_num_threads()


def parent_main(args: argparse.Namespace) -> int:
    import platform

    import torch
    import transformers
    import trl

    if args.quick:
        args.steps, args.runs, args.runs_gc = min(args.steps, 3), 1, 1
    load_start = common.loadavg()
    if args.dtype is None:
        from finetune_sdk.providers.local.training.trainer import cpu_has_fast_bf16

        # What each side does by default here: TRL's SFTConfig defaults to bf16; ours autocasts to bf16 on
        # CUDA and on CPUs with native bf16 units. float32 on other CPUs (bf16 is emulated there).
        args.dtype = "bfloat16" if args.device != "cpu" or cpu_has_fast_bf16() else "float32"
    if args.threads is None:
        args.threads = _auto_threads() if args.device == "cpu" else 0
    gpu = args.device.startswith("cuda")
    if args.batch_size % args.trl_micro_batch:
        raise SystemExit(f"--trl-micro-batch {args.trl_micro_batch} must divide --batch-size {args.batch_size}")
    resolved = _resolve(args.model)
    attn, mask = _attention(args, torch.device(args.device))
    print(f"train_bench: ours vs TRL SFTTrainer — {resolved.name}, LoRA r={LORA['r']} alpha={LORA['lora_alpha']} "
          f"dropout={LORA['lora_dropout']} all-linear, {args.dtype} on {args.device}, {attn} attention on both sides "
          f"(ours: mask {mask})")
    where = torch.cuda.get_device_name(0) if gpu else f"{os.cpu_count()} CPUs; torch threads per child: {args.threads}"
    print(f"  torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
          f"python {platform.python_version()}, {where}")
    print(f"  load average at start: {load_start} (1/5/15 min; {os.cpu_count()} CPUs — above that, other jobs "
          f"compete for the cores and wall-clock numbers are noisy; tok/CPU-s is the steadier measure)")
    print(f"  {args.steps} optimizer steps per run (first {args.warmup} = warm-up, not timed), {args.batch_size} "
          f"examples/step, max_length {args.max_length}, {args.runs} run(s) per synthetic configuration")
    print(f"  TRL: per_device_train_batch_size {args.trl_micro_batch} x gradient_accumulation_steps "
          f"{args.batch_size // args.trl_micro_batch}, no packing, "
          + ("padding-free (one flattened row per micro-batch)" if args.trl_padding_free
             else "padding to the longest in each micro-batch")
          + (f"; extra row with micro-batch {args.extra_trl_micro_batch}" if args.extra_trl_micro_batch else ""))
    from transformers import AutoTokenizer

    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    tok = AutoTokenizer.from_pretrained(str(resolved.path))
    data = prepare_data(work, tok, args)
    for name, d in data.items():
        rows = common.read_jsonl(d / "train.jsonl")
        lens = sorted(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                      for r in rows)
        print(f"  data {name}: {len(rows)} train / {len(common.read_jsonl(d / 'validation.jsonl'))} held-out "
              f"examples, tokens min/median/max {lens[0]}/{lens[len(lens) // 2]}/{lens[-1]}")

    mb = args.trl_micro_batch
    # key -> (side, gc, micro-batch, display name)
    kinds = {"ours": ("ours", False, mb, "ours (packed, gc=off)"),
             "ours_gc": ("ours", True, mb, "ours (packed, gc=on)"),
             "trl_nogc": ("trl", False, mb, f"TRL gc=off mb={mb}"),
             "trl_gc": ("trl", True, mb, f"TRL gc=on mb={mb}")}
    if args.extra_trl_micro_batch:
        kinds["trl_nogc_x"] = ("trl", False, args.extra_trl_micro_batch, f"TRL gc=off mb={args.extra_trl_micro_batch}")
    plan: list[tuple[str, str, int]] = [("synthetic", "ours", args.runs), ("synthetic", "trl_nogc", args.runs),
                                        ("synthetic", "trl_gc", args.runs_gc), ("synthetic", "ours_gc", args.runs_gc)]
    if args.extra_trl_micro_batch:
        plan.append(("synthetic", "trl_nogc_x", 1))
    if "contacts" in data and not args.quick:
        plan += [("contacts", "ours", 1), ("contacts", "trl_nogc", 1), ("contacts", "trl_gc", 1),
                 ("contacts", "ours_gc", 1)]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    started = time.perf_counter()
    print()
    for r in range(max(p[2] for p in plan)):  # interleaved, so background load hits every configuration alike
        for ds, key, runs in plan:
            if r >= runs:
                continue
            side, gc, kmb, _ = kinds[key]
            tag = f"{ds}-{key}-{r}"
            t0 = time.perf_counter()
            res = run_child(args, side, data[ds], gc, kmb, r == 0 or args.val_every_run, work, tag)
            s = summarise(res, args.warmup)
            results.setdefault((ds, key), []).append({**res, "summary": s})
            extra = f", template/label diffs {res['template_diffs']}/{res['label_diffs']}" if side == "trl" else ""
            print(f"  [{time.perf_counter() - started:5.0f}s] {tag}: {s['tps']:.1f} tok/s, {s['tpcpu']:.1f} tok/CPU-s, "
                  f"median step {s['step_s']:.2f}s, peak RSS {s['rss']:.0f} MiB"
                  + (f", peak GPU {s['gpu']:.0f} MiB" if s["gpu"] is not None else "")
                  + (f", val {s['val']:.4f}" if s["val"] is not None else "")
                  + f"; child wall {time.perf_counter() - t0:.0f}s, load {res['loadavg_after']}{extra}", flush=True)

    # ------------------------------------------------------------------ equivalence checks
    print()
    problems = []
    for ds in data:
        if (ds, "ours") not in results:
            continue
        ref = results[(ds, "ours")][0]["steps"]
        for key in kinds:
            if key.startswith("ours"):
                continue
            for res in results.get((ds, key), []):
                if [s["tokens"] for s in res["steps"]] != [s["tokens"] for s in ref]:
                    problems.append(f"{ds}/{key}: per-step token counts differ from ours")
                if [s["supervised"] for s in res["steps"]] != [s["supervised"] for s in ref]:
                    problems.append(f"{ds}/{key}: per-step supervised-token counts differ from ours")
                if res["template_diffs"] or res["label_diffs"]:
                    problems.append(f"{ds}/{key}: {res['template_diffs']} template / {res['label_diffs']} label diffs")
        first = " / ".join(f"{kinds[k][3]} {results[(ds, k)][0]['steps'][0]['loss']:.5f}"
                           for k in kinds if (ds, k) in results)
        print(f"  {ds}: step-1 training loss (LoRA B=0: the base model on the same batch): {first}")
    print("  same examples, tokens and supervised tokens in every step on both sides: "
          + ("yes" if not problems else "NO — " + "; ".join(problems)))
    print("  supervised tokens, TRL side: assistant_only_loss=True with SmolLM2's ChatML template copied and "
          "{% generation %}...{% endgeneration %} put around assistant content + <|im_end|>; TRL's input_ids and "
          "labels equal ours example by example (template/label diffs above).")

    # ------------------------------------------------------------------ table
    print()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    n_params = next(iter(results.values()))[0]["flops_per_token"] / 4
    hdr = (f"{'dataset':<10} {'trainer':<22} {'runs':>4} {'tok/s':>7} {'sup tok/s':>9} {'tok/CPU-s':>9} "
           f"{'step s':>7} {'pad %':>5} {'peak RSS MiB':>12} {'val loss':>8} {'val fp32':>8}"
           + (f" {'GPU MiB':>8}" if gpu else "") + (f" {'MFU %':>6}" if peak else ""))
    print(hdr)
    print("-" * len(hdr))
    agg: dict[tuple[str, str], dict[str, Any]] = {}
    for (ds, key), runs in results.items():
        ss = [r["summary"] for r in runs]
        vals = [s["val"] for s in ss if s["val"] is not None]
        vals32 = [s["val32"] for s in ss if s.get("val32") is not None]
        a = {"tps": _med([s["tps"] for s in ss]), "sup_tps": _med([s["sup_tps"] for s in ss]),
             "tpcpu": _med([s["tpcpu"] for s in ss]), "step_s": _med([s["step_s"] for s in ss]),
             "rss": _med([s["rss"] for s in ss]), "val": vals[0] if vals else float("nan"),
             "val32": vals32[0] if vals32 else float("nan"),
             "pad": 100.0 * (1 - ss[0]["tokens"] / ss[0]["padded"]) if ss[0]["padded"] else 0.0,
             "steps": ss[0]["step_seconds"], "gpu": _med([s["gpu"] or 0.0 for s in ss]),
             "mfu": 100.0 * ss[0]["fpt"] * _med([s["tps"] for s in ss]) / peak if peak and ss[0]["fpt"] else None}
        agg[(ds, key)] = a
        print(f"{ds:<10} {kinds[key][3]:<22} {len(runs):>4} {a['tps']:>7.1f} {a['sup_tps']:>9.1f} {a['tpcpu']:>9.1f} "
              f"{a['step_s']:>7.2f} {a['pad']:>5.1f} {a['rss']:>12.0f} {a['val']:>8.4f} {a['val32']:>8.4f}"
              + (f" {a['gpu']:>8.0f}" if gpu else "") + (f" {a['mfu']:>6.2f}" if a["mfu"] is not None else ""))
    print("tok/s: non-padding input tokens per second of step time (wall); sup tok/s: scored positions; "
          "tok/CPU-s: per CPU-second of the child (all threads); pad %: padding share of TRL's input positions; "
          "peak RSS: ru_maxrss of the child at the end of training (model load included, validation not); val loss: "
          "token-mean NLL on the held-out split, first run, same code for both, in the training weights' dtype; "
          "val fp32: the same after converting the trained model to float32 (the quality criterion: bf16 "
          "evaluation rounds away part of a short run's small adapter updates); medians over runs."
          + (" GPU MiB: torch.cuda.max_memory_allocated during training." if gpu else "")
          + (f" MFU: 4N FLOPs/token x tok/s / {args.peak_tflops:g} TFLOPS, N = {n_params / 1e9:.3f} B "
             f"non-embedding, non-LoRA parameters." if peak else ""))

    print()
    for ds in data:
        if (ds, "ours") not in agg:
            continue
        # Numerical noise floor: at step 1 both sides hold the same weights (LoRA B = 0), so their step-1
        # losses differ only by arithmetic (bf16 rounding, summation order). A val-loss gap within it is a tie.
        first = {k: results[(ds, k)][0]["steps"][0]["loss"] for k in kinds if (ds, k) in results}
        noise = max((abs(first["ours"] - v) for k, v in first.items() if not k.startswith("ours")), default=0.0)
        allowance = max(5e-4, noise)
        pairs = [("ours", k) for k in kinds if not k.startswith("ours")] + [("ours_gc", "trl_gc")]
        for mine, key in pairs:
            if (ds, key) not in agg or (ds, mine) not in agg:
                continue
            o, t = agg[(ds, mine)], agg[(ds, key)]
            speed, cpu_speed = o["tps"] / t["tps"], o["tpcpu"] / t["tpcpu"]
            crit = "val32" if o["val32"] == o["val32"] and t["val32"] == t["val32"] else "val"  # NaN: not measured
            dval = o[crit] - t[crit]
            mem_name, mem = ("peak GPU memory", o["gpu"] / t["gpu"]) if gpu and t["gpu"] else \
                ("peak RSS", o["rss"] / t["rss"])
            paired = sorted(b / a for a, b in zip(o["steps"], t["steps"]))  # same batch on both sides
            tag = "HEADLINE " if ds == "synthetic" and key == "trl_nogc" else ""
            print(f"  {tag}{ds}: {kinds[mine][3]} / {kinds[key][3]}: tokens/s x{speed:.2f} "
                  f"[target >= {TARGET_SPEEDUP:.1f}x: {'PASS' if speed >= TARGET_SPEEDUP else 'FAIL'}] "
                  f"(per CPU-s x{cpu_speed:.2f}; same-batch step-time ratios median x{_med(paired):.2f}, "
                  f"range x{paired[0]:.2f}..x{paired[-1]:.2f}); {mem_name} x{mem:.2f} "
                  f"[target <= 1.00: {'PASS' if mem <= 1.0 else 'FAIL'}]; val loss{' fp32' if crit == 'val32' else ''} "
                  f"{o[crit]:.4f} vs {t[crit]:.4f} ({dval:+.4f}) [target ours <= TRL + {allowance:.4f}: "
                  f"{'PASS' if dval <= allowance else 'FAIL'}] (in the training dtype: {o['val']:.4f} vs "
                  f"{t['val']:.4f})")
    print(f"\n  val-loss allowance: the larger of 0.0005 and the step-1 loss gap on identical weights (arithmetic "
          f"noise between the two implementations); load average at end: {common.loadavg()}; "
          f"total wall {time.perf_counter() - started:.0f}s; logs and raw JSON in {work}")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{k[0]}/{k[1]}": v for k, v in results.items()}, indent=1,
                                              default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per run, the first one untimed (default 5)")
    p.add_argument("--runs", type=int, default=1,
                   help="runs of ours and TRL gc=off on the synthetic data; medians over them (default 1; use 3 on "
                        "a machine faster than ~100 tokens/s)")
    p.add_argument("--runs-gc", type=int, default=1, help="runs of TRL with gradient checkpointing (default 1)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per optimizer step (default 8)")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--trl-micro-batch", type=int, default=1,
                   help="TRL per_device_train_batch_size; gradient_accumulation_steps = batch-size / this. Default 1: "
                        "no padding, TRL's fastest split on CPU for varied lengths "
                        "(8 pads ~2.7x on the synthetic data)")
    p.add_argument("--extra-trl-micro-batch", type=int, default=None,
                   help="also run TRL gc=off with this micro-batch on the synthetic data (e.g. 8 = TRL's default "
                        "per_device_train_batch_size), one run")
    p.add_argument("--warmup", type=int, default=1, help="initial steps excluded from timing (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in every child (default: CPUs minus the rounded load average, at least 1)")
    p.add_argument("--ours-config", default=None,
                   help='extra TrainConfig fields for our side as JSON, e.g. \'{"micro_batch_tokens": 1024}\'')
    p.add_argument("--lora-dropout", type=float, default=LORA["lora_dropout"],
                   help=f"LoRA dropout on both sides (default {LORA['lora_dropout']})")
    p.add_argument("--quick", action="store_true", help="3 steps, 1 run, synthetic only, 12 held-out examples")
    p.add_argument("--no-contacts", action="store_true", help="skip the secondary contacts dataset")
    p.add_argument("--val-every-run", action="store_true", help="validation loss after every run, not just the first")
    p.add_argument("--json", default=None, help="also write the raw results here")
    p.add_argument("--model", default=MODEL, help=f"base model: an alias or a local model directory (default {MODEL})")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                   help="float32 on CPU (default there), bfloat16 on CUDA (default there); both sides")
    p.add_argument("--attn", default="auto",
                   help="attention for both sides: auto (ours' rule: flash_attention_2 on CUDA when flash-attn "
                        "imports, else sdpa), sdpa, eager, flash_attention_2")
    p.add_argument("--trl-padding-free", action="store_true",
                   help="TRL padding_free=True (needs FlashAttention; the GPU script sets it when flash-attn imports)")
    p.add_argument("--synthetic-examples", type=int, default=400, help="synthetic examples incl. 40 held out")
    p.add_argument("--synthetic-max-tokens", type=int, default=600, help="longest synthetic example (default 600)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense peak of the device, for an MFU column (989.4 for H100/H200 bf16)")
    # child mode
    p.add_argument("--side", choices=["ours", "trl"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--dataset", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--gc", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--val", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    LORA["lora_dropout"] = args.lora_dropout  # both sides read LORA
    if args.side:
        return child_main(args)
    return parent_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
