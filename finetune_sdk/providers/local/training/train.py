"""The training process: ``python -m finetune_sdk.providers.local.training.train JOB_DIR``.

One OS process per job (so a notebook or application never blocks or dies with it),
runnable unchanged under ``torchrun`` / ``accelerate launch``. It validates the data,
waits for its device (one running job per device), trains, checkpoints, and records
everything in the job directory: status in ``job.json``, events in ``events.jsonl``.
Cancel and pause arrive as SIGTERM or flags in ``job.json`` and are honoured between
steps, after a checkpoint; a crash is reported with a message that suggests the fix.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

__all__ = ["main", "JobRunner"]


def _now() -> float:
    return time.time()


class JobRunner:
    def __init__(self, job_dir: Path) -> None:
        from ....types import Event  # noqa: F401  (import errors surface early, in the log)
        from ..jobs.store import JobStore
        from .trainer import Dist

        self.job_dir = job_dir.resolve()
        self.job_id = self.job_dir.name
        self.home = self.job_dir.parent.parent
        self.store = JobStore(self.home)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.dist = Dist(rank=int(os.environ.get("RANK", "0")), world=world,
                         local_rank=int(os.environ.get("LOCAL_RANK", "0")))
        self.signalled: str | None = None
        self.started = _now()

    # ------------------------------------------------------------------ reporting
    def event(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None,
              status: str | None = None, checkpoint: int | None = None) -> None:
        """Record an event; its kind comes from what happened (a status, metrics ``data``, a
        checkpoint), never from the message, which is for people."""
        from ....types import Event, from_timestamp

        if not self.dist.main:
            return
        payload: dict[str, Any]
        if status is not None:
            kind, payload = "status", {"status": status}
        elif checkpoint is not None:
            kind, payload = "checkpoint", {"step": checkpoint}
        else:
            kind, payload = ("metrics" if data else "message"), data or {}
        self.store.append_event(self.job_id, Event(id=f"ftevent-{secrets.token_hex(12)}",
                                                   created_at=from_timestamp(_now()), level=level,  # type: ignore[arg-type]
                                                   message=message, kind=kind, data=payload))  # type: ignore[arg-type]
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def status(self, status: str, **fields: Any) -> None:
        if self.dist.main:
            self.store.update(self.job_id, status=status, **fields)

    def fail(self, code: str, message: str, param: str | None = None) -> int:
        from ....types import JobError

        self.event(message, level="error", status="failed")
        self.status("failed", finished_at=_now(), error=JobError(code=code, message=message, param=param))
        return 1

    def should_stop(self) -> str | None:
        if self.signalled:
            return self.signalled
        record = self.store.read(self.job_id)
        if record.cancel_requested:
            return "cancel"
        if record.pause_requested:
            return "pause"
        return None

    # ------------------------------------------------------------------ phases
    def _validate(self, record: Any, cfg: Any) -> bool:
        from ....data.validate import validate

        train = self.job_dir / "train.jsonl"
        report = validate(train, model=None, method=cfg.method if cfg.method != "supervised" else None,
                          hosted=False, validation_file=self.job_dir / "validation.jsonl"
                          if (self.job_dir / "validation.jsonl").exists() else None, workers=1, images=False)
        (self.job_dir / "validation_report.json").write_text(json.dumps(report.to_json_dict(), indent=1))
        if report.ok:
            self.event(f"Files validated: {report.examples} training examples"
                       + (f", {report.validation.examples} validation examples" if report.validation else ""))
            return True
        issues = (report.errors + (report.validation.errors if report.validation else []))[:5]
        detail = "; ".join(str(i) for i in issues)
        self.fail("invalid_training_file", f"The training data has {report.error_count} error(s): {detail}. "
                                           f"Full report: validation_report.json in the job directory.",
                  "training_file")
        return False

    def _wait_for_device(self, stack: ExitStack, device_key: str) -> None:
        """Hold the device's lock for the rest of the run; while another job holds it, stay queued."""
        from ...._filelock import file_lock
        from .trainer import StopTraining

        lock_path = self.home / "locks" / f"{device_key}.lock"
        announced = False
        while True:
            attempt = ExitStack()
            if attempt.enter_context(file_lock(lock_path, blocking=False)):
                stack.push(attempt.pop_all())  # keep it until the process ends
                return
            attempt.close()
            if not announced:
                # The event first: anyone who sees the status already finds the reason in the events.
                self.event(f"Queued: another job is running on {device_key}; this one starts when it finishes.",
                           status="queued")
                self.status("queued")
                announced = True
            reason = self.should_stop()
            if reason is not None:
                raise StopTraining(reason)
            time.sleep(1.0)

    def run(self) -> int:
        import torch

        from ....errors import FineTuneError
        from ....metrics import points_from_events, to_results_csv
        from ..jobs.hparams import TrainConfig
        from .batching import UnsupportedContent
        from .trainer import NonFiniteLoss, StopTraining

        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "signalled", "cancel"))
        record = self.store.read(self.job_id)
        cfg = TrainConfig(**record.config)
        resuming = record.resume_from is not None
        if self.dist.world > 1:
            torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        device = self._device(cfg)
        trainer = None
        with ExitStack() as lock:
            try:
                if not resuming:
                    self.status("validating")
                if self.dist.main and not resuming and not self._validate(record, cfg):
                    return 1
                if self.dist.main:
                    self._wait_for_device(lock, "cpu" if device.type == "cpu" else f"cuda-{device.index or 0}")
                self.dist.barrier()
                self.status("running", started_at=record.started_at or _now(), device=str(device))
                if not resuming:
                    self.event("Fine-tuning job started", status="running")
                trainer, tokenizer = self._build(cfg, record, device)
                if resuming:
                    trainer.load_checkpoint(Path(str(record.resume_from)), self._load_weights(trainer.model, cfg))
                    self.event(f"Resumed from checkpoint at step {trainer.step}", status="running")
                self._loop(trainer, cfg)
                trainer.save_checkpoint({})  # every rank: it is a collective
                if self.dist.main:
                    self.event(f"Checkpoint created at step {trainer.step}", checkpoint=trainer.step)
                    self._finish(trainer, tokenizer, cfg, to_results_csv(points_from_events(
                        self.store.events(self.job_id))))
                return 0
            except StopTraining as stop:
                if trainer is not None and trainer.step > 0:
                    path = trainer.save_checkpoint({})
                    if path is not None:
                        self.event(f"Checkpoint created at step {trainer.step}", checkpoint=trainer.step)
                if stop.reason == "pause":
                    self.event("Fine-tuning job paused", status="paused")
                    self.status("paused", pause_requested=False, pid=None,
                                resume_from=str(self._latest_checkpoint()) if self._latest_checkpoint() else None)
                    return 0
                self.event("Fine-tuning job cancelled", status="cancelled")
                self.status("cancelled", finished_at=_now(), pid=None)
                return 0
            except NonFiniteLoss as exc:
                return self.fail("non_finite_loss", f"Training diverged: {exc}. Lower learning_rate_multiplier "
                                                    f"(e.g. 0.5), raise batch_size, or check the data for "
                                                    f"outliers; max_grad_norm clips gradients (default 1.0).")
            except UnsupportedContent as exc:
                return self.fail("invalid_training_file", str(exc), "training_file")
            except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
                return self.fail("out_of_memory", f"Out of memory ({type(exc).__name__}). Try a smaller "
                                                  f"batch_size or micro_batch_tokens, a shorter max_length, "
                                                  f"gradient_checkpointing=True, or qlora=True on CUDA.")
            except FineTuneError as exc:
                return self.fail(getattr(exc, "code", None) or "invalid_request", str(exc))
            except Exception as exc:
                traceback.print_exc()
                if "out of memory" in str(exc).lower():
                    return self.fail("out_of_memory", f"Out of memory: {exc}. Try a smaller batch_size or "
                                                      f"micro_batch_tokens, a shorter max_length, or "
                                                      f"gradient_checkpointing=True.")
                return self.fail("internal_error", f"Training failed: {type(exc).__name__}: {exc}. The full "
                                                   f"traceback is in train.log in the job directory.")
            finally:
                if self.dist.world > 1 and torch.distributed.is_initialized():
                    torch.distributed.destroy_process_group()

    def _device(self, cfg: Any) -> Any:
        import torch

        if cfg.device != "auto":
            return torch.device(cfg.device)
        if torch.cuda.is_available():
            return torch.device("cuda", self.dist.local_rank)
        return torch.device("cpu")

    def _latest_checkpoint(self) -> Path | None:
        ckpts = sorted(p for p in (self.job_dir / "checkpoints").glob("step-*") if p.is_dir())
        return ckpts[-1] if ckpts else None

    # ------------------------------------------------------------------ model and data
    def _build(self, cfg: Any, record: Any, device: Any) -> tuple[Any, Any]:
        import torch

        from ....data.records import detect_format
        from .. import models
        from .batching import ChatRenderer, PreferencePair, UnsupportedContent, tokenize_example
        from .trainer import Trainer

        torch.manual_seed(cfg.seed)
        resolved = models.resolve_base_model(record.spec.model, trust_remote_code=cfg.trust_remote_code,
                                             progress=lambda m: self.event(m))
        if self.dist.main:
            self.store.update(self.job_id, base_model_path=str(resolved.path))
        tokenizer = models.load_tokenizer(resolved, trust_remote_code=cfg.trust_remote_code)
        attn, mask = self._attention(cfg, device)
        dtype = self._dtype(cfg, device)
        model = self._load_model(models, resolved, cfg, device, dtype, attn)
        renderer = ChatRenderer(tokenizer, cfg.max_length)

        def load(name: str) -> list[Any]:
            path = self.job_dir / name
            if not path.exists():
                return []
            out, dropped, truncated = [], 0, 0
            with open(path, encoding="utf-8-sig") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    example = json.loads(line)
                    try:
                        item = tokenize_example(renderer, example, detect_format(example) or "chat")
                    except UnsupportedContent as exc:
                        raise UnsupportedContent(f"{name} line {lineno}: {exc}") from None
                    seqs = [item.chosen, item.rejected] if isinstance(item, PreferencePair) else [item]
                    truncated += any(s.truncated for s in seqs)
                    if any(sum(1 for x in s.labels[1:] if x != -100) == 0 for s in seqs):
                        dropped += 1
                        continue
                    out.append(item)
            if truncated:
                self.event(f"{truncated} {name.split('.')[0]} example(s) were longer than max_length="
                           f"{cfg.max_length} tokens and were truncated", level="warning")
            if dropped:
                self.event(f"{dropped} {name.split('.')[0]} example(s) had no trainable tokens left after "
                           f"truncation and were skipped", level="warning")
            return out

        train, valid = load("train.jsonl"), load("validation.jsonl")
        if renderer.mismatches:
            self.event(f"The chat template rendered {renderer.mismatches} assistant turn(s) inconsistently; their "
                       f"loss was skipped", level="warning")
        if not train:
            raise ValueError("no training example has a trainable token")
        trainer = Trainer(cfg, model, train, valid, device=device, dist=self.dist, mask=mask,
                          emit=lambda *_: None, checkpoint_dir=self.job_dir / "checkpoints",
                          should_stop=self.should_stop, save_adapter=self._saver(model, cfg))
        if cfg.method == "dpo" and not cfg.lora:
            trainer.dpo_ref = trainer.precompute_reference(train)
        trainer.tokenizer = tokenizer  # type: ignore[attr-defined]
        trainable = sum(p.numel() for p in trainer.params)
        self.event(f"Training {resolved.name} with {'LoRA' if cfg.lora else 'full fine-tuning'} "
                   f"({trainable:,} trainable parameters) on {device}: {len(train)} examples, "
                   f"{trainer.total_steps} steps, batch {cfg.batch_size}, lr {cfg.learning_rate:g}; MFU uses "
                   f"{'4N' if cfg.lora else '6N'} FLOPs per token")
        if self.dist.main:
            self.store.update(self.job_id, total_steps=trainer.total_steps)
        return trainer, tokenizer

    @staticmethod
    def _attention(cfg: Any, device: Any) -> tuple[str, str]:
        """(attn_implementation, how packed sequences are isolated)."""
        from .attention import SEGMENT_ATTENTION, register

        if cfg.attn_implementation == "auto":
            if device.type == "cuda":
                try:
                    import flash_attn  # type: ignore[import-not-found]  # noqa: F401

                    return "flash_attention_2", "none"
                except ImportError:
                    pass
            return register(), "segments"
        if cfg.attn_implementation == SEGMENT_ATTENTION:
            return register(), "segments"
        return cfg.attn_implementation, {"eager": "additive", "sdpa": "bool"}.get(cfg.attn_implementation, "none")

    @staticmethod
    def _dtype(cfg: Any, device: Any) -> Any:
        import torch

        from .trainer import cpu_has_fast_bf16

        if cfg.dtype != "auto":
            return getattr(torch, cfg.dtype) if device.type == "cuda" or cfg.lora else torch.float32
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # CPU: frozen LoRA base weights in bf16 where the CPU has bf16 units (half the memory, no per-step
        # casts); weights the optimizer updates (full fine-tuning) stay float32 under bf16 autocast.
        return torch.bfloat16 if cfg.lora and cpu_has_fast_bf16() else torch.float32

    def _load_model(self, models: Any, resolved: Any, cfg: Any, device: Any, dtype: Any, attn: str) -> Any:
        if cfg.qlora:
            if device.type != "cuda":
                raise ValueError("qlora=True needs a CUDA GPU (bitsandbytes 4-bit); use LoRA on this device")
            import torch
            from peft import prepare_model_for_kbit_training
            from transformers import AutoModelForCausalLM, BitsAndBytesConfig

            quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=torch.bfloat16)
            model = AutoModelForCausalLM.from_pretrained(str(resolved.path), quantization_config=quant,
                                                         device_map={"": device}, attn_implementation=attn,
                                                         use_safetensors=True,
                                                         trust_remote_code=cfg.trust_remote_code)
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        else:
            model = models.load_model(resolved, dtype=dtype, device=device, attn_implementation=attn,
                                      trust_remote_code=cfg.trust_remote_code)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=cfg.target_modules, task_type="CAUSAL_LM")
            model = get_peft_model(model, lora)  # type: ignore[assignment]
            from .fused import fuse_lora

            fuse_lora(model)
        if not cfg.qlora:
            from .fused import fuse_rms_norm

            fuse_rms_norm(model)
        model.train()
        return model

    @staticmethod
    def _saver(model: Any, cfg: Any) -> Any:
        def save(path: Path) -> None:
            path.mkdir(parents=True, exist_ok=True)
            if cfg.lora:
                model.save_pretrained(str(path))
            else:
                from safetensors.torch import save_model

                save_model(model, str(path / "model.safetensors"))
        return save

    @staticmethod
    def _load_weights(model: Any, cfg: Any) -> Any:
        def load(path: Path) -> None:
            if cfg.lora:
                from peft import set_peft_model_state_dict
                from safetensors.torch import load_file

                set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
            else:
                from safetensors.torch import load_model

                load_model(model, str(path / "model.safetensors"))
        return load

    # ------------------------------------------------------------------ the loop
    def _agreed_stop(self) -> str | None:
        """Whether to stop, decided by rank 0 and shared, so every rank stops at the same step."""
        reason = self.should_stop() if self.dist.main else None
        if self.dist.world == 1:
            return reason
        import torch

        code = torch.tensor([{None: 0, "cancel": 1, "pause": 2}[reason]])
        torch.distributed.broadcast(code, src=0)
        return {0: None, 1: "cancel", 2: "pause"}[int(code)]

    def _loop(self, trainer: Any, cfg: Any) -> None:
        from .trainer import StopTraining

        durations: list[float] = []
        while trainer.step < trainer.total_steps:
            reason = self._agreed_stop()
            if reason is not None:
                raise StopTraining(reason)
            data = trainer.run_step()
            durations.append(data["step_seconds"])
            step, total = trainer.step, trainer.total_steps
            epoch_end = step % trainer.steps_per_epoch == 0 or step == total
            if step % trainer.eval_every == 0 or epoch_end:
                if trainer.valid:
                    quick = trainer.evaluate(cfg.eval_max_examples)
                    data["valid_loss"] = round(quick["loss"], 6)
                    data["valid_mean_token_accuracy"] = round(quick["accuracy"], 6)
                    if epoch_end:
                        full = trainer.evaluate(None)
                        data["full_valid_loss"] = round(full["loss"], 6)
                        data["full_valid_mean_token_accuracy"] = round(full["accuracy"], 6)
            recent = durations[-20:]
            eta = sum(recent) / len(recent) * (total - step)
            data["eta_seconds"] = round(eta, 1)
            if step % cfg.metrics_every == 0 or step == total or "valid_loss" in data:
                message = f"Step {step}/{total}: training loss={data['train_loss']:.4f}"
                if "valid_loss" in data:
                    message += f", validation loss={data['valid_loss']:.4f}"
                if "full_valid_loss" in data:
                    message += f", full validation loss={data['full_valid_loss']:.4f}"
                self.event(message, data=data)
            if self.dist.main:
                self.store.update(self.job_id, step=step, estimated_finish=_now() + eta)
            if (step % trainer.checkpoint_every == 0 or epoch_end) and step < total:
                if trainer.save_checkpoint(data) is not None:
                    self.event(f"Checkpoint created at step {step}", checkpoint=step)

    def _finish(self, trainer: Any, tokenizer: Any, cfg: Any, results_csv: str) -> None:
        out = self.job_dir / ("adapter" if cfg.lora else "model")
        tmp = self.job_dir / f".{out.name}.tmp"
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if cfg.lora:
            trainer.model.save_pretrained(str(tmp))
        else:
            base = trainer.model
            base.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        (self.job_dir / "results.csv").write_text(results_csv, encoding="utf-8")
        record = self.store.read(self.job_id)
        base_name = Path(record.spec.model).name if os.sep in record.spec.model else record.spec.model
        name = f"ft:{base_name}:local:{record.spec.suffix or ''}:{self.job_id.removeprefix('ftjob-')[:8]}"
        tokens = sum(len(x.chosen) + len(x.rejected) if hasattr(x, "chosen") else len(x) for x in trainer.train)
        self.event(f"New fine-tuned model created: {name}")
        self.event("The job has successfully completed", status="succeeded")
        self.status("succeeded", finished_at=_now(), fine_tuned_model=name, pid=None, estimated_finish=None,
                    trained_tokens=int(tokens * trainer.step / max(1, trainer.steps_per_epoch)))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / "job.json").is_file():
        print("usage: python -m finetune_sdk.providers.local.training.train JOB_DIR  (a directory holding job.json)",
              file=sys.stderr)
        return 2
    return JobRunner(Path(args[0])).run()


if __name__ == "__main__":
    sys.exit(main())
