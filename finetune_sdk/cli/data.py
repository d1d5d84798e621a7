"""Dataset commands: validate, estimate, convert, split."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer

from ..errors import FineTuneError
from ..types import DatasetReport, Estimate, Issue
from . import EXIT_OK, EXIT_PROBLEM, ExistingFile, app, err, fail, out

_SHOWN_ISSUES = 10


def _progress() -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A byte-progress callback drawing a bar on stderr when it is a terminal."""
    if not err.is_terminal:
        return None, lambda: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TimeRemainingColumn(), console=err, transient=True)
    task = bar.add_task("validating", total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update, bar.stop


def _fmt(n: float | None, digits: int = 0) -> str:
    if n is None:
        return "—"
    return f"{n:,.{digits}f}"


def _print_issues(title: str, issues: list[Issue], counts: dict[str, int], style: str) -> None:
    if not counts:
        return
    total = sum(counts.values())
    by_code = ", ".join(f"{code} ×{n:,}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    out.print(f"[{style}]{title} ({total:,}):[/{style}] {by_code}", markup=True)
    for issue in issues[:_SHOWN_ISSUES]:
        where = f"line {issue.line}" if issue.line is not None else "file"
        path = f" {issue.path}" if issue.path else ""
        out.print(f"  {where}{path}  [{issue.code}]  {issue.message}", markup=False)
    if total > _SHOWN_ISSUES:
        out.print(f"  … and {total - min(len(issues), _SHOWN_ISSUES):,} more (use --json for the full list)")


def _print_estimate(est: Estimate) -> None:
    cost = (f"≈ {est.cost:,.2f} {est.currency} at {est.price_per_million_tokens:,.2f}/1M tokens "
            f"({est.price_source}, as of {est.price_as_of})" if est.cost is not None else "cost unknown")
    out.print(f"Estimate: {est.n_epochs} epoch(s) ({est.epochs_source}) × {est.tokens_per_epoch:,} tokens = "
              f"{est.billed_tokens:,} billed tokens; {cost}", markup=False)
    for note in est.notes:
        out.print(f"  note: {note}", markup=False)


def _print_report(report: DatasetReport, label: str = "") -> None:
    mark = "[green]✔ valid[/green]" if report.valid else "[red]✘ invalid[/red]"
    out.print(f"{mark} {label}{report.path}: {report.examples:,} examples ({report.format or 'unknown format'}), "
              f"{report.error_count:,} errors, {report.warning_count:,} warnings", markup=True)
    _print_issues("Errors", report.errors, report.error_counts, "red")
    _print_issues("Warnings", report.warnings, report.warning_counts, "yellow")
    t = report.tokens
    if t is not None:
        exact = "exact" if t.exact else "ESTIMATED"
        d, a = t.per_example, t.assistant_per_example
        out.print(f"Tokens ({t.encoding}, {exact}): per example min {_fmt(d.min)} · mean {_fmt(d.mean)} · median "
                  f"{_fmt(d.median)} · p90 {_fmt(d.p90)} · max {_fmt(d.max)}; total {t.total_tokens:,}; "
                  f"trained assistant tokens {t.assistant_tokens:,} (median {_fmt(a.median)}/example)", markup=False)
        if t.context_limit:
            out.print(f"  {t.over_limit:,} example(s) over the {t.context_limit:,}-token training limit", markup=False)
    if report.estimate is not None:
        _print_estimate(report.estimate)
    for note in report.notes:
        out.print(f"note: {note}", markup=False)
    out.print(f"({report.elapsed_seconds:.2f} s)", style="dim")


@app.command()
def validate(
    file: Path = ExistingFile,
    model: str | None = typer.Option(None, "--model", "-m", help="Base model (sets tokenizer, limits, price)."),
    method: str | None = typer.Option(None, "--method", help="supervised | dpo | reinforcement"),
    validation: Path | None = typer.Option(None, "--validation", exists=True, dir_okay=False,
                                              help="Validation file: validated too, and checked for overlap."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs for the estimate (default: auto)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes for large files."),
    max_issues: int = typer.Option(1000, "--max-issues", min=1, help="Issues listed per severity."),
    provider: str | None = typer.Option(None, "--provider",
                                           help="Check by this provider's rules (e.g. local: no images)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Check a JSONL dataset before spending anything: every problem, with line and fix."""
    from .._datasets import validate as run
    from ..providers import get_provider_class

    if method is not None and method not in ("supervised", "dpo", "reinforcement"):
        fail(f"--method must be supervised, dpo or reinforcement, not {method!r}")
    rules = get_provider_class(provider).dataset_rules() if provider else {}
    update, stop = _progress() if not as_json else (None, lambda: None)
    try:
        report = run(file, model=model, method=method, validation_file=validation, n_epochs=epochs,
                     workers=workers, max_issues=max_issues, progress=update, **rules)
    finally:
        stop()
    if as_json:
        out.print_json(json.dumps(report.to_json_dict())) if out.is_terminal else \
            print(json.dumps(report.to_json_dict(), ensure_ascii=False))
    else:
        _print_report(report)
        if report.validation is not None:
            _print_report(report.validation, label="validation file ")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)


@app.command()
def estimate(
    file: Path = ExistingFile,
    model: str = typer.Option(..., "--model", "-m", help="The base model to price."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs (default: auto heuristic)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Count billing tokens and estimate the training cost."""
    from .._datasets import estimate as run

    try:
        est = run(file, model=model, n_epochs=epochs)
    except FineTuneError as exc:
        fail(str(exc), EXIT_PROBLEM)
    if as_json:
        print(json.dumps(est.model_dump(mode="json"), ensure_ascii=False))
    else:
        _print_estimate(est)


@app.command()
def convert(
    source: Path = ExistingFile,
    output: Path = typer.Argument(..., dir_okay=False, help="Where to write the chat JSONL."),
    from_format: str = typer.Option(..., "--from", help="alpaca | sharegpt | completion"),
    dedupe: bool = typer.Option(True, "--dedupe/--keep-duplicates", help="Drop exact duplicates."),
) -> None:
    """Convert alpaca, ShareGPT or prompt/completion JSONL into the chat format."""
    from ..data.convert import SOURCE_FORMATS
    from ..data.convert import convert as run

    if from_format not in SOURCE_FORMATS:
        fail(f"--from must be one of {', '.join(SOURCE_FORMATS)}, not {from_format!r}")
    try:
        result = run(source, output, from_format=from_format, dedupe=dedupe)  # type: ignore[arg-type]
    except ValueError as exc:
        fail(str(exc))
    out.print(f"wrote {result.written:,} examples to {result.output}; dropped {result.duplicates:,} duplicates; "
              f"skipped {result.skipped_count:,} lines", markup=False)
    for issue in result.skipped[:_SHOWN_ISSUES]:
        out.print(f"  line {issue.line} {issue.path} [{issue.code}] {issue.message}", markup=False)
    if result.written == 0:
        fail("nothing was converted", EXIT_PROBLEM)


@app.command()
def split(
    file: Path = ExistingFile,
    validation_fraction: float = typer.Option(..., "--validation-fraction", help="Share for validation, e.g. 0.1."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same split."),
    train_out: Path | None = typer.Option(None, "--train-out", dir_okay=False),
    validation_out: Path | None = typer.Option(None, "--validation-out", dir_okay=False),
) -> None:
    """Split a JSONL file into de-duplicated training and validation files."""
    from ..data.convert import split as run

    try:
        r = run(file, validation_fraction=validation_fraction, seed=seed, train_output=train_out,
                validation_output=validation_out)
    except ValueError as exc:
        fail(str(exc))
    out.print(f"train: {r.train_examples:,} examples -> {r.train}\nvalidation: {r.validation_examples:,} examples -> "
              f"{r.validation}\nremoved {r.duplicates_removed:,} duplicates; skipped {r.skipped_lines:,} "
              f"unparseable lines", markup=False)


