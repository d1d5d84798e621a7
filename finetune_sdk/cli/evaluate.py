"""``finetune evaluate``: is the new model as good as the old one?"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import EXIT_OK, EXIT_PROBLEM, ExistingFile, app, fail, out
from .jobs import ConfigOpt


@app.command()
def evaluate(
    data: Path = ExistingFile,
    model: list[str] = typer.Option(..., "--model", "-m", metavar="MODEL[@PROFILE]",
                                    help="A candidate; repeat for more. The first is the reference."),
    few_shot: int = typer.Option(0, "--few-shot", min=0, max=50,
                                 help="Also try each base model with K examples of --shots in its prompt."),
    shots: Path | None = typer.Option(None, "--shots", exists=True, dir_okay=False,
                                      help="Where few-shot examples come from (never the evaluated file)."),
    scorer: list[str] = typer.Option(["exact"], "--scorer", "-s",
                                     help="exact | json | contains | similarity | python:module:function | "
                                          "judge:MODEL[@PROFILE]; repeat for several."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=256, help="Requests in flight."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate the first N examples only."),
    answers: Path | None = typer.Option(None, "--answers", dir_okay=False,
                                        help="Write every answer here (JSONL) as it arrives."),
    capture: Path | None = typer.Option(None, "--capture", dir_okay=False,
                                        help="Write the first candidate's answers as a golden set (JSONL)."),
    html: Path | None = typer.Option(None, "--html", dir_okay=False, help="Write a self-contained HTML report."),
    config: Path | None = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (stable shape: docs/cli.md)."),
) -> None:
    """Answer held-out examples with every candidate and compare them: scores with 95% intervals,
    tokens and cost per request, latency, failures."""
    from ..evaluation import evaluate as run

    if few_shot and shots is None:
        fail("--few-shot needs --shots FILE (few-shot examples never come from the evaluated data)")
    report = run(data, model, config=config, few_shot=few_shot, shots=shots, scorers=scorer,
                 concurrency=concurrency, max_tokens=max_tokens, answers=answers, capture=capture,
                 progress=None if not as_json else False, limit=limit)
    if html is not None:
        report.write_html(html)
    if as_json:
        print(json.dumps(report.to_json_dict()))
    else:
        out.print(f"{len(report.examples)} examples, {len(report.candidates)} candidates "
                  f"(95% bootstrap intervals; differences are paired, against the first)", markup=False)
        out.print(report.summary(), markup=False)
        if html is not None:
            out.print(f"report: {html}", markup=False)
        if capture is not None:
            out.print(f"golden set: {capture}", markup=False)
    failed = sum(c.failures for c in report.candidates)
    raise typer.Exit(EXIT_PROBLEM if failed == len(report.candidates) * len(report.examples) else EXIT_OK)
