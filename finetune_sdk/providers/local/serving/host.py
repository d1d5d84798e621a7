"""Which model id means which weights, inside the serving process.

:class:`ModelHost` resolves a request's ``model`` to an engine and adapter — only ever
through the job registry, deployment names and the base models the operator chose: a
request can never name a filesystem path. Several LoRA fine-tunes of one base share one
copy of the base weights (one :class:`~.inference.Engine` per base).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ....errors import BadRequestError, NotFoundError
from ....types import ChatDelta, ChatResponse, ModelInfo, Usage, from_timestamp
from ..jobs.store import JobStore
from .deployments import Deployments

__all__ = ["MAX_COMPLETION_TOKENS", "ModelHost"]

MAX_COMPLETION_TOKENS = 2048


class ModelHost:
    """Model ids -> engines and adapters, for the serving process."""

    def __init__(self, home: Path, *, device: str = "auto", max_batch: int = 16, batch_window: float = 0.02,
                 max_completion_tokens: int = MAX_COMPLETION_TOKENS) -> None:
        self.home = Path(home)
        self.jobs = JobStore(self.home)
        self.deployments = Deployments(self.home)
        self.device_name = device
        self.max_batch = max_batch
        self.batch_window = batch_window
        self.max_completion_tokens = max_completion_tokens
        self.bases: dict[str, Path] = {}  # served base id -> weights directory
        self.engines: dict[str, Any] = {}  # weights directory -> Engine
        self._lock = threading.Lock()

    @property
    def device(self) -> Any:
        import torch

        if self.device_name != "auto":
            return torch.device(self.device_name)
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")

    def add_base(self, name: str) -> str:
        """Serve a base model chosen by the operator (an alias, a directory or a Hub id); returns its id."""
        from ..models import resolve_base_model

        resolved = resolve_base_model(name)
        model_id = resolved.name if resolved.source != "local" else Path(resolved.path).name
        self.bases[model_id] = Path(resolved.path)
        return model_id

    def _engine(self, weights: Path) -> Any:
        key = str(weights)
        with self._lock:
            engine = self.engines.get(key)
            if engine is None:
                from ..models import ResolvedModel, load_model, load_tokenizer
                from .inference import Engine

                resolved = ResolvedModel(name=Path(weights).name, path=Path(weights), source="local")
                tokenizer = load_tokenizer(resolved)
                model = load_model(resolved, device=self.device).eval()
                engine = Engine(model, tokenizer, device=self.device, max_batch=self.max_batch,
                                batch_window=self.batch_window)
                self.engines[key] = engine
            return engine

    def _job_for(self, model_id: str) -> tuple[Any, str | None]:
        """(job record, checkpoint step or None) for a fine-tuned model id, a checkpoint id or a job id."""
        checkpoint = None
        base_id = model_id
        if ":ckpt-step-" in model_id:
            base_id, _, step = model_id.rpartition(":ckpt-step-")
            checkpoint = step if step.isdigit() else None
            if checkpoint is None:
                return None, None
        for job_id in self.jobs.ids():
            try:
                record = self.jobs.read(job_id)
            except (OSError, ValueError):
                continue
            if record.status == "succeeded" and base_id in (record.fine_tuned_model, record.id):
                return record, checkpoint
        return None, None

    def resolve(self, model_id: str) -> tuple[Any, str | None, str]:
        """(engine, adapter name or None, canonical model id); NotFoundError for anything unregistered."""
        alias = self.deployments.read().get(model_id)
        target = alias["model"] if alias else model_id
        if target in self.bases:
            return self._engine(self.bases[target]), None, target
        from ..models import ALIASES, resolve_base_model

        if target.lower() in ALIASES:
            canonical = ALIASES[target.lower()]
            if canonical not in self.bases:
                self.bases[canonical] = Path(resolve_base_model(canonical).path)
            return self._engine(self.bases[canonical]), None, canonical
        record, checkpoint = self._job_for(target)
        if record is None:
            raise NotFoundError(f"The model `{model_id}` does not exist or you do not have access to it.",
                                provider="local", status_code=404, code="model_not_found", param="model")
        job_dir = self.jobs.dir(record.id)
        if record.config.get("lora", True):
            adapter_dir = job_dir / "checkpoints" / f"step-{int(checkpoint):06d}" / "weights" if checkpoint \
                else job_dir / "adapter"
            if not adapter_dir.is_dir():
                raise NotFoundError(f"The model `{model_id}` has no saved adapter (checkpoint pruned?).",
                                    provider="local", status_code=404, code="model_not_found", param="model")
            engine = self._engine(Path(record.base_model_path or ""))
            name = record.id + (f"-ckpt{checkpoint}" if checkpoint else "")
            engine.ensure_adapter(name, adapter_dir)
            return engine, name, target
        if checkpoint:
            raise NotFoundError("Checkpoints of full fine-tunes are not served; serve the final model.",
                                provider="local", status_code=404, code="model_not_found", param="model")
        return self._engine(job_dir / "model"), None, target

    def list_models(self) -> list[ModelInfo]:
        from ..models import DEFAULT_BASE_MODEL

        ids = dict.fromkeys([DEFAULT_BASE_MODEL, *self.bases])
        out = [ModelInfo(id=i, owned_by="local") for i in ids]
        for job_id in self.jobs.ids():
            try:
                record = self.jobs.read(job_id)
            except (OSError, ValueError):
                continue
            if record.status == "succeeded" and record.fine_tuned_model:
                out.append(ModelInfo(id=record.fine_tuned_model, created_at=from_timestamp(record.finished_at),
                                     owned_by="local", fine_tuned=True))
        out += [ModelInfo(id=name, owned_by="local", fine_tuned=True) for name in self.deployments.read()]
        return out

    # -- chat
    def _request(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> tuple[Any, Any]:
        from .inference import GenerationRequest

        n = params.get("n")
        if n not in (None, 1):
            raise BadRequestError("n > 1 is not supported by the local server; send several requests instead.",
                                  provider="local", status_code=400, param="n")
        limit = params.get("max_completion_tokens") or params.get("max_tokens")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise BadRequestError("max_tokens must be a positive integer.", provider="local", status_code=400,
                                  param="max_tokens")
        if limit is not None and limit > self.max_completion_tokens:
            raise BadRequestError(f"max_tokens is too large: {limit}. This server generates at most "
                                  f"{self.max_completion_tokens} completion tokens.", provider="local",
                                  status_code=400, param="max_tokens")
        engine, adapter, _ = self.resolve(model)
        prompt = engine.prompt_ids(messages, params.get("tools"))
        max_tokens = limit or min(512, self.max_completion_tokens)
        if len(prompt) + max_tokens > engine.max_context:
            raise BadRequestError(f"This model's maximum context length is {engine.max_context} tokens; the messages "
                                  f"use {len(prompt)} and {max_tokens} more were requested.", provider="local",
                                  status_code=400, code="context_length_exceeded", param="messages")
        stop = params.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        temperature = params.get("temperature")
        req = GenerationRequest(prompt_ids=prompt, adapter=adapter, max_tokens=max_tokens,
                                temperature=1.0 if temperature is None else float(temperature),
                                top_p=float(params["top_p"]) if params.get("top_p") is not None else 1.0,
                                seed=params.get("seed"), stop=stops)
        return engine, req

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        engine, req = self._request(model, messages, params)
        return engine.generate(req)

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        parts, last = [], None
        for delta in self.chat_stream(model, messages, **params):
            parts.append(delta.content)
            last = delta
        return ChatResponse(content="".join(parts), model=model,
                            finish_reason=last.finish_reason if last else "stop",
                            usage=last.usage if last and last.usage else Usage())

