"""The background inference server of a ``FINETUNE_HOME``: start it, find it, stop it.

``client.deployments.create(job)`` needs a server to chat with; :func:`ensure_server`
starts one (``python -m finetune_sdk.server.local``, the module behind ``finetune serve``;
a provider never goes through the CLI) in its own session on a free loopback port with a
random API key, passed through the environment (never the command line, which other users
can read). Its pid, port and key are kept in ``FINETUNE_HOME/serve/server.json`` (mode 0600);
there is at most one per home, guarded by a file lock.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ...._filelock import file_lock
from ...._secrets import register_secret
from ....errors import ProviderError
from ..jobs.store import process_alive, process_started_at

__all__ = ["SERVER_MODULE", "ServerInfo", "ensure_server", "running_server", "stop_server"]

#: What runs as the background server. Named, not imported: importing the server package
#: would load fastapi into every client process.
SERVER_MODULE = "finetune_sdk.server.local"
#: Where that module reads its API key (its API_KEY_ENV).
API_KEY_ENV = "FINETUNE_SERVE_API_KEY"


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
            proc = subprocess.Popen([python or sys.executable, "-m", SERVER_MODULE, "--host", "127.0.0.1",
                                     "--port", str(port), "--home", str(home), "--device", device],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True,
                                    env={**os.environ, API_KEY_ENV: key, "PYTHONUNBUFFERED": "1"})
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
