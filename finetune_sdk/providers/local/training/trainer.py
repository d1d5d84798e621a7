"""The training loop of the local backend (ours: torch + transformers + peft).

Each optimizer step takes ``batch_size`` examples in a seeded per-epoch order, packs them
into padding-free micro-batches and accumulates gradients; the loss is the token mean
(SFT) or pair mean (DPO) over the whole step, so packing, micro-batching and the number
of processes never change the result. Under ``torchrun`` / ``accelerate launch`` each rank
takes a share of the micro-batches and gradients are summed across ranks before the
update (an exact data-parallel step); only rank 0 writes.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..jobs.hparams import TrainConfig
from .batching import MicroBatch, PreferencePair, Tokens, build_micro_batch, pack
from .loss import dpo_loss, sequence_logprobs, sft_loss_sums

__all__ = ["Dist", "Trainer", "StopTraining", "NonFiniteLoss", "peak_flops"]


class StopTraining(Exception):
    """Raised between steps when the job is asked to stop (``reason``: cancel or pause)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NonFiniteLoss(Exception):
    pass


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


_PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "H800": 989.4e12, "A100": 312e12, "A800": 312e12,
              "L40S": 362e12, "L4": 121e12, "A10G": 125e12, "A10": 125e12, "RTX 4090": 165e12}


def peak_flops(device: torch.device) -> float | None:
    """Dense BF16 peak of a known GPU; None where unknown (CPUs included)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in _PEAK_BF16.items():
        if key in name:
            return value
    return None


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX tiles or AVX512-BF16).

    There, bf16 autocast trains LoRA ~1.5x faster than float32 on one core (measured on a
    Sapphire Rapids core: 125 -> 200 tokens/s for SmolLM2-135M); elsewhere bf16 is emulated
    and slower, so float32 stays the default.
    """
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(torch.cpu, name)()) for name in probes if hasattr(torch.cpu, name))
    except Exception:
        return False


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The dtype the forward pass autocasts to, or None for none: the single precision policy.

    ``dtype="auto"``: bf16 on CUDA, and on CPUs with native bf16 matrix units; float32 elsewhere.
    ``dtype="bfloat16"`` asks for it anywhere; ``"float32"`` turns it off. Parameters the
    optimizer updates stay in float32 (LoRA adapters; full fine-tuning on CPU).
    """
    if cfg.dtype == "float32" or cfg.dtype == "float16" and device.type != "cuda":
        return None
    if cfg.dtype == "float16":
        return torch.float16
    if cfg.dtype == "bfloat16" or device.type == "cuda" or cpu_has_fast_bf16():
        return torch.bfloat16
    return None


@dataclass
class StepStats:
    loss_sum: float = 0.0
    correct: float = 0.0
    targets: float = 0.0
    tokens: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class Trainer:
    def __init__(self, cfg: TrainConfig, model: Any, train: list[Tokens] | list[PreferencePair],
                 valid: list[Tokens] | list[PreferencePair], *, device: torch.device, dist: Dist, mask: str,
                 emit: Callable[[int, dict[str, Any], str], None], checkpoint_dir: Path,
                 should_stop: Callable[[], str | None], save_adapter: Callable[[Path], None]) -> None:
        self.cfg = cfg
        self.model = model
        self.train = train
        self.valid = valid
        self.device = device
        self.dist = dist
        self.mask = mask
        self.emit = emit
        self.checkpoint_dir = checkpoint_dir
        self.should_stop = should_stop
        self.save_adapter = save_adapter
        self.dpo = cfg.method == "dpo"
        # CPU defaults measured with benchmarks/train_bench.py (SmolLM2-135M, bf16): 1,024-token micro-batches
        # and 128-position loss chunks were within 2 % of 4,096 / 1,024 and peaked ~280 MB lower.
        self.capacity = cfg.micro_batch_tokens or (16384 if device.type == "cuda" else 1024)
        self.loss_chunk = cfg.loss_chunk or (1024 if device.type == "cuda" else 128)
        self.capacity = max(self.capacity, cfg.max_length * (2 if self.dpo else 1))
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.backbone = getattr(base, base.base_model_prefix)
        self.head = base.get_output_embeddings()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                           fused=device.type == "cuda")
        n = len(train)
        self.steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        self.total_steps = self.steps_per_epoch * cfg.n_epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        warmup = math.ceil(cfg.warmup_ratio * self.total_steps)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, self.total_steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.eval_every = cfg.eval_every or max(1, self.total_steps // 10)
        self.checkpoint_every = cfg.checkpoint_every or self.steps_per_epoch
        n_params = sum(p.numel() for name, p in base.named_parameters() if "embed_tokens" not in name
                       and "lora_" not in name)
        self.flops_per_token = (6 if not cfg.lora else 4) * n_params
        self.peak = peak_flops(device)
        self.step = 0
        self.dpo_ref: list[tuple[float, float]] | None = None

    # ------------------------------------------------------------------ data order
    def _batch(self, step: int) -> list[int]:
        epoch, i = divmod(step, self.steps_per_epoch)
        order = list(range(len(self.train)))
        random.Random(self.cfg.seed * 1_000_003 + epoch).shuffle(order)
        return order[i * self.cfg.batch_size:(i + 1) * self.cfg.batch_size]

    def _groups(self, items: list[Any]) -> list[list[int]]:
        lengths = [len(x.chosen) + len(x.rejected) if self.dpo else len(x) for x in items]
        if not self.cfg.packing:
            return [[i] for i in range(len(items))]
        return pack(lengths, self.capacity)

    def _micro(self, seqs: list[Tokens]) -> MicroBatch:
        # On CPU, rows are padded to a multiple of 64 tokens (a filler segment, never scored): oneDNN keeps
        # state for every GEMM shape it meets, and over a long job unbounded row lengths grew memory by
        # ~50 MB per step (measured on SmolLM2-135M); bucketed lengths keep that set small.
        bucket = 64 if self.device.type == "cpu" and self.mask == "segments" else 1
        return build_micro_batch(seqs, mask=self.mask, device=self.device, pad_to_multiple=bucket)

    def _hidden(self, mb: MicroBatch) -> torch.Tensor:
        extra: dict[str, Any] = {}
        if self.mask in ("segments", "none"):  # boundaries for per-sequence / variable-length attention
            cu = mb.cu_seqlens.to(self.device, dtype=torch.int32)
            longest = max(mb.lengths)
            extra = {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
        out = self.backbone(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids,
                            use_cache=False, **extra)
        return out.last_hidden_state[0]

    def _autocast(self) -> Any:
        import contextlib

        dtype = autocast_dtype(self.cfg, self.device)
        if dtype is None:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(self.device.type, dtype=dtype))
        if self.cfg.lora:
            # PEFT casts each adapter's input up to the adapter's float32 weights; under autocast the
            # matmul runs in bf16 anyway, so that cast is two wasted copies per adapted layer.
            from peft.helpers import disable_input_dtype_casting

            stack.enter_context(disable_input_dtype_casting(self.model))
        return stack

    # ------------------------------------------------------------------ SFT
    @staticmethod
    def _n_targets(seq: Tokens) -> int:
        return sum(1 for x in seq.labels[1:] if x != -100)

    def _sft_pass(self, items: list[Tokens], *, train: bool, denominator: float) -> StepStats:
        stats = StepStats()
        groups = self._groups(items)[self.dist.rank::self.dist.world]
        for group in groups:
            mb = self._micro([items[i] for i in group])
            with self._autocast():
                hidden = self._hidden(mb)
                selected = hidden.index_select(0, mb.target_positions)
                nll, correct = sft_loss_sums(selected, self.head.weight, mb.targets, bias=self.head.bias,
                                             chunk=self.loss_chunk)
            if train:
                (nll / denominator).backward()
            stats.loss_sum += float(nll.detach())
            stats.correct += float(correct)
            stats.targets += float(mb.targets.numel())
            stats.tokens += mb.tokens
        return stats

    # ------------------------------------------------------------------ DPO
    def _pair_logps(self, pairs: list[PreferencePair], group: list[int]) -> torch.Tensor:
        seqs: list[Tokens] = []
        for i in group:
            seqs += [pairs[i].chosen, pairs[i].rejected]
        mb = self._micro(seqs)
        with self._autocast():
            hidden = self._hidden(mb)
            selected = hidden.index_select(0, mb.target_positions)
            logps = sequence_logprobs(selected, self.head.weight, mb.targets, mb.segments, len(seqs),
                                      bias=self.head.bias, chunk=self.loss_chunk)
        return logps.view(-1, 2)  # [pairs, (chosen, rejected)]

    def _reference(self, pairs: list[PreferencePair], group: list[int]) -> torch.Tensor:
        with torch.no_grad():
            if self.cfg.lora and hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():  # the LoRA reference: the base without the adapter
                    return self._pair_logps(pairs, group)
            assert self.dpo_ref is not None
            return torch.tensor([self.dpo_ref[i] for i in group], device=self.device)

    def _dpo_pass(self, pairs: list[PreferencePair], *, train: bool, denominator: float) -> StepStats:
        stats = StepStats(extra={"reward_accuracy_sum": 0.0, "reward_margin_sum": 0.0})
        for group in self._groups(pairs)[self.dist.rank::self.dist.world]:
            ref = self._reference(pairs, group)
            policy = self._pair_logps(pairs, group)  # evaluation calls this under torch.no_grad()
            loss, info = dpo_loss(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], self.cfg.beta)
            if train:
                (loss / denominator).backward()
            stats.loss_sum += float(loss.detach())
            stats.targets += len(group)
            stats.tokens += sum(len(pairs[i].chosen) + len(pairs[i].rejected) for i in group)
            stats.extra["reward_accuracy_sum"] += info["reward_accuracy_sum"]
            stats.extra["reward_margin_sum"] += info["reward_margin_sum"]
        return stats

    def precompute_reference(self, pairs: list[PreferencePair]) -> list[tuple[float, float]]:
        """Full fine-tuning DPO: the frozen initial model's log-probabilities, computed once."""
        out: list[tuple[float, float]] = [(0.0, 0.0)] * len(pairs)
        with torch.no_grad():
            for group in self._groups(pairs):
                logps = self._pair_logps(pairs, group)
                for i, row in zip(group, logps.tolist()):
                    out[i] = (row[0], row[1])
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, limit: int | None) -> dict[str, float]:
        items = self.valid[:limit] if limit else self.valid
        if not items:
            return {}
        self.model.eval()
        with torch.no_grad():
            if self.dpo:
                stats = self._dpo_pass(items, train=False, denominator=1.0)  # type: ignore[arg-type]
            else:
                stats = self._sft_pass(items, train=False, denominator=1.0)  # type: ignore[arg-type]
        self.model.train()
        totals = self.dist.all_reduce(torch.tensor([stats.loss_sum, stats.correct, stats.targets,
                                                    stats.extra.get("reward_accuracy_sum", 0.0)], dtype=torch.float64))
        loss_sum, correct, targets, reward_acc = totals.tolist()
        if targets == 0:
            return {}
        out = {"loss": loss_sum / targets}
        out["accuracy"] = (reward_acc if self.dpo else correct) / targets
        return out

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, metrics: dict[str, Any]) -> Path | None:
        self.dist.barrier()
        if not self.dist.main:
            return None
        final = self.checkpoint_dir / f"step-{self.step:06d}"
        tmp = self.checkpoint_dir / f".tmp-step-{self.step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.save_adapter(tmp / "weights")
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, tmp / "rng.pt")
        import json

        (tmp / "state.json").write_text(json.dumps({"step": self.step, "total_steps": self.total_steps,
                                                    "metrics": metrics}), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        kept = sorted(p for p in self.checkpoint_dir.glob("step-*") if p.is_dir())
        for old in kept[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: Path, load_weights: Callable[[Path], None]) -> None:
        import json

        load_weights(path / "weights")
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=self.device, weights_only=True))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        rng = torch.load(path / "rng.pt", weights_only=False)  # our own file: python RNG state is a tuple
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = json.loads((path / "state.json").read_text())["step"]

    # ------------------------------------------------------------------ the loop
    def _reduce_grads(self) -> None:
        if self.dist.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.dist.all_reduce(flat)
        offset = 0
        for p, g in zip(self.params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def run_step(self) -> dict[str, Any]:
        started = time.perf_counter()
        items = [self.train[i] for i in self._batch(self.step)]
        if self.dpo:
            denominator = float(len(items))
            stats = self._dpo_pass(items, train=True, denominator=denominator)  # type: ignore[arg-type]
        else:
            denominator = float(sum(self._n_targets(s) for s in items)) or 1.0  # type: ignore[arg-type,misc]
            stats = self._sft_pass(items, train=True, denominator=denominator)  # type: ignore[arg-type]
        self._reduce_grads()
        totals = self.dist.all_reduce(torch.tensor([stats.loss_sum, stats.correct, stats.targets, stats.tokens,
                                                    stats.extra.get("reward_accuracy_sum", 0.0),
                                                    stats.extra.get("reward_margin_sum", 0.0)], dtype=torch.float64))
        loss_sum, correct, targets, tokens, reward_acc, margin = totals.tolist()
        loss = loss_sum / max(targets, 1.0)
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss} at step {self.step + 1}")
        grad_norm = None
        if self.cfg.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        elapsed = time.perf_counter() - started
        tps = tokens / elapsed if elapsed > 0 else None
        out: dict[str, Any] = {"step": self.step, "total_steps": self.total_steps, "train_loss": round(loss, 6),
                               "learning_rate": lr, "tokens": int(tokens), "supervised_tokens": int(targets),
                               "step_seconds": round(elapsed, 4),
                               "epoch": round(self.step / self.steps_per_epoch, 4)}
        if self.dpo:
            out["reward_accuracy"] = reward_acc / max(targets, 1.0)
            out["reward_margin"] = margin / max(targets, 1.0)
        else:
            out["train_mean_token_accuracy"] = round(correct / max(targets, 1.0), 6)
        if grad_norm is not None:
            out["grad_norm"] = round(grad_norm, 6) if math.isfinite(grad_norm) else None
        if tps is not None:
            out["tokens_per_second"] = round(tps, 2)
            out["tokens_per_second_per_device"] = round(tps / self.dist.world, 2)
            if self.peak is not None:
                out["mfu"] = round(self.flops_per_token * tps / self.dist.world / self.peak, 4)
        return out
