"""``finetune migrate``: carry a fine-tune to another provider."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..client import FineTuneClient
from . import app, out
from .jobs import ConfigOpt, JsonOpt, _finish, _print_job, job_json, parse_assignments


@app.command()
def migrate(
    job_id: str = typer.Argument(..., help="The job to carry over (its files are downloaded from the source)."),
    source: str = typer.Option(..., "--from", help="Profile of the job's provider."),
    target: str = typer.Option(..., "--to", help="Profile of the new home."),
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="The target's base model, when it does not have the source's."),
    training_file: Path | None = typer.Option(None, "--training-file", exists=True, dir_okay=False,
                                              help="Use this file when the source's training file is gone."),
    validation_file: Path | None = typer.Option(None, "--validation-file", exists=True, dir_okay=False),
    overrides: list[str] = typer.Option([], "--hyperparameter", "-H", metavar="KEY=VALUE",
                                        help="Set a hyperparameter on the new job (e.g. -H learning_rate=1e-5); "
                                             "KEY=null leaves the source's out."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    strict: bool = typer.Option(False, "--strict", help="Refuse if any hyperparameter cannot be carried."),
    again: bool = typer.Option(False, "--again", help="A new job even if this migration already made one."),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Wait for the new job to finish."),
    config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Carry a fine-tune to another provider: same data, mapped model and hyperparameters, lineage kept."""
    src = FineTuneClient.from_config(source, config=config)
    dst = FineTuneClient.from_config(target, config=config)
    result = src.jobs.migrate(job_id, to=dst, model=model, training_file=training_file,
                              validation_file=validation_file, hyperparameters=parse_assignments(overrides),
                              dry_run=dry_run, strict=strict, again=again)
    plan = result.plan
    if as_json and (dry_run or not wait):
        print(json.dumps({"source": job_json(plan.source), "plan": plan.to_json(),
                          "job": job_json(result.job) if result.job else None}))
        return
    if not as_json:
        doc = plan.to_json()
        out.print(f"{'plan' if dry_run else 'migrating'} {job_id} ({plan.source_provider}, {plan.source.model}) -> "
                  f"{plan.target_provider} ({target}), model {plan.model} ({plan.model_source})", markup=False)
        out.print(f"  data: {doc['files']['examples']} training examples"
                  + (f", {doc['files']['validation_examples']} validation" if plan.validation_file else "")
                  + f" ({plan.training_file})", markup=False)
        out.print("  hyperparameters: " + (", ".join(f"{k}={v}" for k, v in plan.target_hyperparameters.items())
                                           or "the target's defaults"), markup=False)
        for name, why in plan.refused.items():
            value = plan.source.hyperparameters.get(name, getattr(plan.source, name, None))
            out.print(f"  not carried: {name} = {value!r} ({why})", markup=False)
        est = plan.report.estimate
        if est is not None:
            cost = f"{est.cost:.2f} {est.currency}" if est.cost is not None else "unknown"
            out.print(f"  estimate: {est.billed_tokens:,} billed tokens ({est.n_epochs} epochs), cost {cost}",
                      markup=False)
        for note in plan.notes:
            out.print(f"  note: {note}", markup=False)
        if result.job is not None:
            out.print(f"created {result.job.id} on {plan.target_provider} ({result.job.status.value}); lineage "
                      f"{plan.lineage}", markup=False)
    if result.job is not None and wait:
        _finish(dst, result.job.id, None, as_json)
    elif result.job is not None and not as_json:
        _print_job(result.job)
