"""Resource commands: deployments (list, delete), models (list, delete), files (list, upload, delete).

They are thin views over ``client.deployments``, ``client.models`` and ``client.files``:
a provider's errors reach ``main()``, which maps them to exit 1 (not found, unsupported,
provider errors) or 2 (configuration).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import FineTuneError
from ..types import Deployment, File, ModelInfo
from . import ExistingFile, app, err, out
from .jobs import ConfigOpt, JsonOpt, ProfileOpt, ProviderOpt, _client

deployments_app = typer.Typer(help="Deployments: the fine-tunes a provider serves under a name.",
                              no_args_is_help=True, rich_markup_mode=None)
models_app = typer.Typer(help="Models a provider can serve: base models and fine-tunes.", no_args_is_help=True,
                         rich_markup_mode=None)
files_app = typer.Typer(help="Files uploaded to a provider (training data, results).", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(deployments_app, name="deployments")
app.add_typer(models_app, name="models")
app.add_typer(files_app, name="files")


def _json(item: Deployment | File | ModelInfo) -> dict[str, Any]:
    # The provider's raw payload differs between providers; the documented shape must not.
    return item.model_dump(mode="json", exclude={"raw"})


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def _table(*columns: str) -> Table:
    table = Table(*columns)
    # An id cut to "ft:gpt-4o-mini-…" cannot be pasted into the next command: wrap it, never elide it.
    table.columns[0].overflow = "fold"
    return table


def _print_table(table: Table, empty: str, rows: int) -> None:
    if not rows:
        out.print(empty, markup=False)
    elif out.is_terminal:
        out.print(table)
    else:
        # Piped output feeds grep and scripts: one row per line, whatever width rich would guess (80).
        width = out.measure(table, options=out.options.update_width(100_000)).maximum
        Console(highlight=False, width=max(out.width, width)).print(table)


def _delete(what: str, ident: str, profile: str | None, provider: str | None, config: Path | None,
            as_json: bool) -> None:
    """Delete one deployment, model or file; a provider's error propagates to main() (exit 1)."""
    client = _client(profile, provider, config)
    {"deployment": client.deployments.delete, "model": client.models.delete, "file": client.files.delete}[what](ident)
    if as_json:
        print(json.dumps({"deleted": True, "id": ident}))
    else:
        out.print(f"deleted {what} {ident} on {client.provider.name}", markup=False)


@deployments_app.command("list")
def deployments_list(profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                     config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Deployments of one provider (OpenAI: every fine-tuned model, which it serves without deploying)."""
    deployments = _client(profile, provider, config).deployments.list()
    if as_json:
        print(json.dumps([_json(d) for d in deployments]))
        return
    table = _table("name", "model", "status", "ready", "base URL", "job")
    for d in deployments:
        status = d.status if not d.raw_status or d.raw_status == d.status else f"{d.status} ({d.raw_status})"
        table.add_row(d.name, d.model, status, "yes" if d.ready else "no", d.base_url or "", d.job_id or "")
    _print_table(table, "No deployments.", len(deployments))


@deployments_app.command("delete")
def deployments_delete(name: str = typer.Argument(..., help="The deployment's name."),
                       profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                       config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Delete a deployment (local: the background server stops with the last one)."""
    _delete("deployment", name, profile, provider, config, as_json)


@models_app.command("list")
def models_list(fine_tuned: bool = typer.Option(False, "--fine-tuned", help="Only fine-tuned models, with the job "
                                                                           "that made each."),
                profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Models a provider can serve: base models and fine-tunes. With --fine-tuned and no
    --profile/--provider: every profile of finetune.toml — the inventory of what to move."""
    from ..config import profile_names

    names: list[str | None] = [None]
    if fine_tuned and profile is None and provider is None:
        names = list(profile_names(config)) or [None]
    rows: list[tuple[str | None, ModelInfo, str | None]] = []
    for name in names:
        try:
            client = _client(name or profile, provider, config)
            models = [m for m in client.models.list() if m.fine_tuned or not fine_tuned]
            made_by = _jobs_by_model(client) if fine_tuned else {}
        except FineTuneError as exc:
            if len(names) == 1:
                raise
            err.print(f"warning: profile {name}: {exc}", markup=False)
            continue
        rows += [(name or (client.profile.name if client.profile else None), m, made_by.get(m.id)) for m in models]
    if as_json:
        print(json.dumps([{**_json(m), "profile": p, "job_id": j} for p, m, j in rows]))
        return
    table = _table("id", "profile", "owned by", "fine-tuned", "created", "job")
    for p, m, j in rows:
        table.add_row(m.id, p or "", m.owned_by, "yes" if m.fine_tuned else "no", _when(m.created_at), j or "")
    _print_table(table, "No fine-tuned models." if fine_tuned else "No models.", len(rows))


def _jobs_by_model(client: Any) -> dict[str, str]:
    """fine-tuned model -> the job that made it (the provider's recent jobs)."""
    try:
        return {j.fine_tuned_model: j.id for j in client.jobs.list(limit=100) if j.fine_tuned_model}
    except FineTuneError:  # e.g. a provider that cannot list jobs: the column stays empty
        return {}


@models_app.command("delete")
def models_delete(model: str = typer.Argument(..., help="The fine-tuned model's id."),
                  profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                  config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Delete a fine-tuned model (OpenAI; base models cannot be deleted)."""
    _delete("model", model, profile, provider, config, as_json)


@files_app.command("list")
def files_list(purpose: str | None = typer.Option(None, "--purpose", help="Only files of this purpose, "
                                                                              "e.g. fine-tune."),
               profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
               config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Files uploaded to the provider, oldest first."""
    files = _client(profile, provider, config).files.list(purpose=purpose)
    if as_json:
        print(json.dumps([_json(f) for f in files]))
        return
    table = _table("id", "filename", "bytes", "purpose", "status", "created")
    for f in files:
        table.add_row(f.id, f.filename, f"{f.bytes:,}", f.purpose, f.status, _when(f.created_at))
    _print_table(table, "No files.", len(files))


@files_app.command("upload")
def files_upload(path: Path = ExistingFile,
                 purpose: str = typer.Option("fine-tune", "--purpose", help="The file's purpose."),
                 profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                 config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Upload a file as it is (check a dataset first with `finetune validate`; `finetune train` does both)."""
    client = _client(profile, provider, config)
    f = client.files.upload(path, purpose=purpose)
    if as_json:
        print(json.dumps(_json(f)))
    else:
        out.print(f"uploaded {path} as {f.id} on {client.provider.name} ({f.bytes:,} bytes, {f.status})",
                  markup=False)


@files_app.command("delete")
def files_delete(file_id: str = typer.Argument(..., help="The file's id."),
                 profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                 config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Delete an uploaded file."""
    _delete("file", file_id, profile, provider, config, as_json)
