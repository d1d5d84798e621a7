"""Server-side commands: the emulator and the demo."""

from __future__ import annotations

from typing import Optional

import typer

from . import EXIT_OK, EXIT_PROBLEM, app, fail, out
from .data import _print_report


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free port)."),
    dialect: str = typer.Option("both", "--dialect", help="openai | azure | both"),
    speed: float = typer.Option(1.0, "--speed", min=0.0, help="Simulated seconds per real second (0: frozen)."),
    faults: Optional[str] = typer.Option(None, "--faults", help="Fault spec, e.g. 'POST /v1/fine_tuning/jobs: 429@0.3'"),
    api_key: str = typer.Option("sk-emulator-key", "--api-key", help="The key clients must send."),
    seed: int = typer.Option(0, "--seed", help="Seeds ids, metrics and fault draws."),
) -> None:
    """Run the OpenAI / Azure OpenAI fine-tuning emulator until interrupted."""
    import time

    if dialect not in ("openai", "azure", "both"):
        fail(f"--dialect must be openai, azure or both, not {dialect!r}")
    try:
        from ..testing import Emulator
    except ImportError as exc:
        fail(f"the emulator needs the serve extra: pip install 'finetune-sdk[serve]' ({exc})")
    try:
        emu = Emulator(dialect=dialect, speed=speed, faults=faults, api_key=api_key, host=host, port=port,  # type: ignore[arg-type]
                       seed=seed).start()
    except ValueError as exc:
        fail(f"invalid --faults: {exc}")
    except RuntimeError as exc:
        fail(str(exc), EXIT_PROBLEM)
    lines = [f"finetune emulator on {emu.base_url} (speed {speed}x)"]
    if emu.openai is not None:
        lines.append(f"  OpenAI:  OpenAI(base_url=\"{emu.openai_base_url}\", api_key=\"{api_key}\")")
    if emu.azure is not None:
        lines.append(f"  Azure:   AzureOpenAI(azure_endpoint=\"{emu.azure_endpoint}\", api_key=\"{api_key}\", "
                     f"api_version=\"2025-04-01-preview\")  # Entra token: {emu.azure_token}")
        lines.append(f"  ARM:     {emu.arm_endpoint}/subscriptions/...  (Authorization: Bearer {emu.arm_token})")
    lines.append(f"  control: POST {emu.base_url}/_emulator/clock {{\"advance\": 60}}; PUT /_emulator/faults")
    out.print("\n".join(lines), markup=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
        out.print("emulator stopped", markup=False)


@app.command()
def demo() -> None:
    """The whole journey on the embedded default model, on this machine."""
    from ..datasets import path as dataset_path

    train = dataset_path("contacts", "train")
    out.print(f"Bundled dataset: {train}", markup=False)
    from ..data import validate as run

    report = run(train, model=None, validation_file=dataset_path("contacts", "validation"))
    _print_report(report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)


