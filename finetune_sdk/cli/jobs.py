"""Job commands: train, jobs (list, show, events, wait, cancel, metrics), deploy, chat."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..client import FineTuneClient
from ..config import finetune_home
from ..errors import DatasetError, JobFailedError, WaitTimeout
from ..ledger import Ledger
from ..types import Job
from . import EXIT_PROBLEM, ExistingFile, app, err, fail, out

jobs_app = typer.Typer(help="Follow and manage fine-tuning jobs, across providers.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(jobs_app, name="jobs")

ProfileOpt = typer.Option(None, "--profile", "-p", help="Profile of finetune.toml.")
ProviderOpt = typer.Option(None, "--provider", help="Provider name, without a profile (openai, azure, local, ...).")
ConfigOpt = typer.Option(None, "--config", help="Config file (default: FINETUNE_CONFIG or ./finetune.toml).")
JsonOpt = typer.Option(False, "--json", help="Print JSON (stable shape, see docs/cli.md).")


def _client(profile: str | None, provider: str | None, config: Path | None,
            job_id: str | None = None) -> FineTuneClient:
    if profile is None and provider is None and job_id is not None:
        entry = Ledger(finetune_home() / "ledger.jsonl").find(job_id)
        if entry is not None:  # the ledger knows where this job lives
            profile, provider = entry.profile, None if entry.profile else entry.provider
    return FineTuneClient(provider, profile=profile, config=config)


def job_json(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json", exclude={"raw"})


def lineage_of(job: Job) -> str | None:
    """Where a migrated job came from: its metadata, else the ledger."""
    from ..migration import LINEAGE_KEY

    if job.metadata.get(LINEAGE_KEY):
        return job.metadata[LINEAGE_KEY]
    entry = Ledger(finetune_home() / "ledger.jsonl").find(job.id, provider=job.provider)
    return entry.migrated_from if entry else None


def _print_job(job: Job) -> None:
    out.print(f"{job.id}  {job.status.value} ({job.raw_status})  provider {job.provider}  model {job.model}",
              markup=False)
    lineage = lineage_of(job)
    if lineage:
        out.print(f"  migrated from: {lineage}", markup=False)
    if job.fine_tuned_model:
        out.print(f"  fine-tuned model: {job.fine_tuned_model}", markup=False)
    if job.error:
        out.print(f"  error: {job.error.code}: {job.error.message}", markup=False)
    if job.hyperparameters:
        out.print("  hyperparameters: " + ", ".join(f"{k}={v}" for k, v in job.hyperparameters.items()), markup=False)


def _finish(client: FineTuneClient, job_id: str, timeout: float | None, as_json: bool) -> None:
    try:
        job = client.jobs.wait(job_id, timeout=timeout, progress=None if not as_json else False)
    except JobFailedError as exc:
        if as_json:
            print(json.dumps(job_json(exc.job))) if exc.job else None
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_PROBLEM) from None
    except WaitTimeout as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_PROBLEM) from None
    if as_json:
        print(json.dumps(job_json(job)))
    else:
        _print_job(job)


def parse_assignments(items: list[str], option: str = "--hyperparameter") -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; a value is read as JSON (numbers, booleans, lists,
    ``null``) when it is JSON, else kept as text."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"{option} takes KEY=VALUE, not {item!r}")
        try:
            parsed[key.strip()] = json.loads(raw)
        except ValueError:
            parsed[key.strip()] = raw
    return parsed


@app.command()
def train(
    file: Path = ExistingFile,
    model: str | None = typer.Option(None, "--model", "-m", help="Base model (default: the profile's base_model)."),
    validation: Path | None = typer.Option(None, "--validation", exists=True, dir_okay=False),
    method: str = typer.Option("supervised", "--method", help="supervised | dpo | reinforcement"),
    epochs: int | None = typer.Option(None, "--epochs", min=1, max=50),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    learning_rate_multiplier: float | None = typer.Option(None, "--lr-multiplier", min=0.0),
    suffix: str | None = typer.Option(None, "--suffix"),
    seed: int | None = typer.Option(None, "--seed", min=0),
    extra: list[str] = typer.Option([], "--hyperparameter", "-H", metavar="KEY=VALUE",
                                    help="Any other hyperparameter, e.g. -H lora_rank=8 -H max_steps=100 (local)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the job to finish."),
    timeout: float | None = typer.Option(None, "--timeout", min=1.0, help="Seconds to wait."),
    profile: str | None = ProfileOpt, provider: str | None = ProviderOpt, config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Validate, upload and fine-tune: the whole job in one command."""
    if method not in ("supervised", "dpo", "reinforcement"):
        fail(f"--method must be supervised, dpo or reinforcement, not {method!r}")
    client = _client(profile, provider, config)
    hyper: dict[str, Any] = {k: v for k, v in {"n_epochs": epochs, "batch_size": batch_size,
                                               "learning_rate_multiplier": learning_rate_multiplier}.items()
                             if v is not None}
    hyper.update(parse_assignments(extra))
    try:
        job = client.jobs.create(model=model, training_file=file, validation_file=validation, method=method,
                                 hyperparameters=hyper, suffix=suffix, seed=seed)
    except DatasetError as exc:
        from .data import _print_report

        if exc.report is not None and not as_json:
            _print_report(exc.report)
        elif exc.report is not None:
            print(json.dumps(exc.report.to_json_dict()))
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_PROBLEM) from None
    except ValueError as exc:  # a value the provider cannot take (e.g. -H beta=0.7): a usage error
        fail(str(exc))
    if not as_json:
        err.print(f"created {job.id} on {client.provider.name} ({job.status.value})", markup=False)
    if not wait:
        print(json.dumps(job_json(job))) if as_json else _print_job(job)
        return
    _finish(client, job.id, timeout, as_json)


@jobs_app.command("list")
def jobs_list(
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
    profile: str | None = ProfileOpt, provider: str | None = ProviderOpt, config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Jobs of one provider, or (without --profile/--provider) every job this machine created."""
    if profile is None and provider is None:
        rows = Ledger(finetune_home() / "ledger.jsonl").to_rows()[:limit]
        if as_json:
            print(json.dumps(rows))
            return
        table = Table("job", "provider", "profile", "status", "model", "fine-tuned model", "created")
        for r in rows:
            table.add_row(r["job_id"], r["provider"], r["profile"] or "", r["status"] or "", r["model"] or "",
                          r["fine_tuned_model"] or "", (r["created_at"] or "")[:19])
        out.print(table)
        if not rows:
            out.print("No jobs recorded yet (they are recorded when created with finetune-sdk).", markup=False)
        return
    jobs = _client(profile, provider, config).jobs.list(limit=limit)
    if as_json:
        print(json.dumps([job_json(j) for j in jobs]))
        return
    table = Table("job", "status", "model", "fine-tuned model", "created")
    for j in jobs:
        table.add_row(j.id, j.status.value, j.model, j.fine_tuned_model or "", str(j.created_at or "")[:19])
    out.print(table)


@jobs_app.command("show")
def jobs_show(job_id: str, profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
              config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """One job's status, model and error."""
    job = _client(profile, provider, config, job_id).jobs.get(job_id)
    print(json.dumps({**job_json(job), "migrated_from": lineage_of(job)})) if as_json else _print_job(job)


@jobs_app.command("events")
def jobs_events(job_id: str, follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the job ends."),
                profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """A job's events, oldest first (--json: one JSON object per line)."""
    client = _client(profile, provider, config, job_id)
    events = client.jobs.follow(job_id) if follow else client.jobs.events(job_id)
    for e in events:
        if as_json:
            print(json.dumps(e.model_dump(mode="json")), flush=True)
        else:
            out.print(f"{e.created_at:%Y-%m-%d %H:%M:%S}  {e.level:<7}  {e.message}", markup=False)


@jobs_app.command("wait")
def jobs_wait(job_id: str, timeout: float | None = typer.Option(None, "--timeout", min=1.0),
              profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
              config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Wait for a job to end (exit 1 if it fails or the timeout passes)."""
    _finish(_client(profile, provider, config, job_id), job_id, timeout, as_json)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Cancel a job."""
    job = _client(profile, provider, config, job_id).jobs.cancel(job_id)
    print(json.dumps(job_json(job))) if as_json else _print_job(job)


@jobs_app.command("metrics")
def jobs_metrics(job_id: str, csv: bool = typer.Option(False, "--csv", help="Print CSV."),
                 profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
                 config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Training metrics per step (loss, token accuracy; validation when available)."""
    metrics = _client(profile, provider, config, job_id).jobs.metrics(job_id)
    if csv:
        sys.stdout.write(metrics.to_csv())
    elif as_json:
        print(json.dumps([p.model_dump(mode="json", exclude_none=True) for p in metrics]))
    else:
        table = Table("step", "train loss", "train acc", "valid loss", "valid acc")
        for p in metrics:
            table.add_row(str(p.step), *("" if v is None else f"{v:.4f}" for v in (
                p.train_loss, p.train_token_accuracy, p.valid_loss, p.valid_token_accuracy)))
        out.print(table)


@app.command()
def deploy(job_id: str, name: str | None = typer.Option(None, "--name", help="Deployment name."),
           sku: str | None = typer.Option(None, "--sku"), capacity: int | None = typer.Option(None, "--capacity"),
           profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
           config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Make a succeeded job's model callable."""
    client = _client(profile, provider, config, job_id)
    dep = client.deployments.create(job_id, name=name, sku=sku, capacity=capacity)
    if as_json:
        print(json.dumps(dep.model_dump(mode="json", exclude={"raw"})))
    else:
        out.print(f"deployed {dep.model} as {dep.name!r} on {dep.provider} ({dep.raw_status or dep.status})",
                  markup=False)
        out.print(f"chat with it: finetune chat {client.provider.chat_target(dep)} \"Hello\""
                  + (f" --profile {client.profile.name}" if client.profile and client.profile.name else
                     f" --provider {client.provider.name}"), markup=False)


@app.command()
def chat(model: str = typer.Argument(..., help="A deployment name, fine-tuned model id or base model."),
         message: str = typer.Argument(..., help="Your message."),
         system: str | None = typer.Option(None, "--system", help="A system message."),
         stream: bool = typer.Option(True, "--stream/--no-stream"),
         max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
         temperature: float | None = typer.Option(None, "--temperature", min=0.0, max=2.0),
         profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
         config: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Send one message to a model and print the reply."""
    client = _client(profile, provider, config)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]
    params: dict[str, Any] = {k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items()
                              if v is not None}
    if as_json or not stream:
        reply = client.chat(model, messages, **params)
        print(json.dumps(reply.model_dump(mode="json", exclude={"raw"}))) if as_json else print(reply.content)
        return
    for delta in client.chat(model, messages, stream=True, **params):
        sys.stdout.write(delta.content)
        sys.stdout.flush()
    sys.stdout.write("\n")




@app.command()
def export(job_id: str, format: str = typer.Option("adapter", "--format", help="adapter | merged | gguf"),
           out_dir: Path = typer.Option(..., "--out", help="An empty or new directory.", file_okay=False),
           gguf_type: str = typer.Option("f16", "--gguf-type", help="f16 | f32 | q8_0"),
           profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
           config: Path | None = ConfigOpt) -> None:
    """Write a local fine-tune for vLLM (adapter, merged) or llama.cpp / Ollama (gguf)."""
    if format not in ("adapter", "merged", "gguf"):
        fail(f"--format must be adapter, merged or gguf, not {format!r}")
    if gguf_type not in ("f16", "f32", "q8_0"):
        fail(f"--gguf-type must be f16, f32 or q8_0, not {gguf_type!r}")
    client = _client(profile, provider or ("local" if profile is None else None), config, job_id)
    options = {"gguf_type": gguf_type} if format == "gguf" else {}
    result = client.jobs.export(job_id, format=format, out=out_dir, **options)
    out.print(f"exported {job_id} as {result.format} to {result.path}", markup=False)
    for note in result.notes:
        out.print(f"  note: {note}", markup=False)
    for command in result.commands:
        out.print(f"  {command}", markup=False)


@app.command()
def push(job_id: str, repo_id: str, private: bool = typer.Option(False, "--private", help="Create it private."),
         merged: bool = typer.Option(False, "--merged", help="Upload the merged model instead of the adapter."),
         profile: str | None = ProfileOpt, provider: str | None = ProviderOpt,
         config: Path | None = ConfigOpt) -> None:
    """Publish a local fine-tune and its model card to the Hugging Face Hub (token: HF_TOKEN or hf auth login)."""
    client = _client(profile, provider or ("local" if profile is None else None), config, job_id)
    result = client.jobs.push_to_hub(job_id, repo_id, private=private, merged=merged)
    out.print(f"pushed {job_id} to {result.url} ({len(result.files)} files)", markup=False)
