"""The emulator of the OpenAI and Azure OpenAI fine-tuning services, on a loopback port.

A product feature (``finetune emulator``) and a test helper: exercise a fine-tuning
pipeline with the official ``openai`` client — over real HTTP, offline,
deterministically, with faults on demand::

    from finetune_sdk.testing import emulator      # re-exported from here

    with emulator(speed=100) as emu:
        client = openai.OpenAI(base_url=emu.openai_base_url, api_key=emu.api_key)
        ...
        emu.clock.advance(600)          # ten simulated minutes pass
        emu.set_faults("POST /v1/fine_tuning/jobs: 429@0.5")

Or, with pytest, add ``pytest_plugins = ["finetune_sdk.testing"]`` to ``conftest.py`` and
take the ``finetune_emulator`` fixture. Requires the ``serve`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..providers.simulated import SimClock, SimTimings, SimulatedProvider, SimulatedSettings
from .app import ServerConfig, create_app
from .faults import FaultPlan

__all__ = ["Emulator", "emulator", "StaticTokenCredential", "ThreadedServer", "free_port", "DIALECTS",
           "parse_dialects", "DEFAULT_BASE_MODELS"]

#: A base model each dialect fine-tunes, for the profiles the emulator prints.
DEFAULT_BASE_MODELS = {"openai": "gpt-4o-mini-2024-07-18", "azure": "gpt-4o-mini-2024-07-18",
                       "together": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
                       "fireworks": "accounts/fireworks/models/qwen3-8b"}


class StaticTokenCredential:
    """An azure-identity ``TokenCredential`` for tests: a fixed token per scope.

    ``StaticTokenCredential({"https://management.azure.com/.default": "arm", "*": "data"})``
    """

    def __init__(self, tokens: dict[str, str] | str) -> None:
        self.tokens = {"*": tokens} if isinstance(tokens, str) else dict(tokens)
        self.calls: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.calls.append(scopes)
        token = next((self.tokens[s] for s in scopes if s in self.tokens), self.tokens.get("*"))
        if token is None:
            raise RuntimeError(f"no test token for scopes {scopes}")
        return AccessToken(token, int(time.time()) + 3600)


class _QuietInjectedFaults(logging.Filter):
    """uvicorn logs each connection our 'drop'/'lost' faults cut on purpose; those are not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietInjectedFaults())

class ThreadedServer:
    """Any ASGI application served by uvicorn in a background thread (port 0: a free one)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        import uvicorn

        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="error", lifespan="off",
                                access_log=False, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="finetune-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"The server failed to start on {self.host}:{self.port}.")
            if time.monotonic() > deadline:
                raise RuntimeError("The server did not start in time.")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


#: Every dialect the emulator speaks, in the order it reports them.
DIALECTS = ("openai", "azure", "together", "fireworks")


def parse_dialects(spec: str | Iterable[str]) -> list[str]:
    """``"both"`` (OpenAI and Azure), ``"all"``, one name, or a comma list / iterable of names."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    out: list[str] = []
    for name in names:
        expanded = {"both": ["openai", "azure"], "all": list(DIALECTS)}.get(name, [name])
        for n in expanded:
            if n not in DIALECTS:
                raise ValueError(f"unknown dialect {n!r}; use {', '.join(DIALECTS)}, both or all "
                                 f"(or a comma list)")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("no dialect given")
    return out


class Emulator:
    """The emulator running in a background thread on a loopback port.

    ``dialect``: ``"both"`` (OpenAI and Azure, the default), ``"all"``, one of
    ``openai, azure, together, fireworks``, or a comma list. Each dialect has its own
    simulated backend (``emu.backends[name]``; ``emu.openai`` etc. for short), all on one clock.
    """

    def __init__(self, *, dialect: str | Iterable[str] = "both", speed: float = 60.0,
                 api_key: str = "sk-emulator-key", azure_token: str = "emulator-entra-token",
                 arm_token: str = "emulator-arm-token", account_id: str = "emulator",
                 faults: FaultPlan | str | None = None, timings: SimTimings | None = None, seed: int = 0,
                 host: str = "127.0.0.1", port: int = 0, azure_require_training_type: bool = True,
                 max_json_bytes: int = 8 * 1024 * 1024, max_upload_bytes: int = 600 * 1024 * 1024) -> None:
        names = parse_dialects(dialect)
        self.clock = SimClock(speed)
        self.timings = timings or SimTimings()
        self.api_key, self.azure_token, self.arm_token = api_key, azure_token, arm_token
        self.account_id = account_id
        self.host = host
        self._port = port
        self.backends: dict[str, SimulatedProvider] = {
            name: SimulatedProvider(SimulatedSettings(flavor=name, seed=seed + DIALECTS.index(name),
                                                      account=account_id),
                                    clock=self.clock, timings=self.timings) for name in names}
        plan = FaultPlan.parse(faults, seed=seed) if isinstance(faults, str) else faults
        self.config = ServerConfig(api_key=api_key, azure_tokens=(azure_token,), arm_token=arm_token, faults=plan,
                                   admin=True, azure_require_training_type=azure_require_training_type,
                                   max_json_bytes=max_json_bytes, max_upload_bytes=max_upload_bytes,
                                   extra={"account_id": account_id})
        self.app = create_app(openai=self.backends.get("openai"), azure=self.backends.get("azure"),
                              dialects={n: p for n, p in self.backends.items() if n not in ("openai", "azure")},
                              config=self.config)
        self._server: ThreadedServer | None = None

    @property
    def openai(self) -> SimulatedProvider | None:
        return self.backends.get("openai")

    @property
    def azure(self) -> SimulatedProvider | None:
        return self.backends.get("azure")

    @property
    def together(self) -> SimulatedProvider | None:
        return self.backends.get("together")

    @property
    def fireworks(self) -> SimulatedProvider | None:
        return self.backends.get("fireworks")

    @property
    def dialects(self) -> list[str]:
        return list(self.backends)

    # -- lifecycle
    def start(self, timeout: float = 10.0) -> Emulator:
        self._server = ThreadedServer(self.app, host=self.host, port=self._port).start(timeout)
        self._port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        for backend in self.app.state.backends.values():
            uploads = getattr(backend, "uploads", None)
            if uploads is not None:
                uploads.close()
        for provider in self.backends.values():
            provider.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- where it is
    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        """For ``openai.OpenAI(base_url=...)``."""
        return f"{self.base_url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """For ``openai.AzureOpenAI(azure_endpoint=...)``."""
        return self.base_url

    @property
    def arm_endpoint(self) -> str:
        """Stands in for https://management.azure.com."""
        return self.base_url

    @property
    def together_base_url(self) -> str:
        """Stands in for https://api.together.xyz/v1: the ``base_url`` of finetune-sdk's together
        provider. (Together's own SDK puts ``/v1`` in its paths: see :meth:`together_client`.)"""
        return f"{self.base_url}/together/v1"

    @property
    def fireworks_base_url(self) -> str:
        """For ``fireworks.Fireworks(base_url=...)``; stands in for https://api.fireworks.ai."""
        return f"{self.base_url}/fireworks"

    # -- controls
    def set_faults(self, spec: FaultPlan | str | list[dict[str, Any]] | None, *, seed: int = 0) -> FaultPlan | None:
        """Replace the fault plan (None clears it). Returns the plan, whose counters tests can read."""
        plan = spec if isinstance(spec, FaultPlan) or spec is None else FaultPlan.parse(spec, seed=seed)
        self.config.faults = plan
        return plan

    def openai_client(self, **kwargs: Any) -> Any:
        import openai

        return openai.OpenAI(base_url=self.openai_base_url, api_key=self.api_key, **kwargs)

    def together_client(self, **kwargs: Any) -> Any:
        """Together's official client (``together.Together``) pointed at this emulator."""
        import together

        return together.Together(api_key=self.api_key, base_url=f"{self.base_url}/together", **kwargs)

    def credential(self) -> StaticTokenCredential:
        """A TokenCredential giving this emulator's Entra token and ARM token."""
        return StaticTokenCredential({"https://management.azure.com/.default": self.arm_token, "*": self.azure_token})

    def client_settings(self, provider: str) -> dict[str, Any]:
        """Keyword arguments for ``FineTuneClient(provider, **...)`` pointing at this emulator."""
        if provider == "openai":
            return {"api_key": self.api_key, "base_url": self.openai_base_url}
        if provider == "azure":
            return {"endpoint": self.azure_endpoint, "api_key": self.api_key, "subscription_id": "sub-emulator",
                    "resource_group": "rg-emulator", "account": "acct-emulator", "arm_endpoint": self.arm_endpoint}
        if provider == "together":
            return {"api_key": self.api_key, "base_url": self.together_base_url}
        if provider == "fireworks":
            return {"api_key": self.api_key, "base_url": self.fireworks_base_url, "account_id": self.account_id}
        raise ValueError(f"the emulator speaks {', '.join(DIALECTS)}, not {provider!r}")

    #: Secret settings per provider, and the environment variable each is read from.
    _SECRETS = {"openai": {"api_key": "OPENAI_API_KEY"},
                "azure": {"api_key": "AZURE_OPENAI_API_KEY", "arm_token": "AZURE_ARM_TOKEN"},
                "together": {"api_key": "TOGETHER_API_KEY"}, "fireworks": {"api_key": "FIREWORKS_API_KEY"}}

    def profile(self, provider: str, *, name: str | None = None,
                base_model: str | None = None) -> tuple[str, dict[str, str]]:
        """A ready-to-paste ``finetune.toml`` profile pointing at this emulator, and the
        environment variables that carry its secrets (never written to the file)."""
        values = {k: v for k, v in self.client_settings(provider).items() if k not in self._SECRETS[provider]}
        if provider == "azure":
            values["api_version"] = "2025-04-01-preview"
        lines = [f"[profiles.{name or 'emulator-' + provider}]", f'provider = "{provider}"']
        lines += [f'{key} = "{value}"' for key, value in values.items()]
        lines.append(f'base_model = "{base_model or DEFAULT_BASE_MODELS[provider]}"')
        secrets = {"api_key": self.api_key, "arm_token": self.arm_token}
        env = {var: secrets[key] for key, var in self._SECRETS[provider].items()}
        return "\n".join(lines) + "\n", env

    def azure_client(self, api_version: str = "2025-04-01-preview", **kwargs: Any) -> Any:
        import openai

        # AzureOpenAI takes exactly one of these; default to the key only when none is given.
        if not any(kwargs.get(k) is not None for k in ("api_key", "azure_ad_token", "azure_ad_token_provider")):
            kwargs["api_key"] = self.api_key
        return openai.AzureOpenAI(azure_endpoint=self.azure_endpoint, api_version=api_version, **kwargs)


@contextlib.contextmanager
def emulator(**kwargs: Any) -> Iterator[Emulator]:
    """Start an :class:`Emulator` on a free loopback port for the duration of a ``with`` block."""
    emu = Emulator(**kwargs).start()
    try:
        yield emu
    finally:
        emu.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
