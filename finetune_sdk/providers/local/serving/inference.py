"""Generation for the local server: one copy of a base model, many LoRA adapters, batched.

Requests that arrive together (within ``batch_window`` seconds, up to ``max_batch``) are
decoded in one batch — prefill and every decoding step are single forward passes over
all of them — even when they target different fine-tunes of the same base: PEFT's
mixed-adapter forward applies each row's adapter (``"__base__"`` for none). Tokens are
streamed to each request as they are decoded. Sampling honours ``temperature``,
``top_p``, ``seed``, ``stop`` and ``max_tokens`` per request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...._secrets import get_logger
from ....types import ChatDelta, Usage

__all__ = ["Engine", "GenerationRequest"]

_log = get_logger(__name__)
BASE = "__base__"


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    adapter: str | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    out: queue.Queue[Any] = field(default_factory=queue.Queue)


class _Row:
    """Decoding state of one request inside a batch."""

    def __init__(self, req: GenerationRequest, tokenizer: Any, eos: set[int]) -> None:
        self.req = req
        self.tok = tokenizer
        self.eos = eos
        self.ids: list[int] = []
        self.sent = 0
        self.done = False
        self.finish = "stop"
        self.generator = None
        if req.seed is not None:
            self.generator = torch.Generator().manual_seed(req.seed)

    def text(self) -> str:
        return self.tok.decode(self.ids, skip_special_tokens=True)

    def push(self, token: int) -> None:
        if self.done:
            return
        if token in self.eos:
            self._end("stop")
            return
        self.ids.append(token)
        text = self.text()
        for s in self.req.stop:
            cut = text.find(s, max(0, self.sent - len(s)))
            if s and cut >= 0:
                self._emit(text[:cut])
                self._end("stop", emitted=True)
                return
        if len(self.ids) >= self.req.max_tokens:
            self._emit(text)
            self._end("length", emitted=True)
            return
        # Hold back a possible partial stop sequence or an incomplete multi-byte character.
        hold = max((len(s) - 1 for s in self.req.stop), default=0)
        safe = len(text) - hold
        if text.endswith("\ufffd"):
            safe = min(safe, len(text) - 1)
        self._emit(text[:max(self.sent, safe)])

    def _emit(self, upto: str) -> None:
        if len(upto) > self.sent:
            self.req.out.put(ChatDelta(content=upto[self.sent:]))
            self.sent = len(upto)

    def _end(self, reason: str, emitted: bool = False) -> None:
        if not emitted:
            self._emit(self.text())
        self.done = True
        self.finish = reason
        n = len(self.ids)
        self.req.out.put(ChatDelta(finish_reason=reason, usage=Usage(prompt_tokens=len(self.req.prompt_ids),
                                                                     completion_tokens=n,
                                                                     total_tokens=len(self.req.prompt_ids) + n)))
        self.req.out.put(None)


def _sample(logits: torch.Tensor, row: _Row) -> int:
    req = row.req
    if req.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / req.temperature, dim=-1)
    if req.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < req.top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=row.generator))


class Engine:
    """A base model with its adapters, and a worker thread that batches requests."""

    def __init__(self, model: Any, tokenizer: Any, *, device: torch.device, max_batch: int = 16,
                 batch_window: float = 0.02, max_context: int | None = None) -> None:
        self.model = model
        self.tok = tokenizer
        self.device = device
        self.max_batch = max_batch
        self.batch_window = batch_window
        config = getattr(model, "config", None)
        self.max_context = max_context or int(getattr(config, "max_position_embeddings", 4096) or 4096)
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        for name in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
            tid = tokenizer.convert_tokens_to_ids(name) if name in tokenizer.get_vocab() else None
            if tid is not None:
                eos.add(tid)
        self.eos = eos
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos), 0)
        self.adapters: dict[str, str] = {}
        self._load_lock = threading.Lock()
        self._queue: queue.Queue[GenerationRequest] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="finetune-generate", daemon=True)
        self._worker.start()
        self.batches = 0
        self.batched_requests = 0

    # -- adapters
    def ensure_adapter(self, name: str, path: Path) -> None:
        """Load a PEFT adapter once (thread-safe); the base weights are shared."""
        if name in self.adapters:
            return
        with self._load_lock:
            if name in self.adapters:
                return
            from peft import PeftModel

            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            self.model.eval()
            self.adapters[name] = str(path)
            _log.info("loaded adapter %s from %s", name, path)

    # -- requests
    def prompt_ids(self, messages: list[dict[str, Any]], tools: Any = None) -> list[int]:
        ids = self.tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True,
                                           return_dict=False)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def generate(self, req: GenerationRequest) -> Iterator[ChatDelta]:
        """Queue a request; yield its deltas as they are decoded (the last carries finish_reason and usage)."""
        self._queue.put(req)
        while True:
            item = req.out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    # -- the worker
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            deadline = time.monotonic() + self.batch_window
            while len(batch) < self.max_batch:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=timeout))
                except queue.Empty:
                    break
            try:
                with torch.inference_mode():
                    self._decode(batch)
            except BaseException as exc:  # report to every waiting request, keep serving
                _log.exception("generation failed")
                for req in batch:
                    req.out.put(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))

    def _decode(self, batch: list[GenerationRequest]) -> None:
        from transformers import DynamicCache

        self.batches += 1
        self.batched_requests += len(batch)
        rows = [_Row(req, self.tok, self.eos) for req in batch]
        width = max(len(r.prompt_ids) for r in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, req in enumerate(batch):  # left padding: every row's next token is at the end
            ids[i, width - len(req.prompt_ids):] = torch.tensor(req.prompt_ids)
            mask[i, width - len(req.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {}
        names = [req.adapter or BASE for req in batch]
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            if len(set(names)) == 1 and names[0] != BASE:
                self.model.set_adapter(names[0])
            elif len(set(names)) == 1:
                kwargs = {}
            else:
                kwargs["adapter_names"] = names
        cache = DynamicCache()
        limit = max(r.max_tokens for r in batch)
        context = contextlib_for(self.model, names)
        with context:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                             logits_to_keep=1, **kwargs)
            for _ in range(limit):
                logits = out.logits[:, -1]
                nxt = [_sample(logits[i], row) if not row.done else self.pad for i, row in enumerate(rows)]
                for row, token in zip(rows, nxt):
                    row.push(token)
                if all(r.done for r in rows):
                    break
                step = torch.tensor(nxt, dtype=torch.long, device=self.device)[:, None]
                mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=mask.dtype, device=self.device)], dim=1)
                positions = positions[:, -1:] + 1
                out = self.model(input_ids=step, attention_mask=mask, position_ids=positions, cache=cache,
                                 use_cache=True, logits_to_keep=1, **kwargs)
        for row in rows:
            if not row.done:
                row._end("length")


def contextlib_for(model: Any, names: list[str]) -> Any:
    """A batch of base-only requests on a PeftModel runs with the adapters disabled."""
    import contextlib

    from peft import PeftModel

    if isinstance(model, PeftModel) and set(names) == {BASE}:
        return model.disable_adapter()
    return contextlib.nullcontext()
