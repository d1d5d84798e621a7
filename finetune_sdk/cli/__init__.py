"""The ``finetune`` command line.

Exit codes (stable): 0 success; 1 the command ran and found a problem (dataset errors,
a failed job); 2 usage or configuration error; 130 interrupted. ``--json`` output is a
stable, documented shape (docs/cli.md).

Commands live in submodules by theme: data.py (validate, estimate, convert, split),
jobs.py (train, jobs, deploy, chat), resources.py (deployments, models, files),
serve.py (emulator, demo, ...).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..errors import ConfigurationError, FineTuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Fine-tune chat LLMs on OpenAI, Azure OpenAI or your own hardware.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
ExistingFile = typer.Argument(..., exists=True, dir_okay=False, readable=True, resolve_path=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"finetune-sdk {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """finetune: validate datasets, train, follow, deploy and chat — on any provider."""


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", markup=True)
    raise typer.Exit(code)




def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    try:
        return app(args=argv, prog_name="finetune")
    except ConfigurationError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_USAGE)
    except FineTuneError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_PROBLEM)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)


from . import data, evaluate, jobs, migrate, resources, serve  # noqa: E402,F401  (registers the commands)
