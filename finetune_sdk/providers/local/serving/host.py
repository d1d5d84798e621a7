"""Serving local fine-tunes: which model id means which weights, and the background server.

:class:`ModelHost` (inside the server process) resolves a request's ``model`` to an engine
and adapter — only ever through the job registry, deployment names and the base models
the operator chose: a request can never name a filesystem path. Several LoRA fine-tunes
of one base share one copy of the base weights.

The background server (``client.deployments.create(job)``) is ``finetune serve`` started
in its own session on a free loopback port with a random API key; its pid, port and key
are kept in ``FINETUNE_HOME/serve/server.json`` (mode 0600), deployment names in
``deployments.json``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ...._secrets import get_logger, register_secret
from ....errors import BadRequestError, NotFoundError, ProviderError
from ....types import ChatDelta, ChatResponse, ModelInfo, Usage, from_timestamp
from ..jobs.store import JobStore, file_lock, process_alive, process_started_at

__all__ = ["ModelHost", "ServerInfo", "ensure_server", "stop_server", "running_server", "Deployments",
           "MAX_COMPLETION_TOKENS"]

_log = get_logger(__name__)
MAX_COMPLETION_TOKENS = 2048


class Deployments:
    """``FINETUNE_HOME/serve/deployments.json``: deployment name -> model id."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "serve" / "deployments.json"

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def add(self, name: str, model: str) -> None:
        with file_lock(self.path.with_suffix(".lock")):
            data = self.read()
            data[name] = {"model": model, "created_at": time.time()}
            self._write(data)

    def remove(self, name: str) -> bool:
        with file_lock(self.path.with_suffix(".lock")):
            data = self.read()
            found = data.pop(name, None) is not None
            self._write(data)
            return found


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
                                top_p=float(params.get("top_p") if params.get("top_p") is not None else 1.0),
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


# --------------------------------------------------------------------------- the background server

@dataclass
class ServerInfo:
    pid: int
    pid_started_at: float | None
    host: str
    port: int
    api_key: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def _state(home: Path) -> Path:
    return Path(home) / "serve" / "server.json"


def _healthy(info: ServerInfo, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"http://{info.host}:{info.port}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def running_server(home: Path) -> ServerInfo | None:
    try:
        data = json.loads(_state(home).read_text(encoding="utf-8"))
        info = ServerInfo(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    register_secret(info.api_key)
    if not process_alive(info.pid, info.pid_started_at) or not _healthy(info):
        return None
    return info


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_server(home: Path, *, device: str = "auto", python: str | None = None, timeout: float = 120.0) -> ServerInfo:
    """The running background server, started if needed (one per FINETUNE_HOME)."""
    home = Path(home)
    with file_lock(home / "serve" / "server.lock"):
        info = running_server(home)
        if info is not None:
            return info
        key = "sk-local-" + secrets.token_urlsafe(24)
        register_secret(key)
        port = _free_port()
        log = open(home / "serve" / "server.log", "ab")
        try:
            proc = subprocess.Popen([python or sys.executable, "-m", "finetune_sdk", "serve", "--host", "127.0.0.1",
                                     "--port", str(port), "--home", str(home), "--device", device],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True,
                                    env={**os.environ, "FINETUNE_SERVE_API_KEY": key, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        info = ServerInfo(pid=proc.pid, pid_started_at=process_started_at(proc.pid), host="127.0.0.1", port=port,
                          api_key=key)
        state = _state(home)
        fd = os.open(state.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info.__dict__, f)
        os.replace(state.with_suffix(".tmp"), state)
        deadline = time.monotonic() + timeout
        while not _healthy(info, timeout=1.0):
            if proc.poll() is not None:
                tail = (home / "serve" / "server.log").read_text(errors="replace").splitlines()[-15:]
                raise ProviderError("The local inference server failed to start:\n" + "\n".join(tail),
                                    provider="local")
            if time.monotonic() > deadline:
                raise ProviderError(f"The local inference server did not answer within {timeout:g} s; see "
                                    f"{home / 'serve' / 'server.log'}.", provider="local")
            time.sleep(0.2)
        return info


def stop_server(home: Path, *, grace: float = 10.0) -> bool:
    """Shut the background server down cleanly (then forcibly). True if one was running."""
    state = _state(Path(home))
    try:
        info = ServerInfo(**json.loads(state.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, TypeError):
        return False
    alive = process_alive(info.pid, info.pid_started_at)
    if alive:
        os.killpg(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process_alive(info.pid, info.pid_started_at) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(info.pid, info.pid_started_at):
            os.killpg(info.pid, signal.SIGKILL)
    state.unlink(missing_ok=True)
    return alive
