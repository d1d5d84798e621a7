"""The server over the local backend: ``python -m finetune_sdk.server.local [options]``.

OpenAI-compatible chat over local base models and fine-tunes, plus the fine-tuning API
over the local trainer, in the foreground until interrupted. ``finetune serve`` is this
module behind the CLI's option parsing, and the background server that
``client.deployments.create`` starts for a ``FINETUNE_HOME`` is this module run in a
process of its own — so the local provider starts its server without the CLI.

Options: ``--model ID`` (repeatable; preload an alias, fine-tuned model id or job id, or
serve a base model directory), ``--host`` (default 127.0.0.1), ``--port`` (default 8000),
``--api-key`` (default: the ``FINETUNE_SERVE_API_KEY`` environment variable, which is how a
key should be passed: a command line is visible to every user of the machine), ``--home``,
``--device`` and ``--max-batch``. Exit status 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["API_KEY_ENV", "ServeError", "build_app", "main", "serve"]

#: The environment variable that carries the API key (the background server gets its key here).
API_KEY_ENV = "FINETUNE_SERVE_API_KEY"

_MAX_JSON_BYTES = 2 * 1024 * 1024
_EXTRAS_HINT = "serving needs the local and serve extras: pip install 'finetune-sdk[local,serve]'"


class ServeError(ValueError):
    """The server cannot start as configured; the message says how to fix it."""


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(*, models: Sequence[str] = (), api_key: str | None = None, home: str | os.PathLike[str] | None = None,
              device: str = "auto", max_batch: int = 16, say: Callable[[str], None] = print) -> Any:
    """The ASGI app over ``LocalProvider`` + ``ModelHost`` for ``home`` (default: FINETUNE_HOME).

    ``models`` are preloaded: each is served as a model the host already knows (alias,
    fine-tuned model id, job id), else added as a base model the operator chose. ``say``
    receives one line per model.
    """
    from ..config import finetune_home
    from ..providers.local.provider import LocalProvider, LocalSettings
    from ..providers.local.serving.host import ModelHost
    from .app import ServerConfig, create_app

    state = Path(home).expanduser() if home else finetune_home()
    host = ModelHost(state, device=device, max_batch=max_batch)
    for name in models:
        try:
            host.resolve(name)
            say(f"loaded {name}")
        except Exception:
            say(f"serving base model {host.add_base(name)} ({name})")
    provider = LocalProvider(LocalSettings(home=str(state)), host=host)
    return create_app(openai=provider, config=ServerConfig(api_key=api_key, max_json_bytes=_MAX_JSON_BYTES))


def serve(*, models: Sequence[str] = (), host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          home: str | os.PathLike[str] | None = None, device: str = "auto", max_batch: int = 16,
          say: Callable[[str], None] = print) -> None:
    """Serve until interrupted. Raises :class:`ServeError` for a configuration that must not start."""
    if not _is_loopback(host) and not api_key:
        raise ServeError(f"refusing to listen on {host} without --api-key: anyone who can reach it could use your "
                         f"models and start jobs. Pass --api-key (or {API_KEY_ENV}), or keep the default 127.0.0.1.")
    try:
        import uvicorn
    except ImportError as exc:
        raise ServeError(f"{_EXTRAS_HINT} ({exc})") from None
    app = build_app(models=models, api_key=api_key, home=home, device=device, max_batch=max_batch, say=say)
    base = f"http://{host}:{port}/v1"
    say(f"finetune serve on {base}  (models: GET {base}/models; health: http://{host}:{port}/health)\n"
        f"  OpenAI(base_url=\"{base}\", api_key=\"{'<your key>' if api_key else 'unused'}\")")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in the range {low}..{high}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finetune_sdk.server.local",
                                description="Serve local fine-tunes (and the fine-tuning API) with the OpenAI wire "
                                            "format, in the foreground.")
    p.add_argument("--model", "-m", action="append", default=[], metavar="ID",
                   help="Preload a model: an alias, a fine-tuned model id, a job id, or a base model directory.")
    p.add_argument("--host", default="127.0.0.1", help="Interface to bind (loopback by default).")
    p.add_argument("--port", type=_bounded(0, 65535), default=8000)
    p.add_argument("--api-key", default=None, help=f"Require this key (default: ${API_KEY_ENV}).")
    p.add_argument("--home", default=None, help="State directory (default: FINETUNE_HOME).")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    p.add_argument("--max-batch", type=_bounded(1, 256), default=16, help="Requests decoded together.")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        serve(models=args.model, host=args.host, port=args.port, api_key=api_key, home=args.home,
              device=args.device, max_batch=args.max_batch, say=lambda line: print(line, flush=True))
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
