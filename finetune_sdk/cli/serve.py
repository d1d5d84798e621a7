"""Server-side commands: the emulator and the demo."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from . import EXIT_OK, EXIT_PROBLEM, app, fail, out
from .data import _print_report


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free port)."),
    dialect: str = typer.Option("both", "--dialect", help="openai | azure | together | fireworks | both | all, "
                                                           "or a comma list"),
    speed: float = typer.Option(1.0, "--speed", min=0.0, help="Simulated seconds per real second (0: frozen)."),
    faults: str | None = typer.Option(None, "--faults", help="Fault spec, e.g. 'POST /v1/fine_tuning/jobs: 429@0.3'"),
    api_key: str = typer.Option("sk-emulator-key", "--api-key", help="The key clients must send."),
    seed: int = typer.Option(0, "--seed", help="Seeds ids, metrics and fault draws."),
) -> None:
    """Run the OpenAI / Azure OpenAI fine-tuning emulator until interrupted."""
    import time

    try:
        from ..server.emulator import Emulator, parse_dialects
    except ImportError as exc:
        fail(f"the emulator needs the serve extra: pip install 'finetune-sdk[serve]' ({exc})")
    try:
        names = parse_dialects(dialect)
    except ValueError as exc:
        fail(f"--dialect: {exc}")
    try:
        emu = Emulator(dialect=names, speed=speed, faults=faults, api_key=api_key, host=host, port=port,
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
    if emu.together is not None:
        lines.append(f"  Together:  Together(base_url=\"{emu.together_base_url}\", api_key=\"{api_key}\")")
    if emu.fireworks is not None:
        lines.append(f"  Fireworks: Fireworks(base_url=\"{emu.fireworks_base_url}\", api_key=\"{api_key}\", "
                     f"account_id=\"{emu.account_id}\")  # chat: {emu.fireworks_base_url}/inference/v1")
    lines.append(f"  control: POST {emu.base_url}/_emulator/clock {{\"advance\": 60}}; PUT /_emulator/faults")
    lines.append("\nProfiles for finetune.toml (then: finetune train FILE --profile emulator-openai):\n")
    exports: dict[str, str] = {}
    for provider in emu.dialects:
        toml, env = emu.profile(provider)
        lines.append(toml)
        exports.update(env)
    lines.append("# and, in the shell (secrets never go in the file):")
    lines.append("export " + " ".join(f"{k}={v}" for k, v in exports.items()))
    out.print("\n".join(lines), markup=False)
    sys.stdout.flush()  # a script reading these lines from a pipe gets them now
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
        out.print("emulator stopped", markup=False)


@app.command()
def serve(
    model: list[str] = typer.Option([], "--model", "-m", help="Preload a model: an alias, a fine-tuned model id, a job "
                                                              "id, or (operator only) a base model directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    api_key: str | None = typer.Option(None, "--api-key", envvar="FINETUNE_SERVE_API_KEY",
                                          help="Require this key (Authorization: Bearer ...)."),
    home: str | None = typer.Option(None, "--home", help="State directory (default: FINETUNE_HOME)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:1 ..."),
    max_batch: int = typer.Option(16, "--max-batch", min=1, max=256, help="Requests decoded together."),
) -> None:
    """Serve local fine-tunes (and the fine-tuning API) with the OpenAI wire format, in the foreground."""
    try:
        from ..server.local import ServeError
        from ..server.local import serve as run_server
    except ImportError as exc:
        fail(f"serving needs the local and serve extras: pip install 'finetune-sdk[local,serve]' ({exc})")
    try:
        run_server(models=model, host=host, port=port, api_key=api_key, home=Path(home) if home else None,
                   device=device, max_batch=max_batch, say=lambda line: out.print(line, markup=False))
    except ServeError as exc:
        fail(str(exc))


DEMO_DEPLOYMENT = "contacts-demo"
DEPLOYMENT_CANDIDATE = DEMO_DEPLOYMENT
BASE_CANDIDATE = "smollm2-135m-instruct"


@app.command()
def demo(
    quick: bool = typer.Option(False, "--quick", help="A reduced run (a few steps, a few examples) for CI."),
    examples: int = typer.Option(40, "--examples", min=1, max=60, help="Held-out examples to score."),
    epochs: int = typer.Option(1, "--epochs", min=1, max=10),
) -> None:
    """The whole journey on the embedded default model: validate, fine-tune (LoRA, on this machine), deploy, compare."""
    import time

    from ..client import FineTuneClient
    from ..data import validate as run_validation
    from ..providers import get_provider_class
    from ..datasets import path as dataset_path
    from ..evaluation import evaluate
    from ..waiting import PollSchedule

    started = time.monotonic()
    train, val, test = (dataset_path("contacts", s) for s in ("train", "validation", "test"))

    def phase(n: int, text: str) -> None:
        out.print(f"\n[bold]{n}/5 {text}[/bold]  ({time.monotonic() - started:.0f} s)", markup=True)

    out.print("finetune demo: teach SmolLM2-135M-Instruct (the embedded default model) to turn a sentence about a "
              "person into one compact JSON object, on this machine's CPU, then measure it against the base model.",
              markup=False)
    phase(1, "Validating the bundled dataset")
    report = run_validation(train, model="smollm2-135m-instruct", validation_file=val,
                            **get_provider_class("local").dataset_rules())
    _print_report(report)
    if not report.ok:
        fail("the bundled dataset did not validate", EXIT_PROBLEM)

    phase(2, "Fine-tuning with LoRA (a process of its own; Ctrl-C leaves it running)")
    client = FineTuneClient("local", poll=PollSchedule(initial=1.0, maximum=3.0, near_end=1.0))
    hyper = {"n_epochs": epochs, "batch_size": 8, "learning_rate_multiplier": 1.0, "max_length": 256,
             "eval_every": 10, "eval_max_examples": 40}
    if quick:
        hyper.update(max_steps=6, eval_every=3, eval_max_examples=8)
    job = client.jobs.create(training_file=train, validation_file=val, hyperparameters=hyper, suffix="contacts")
    out.print(f"job {job.id} ({job.status.value})", markup=False)
    train_started = None
    for event in client.jobs.follow(job.id):
        data = event.data
        if event.kind == "status" and data.get("status") == "running":
            train_started = time.monotonic()
        if event.kind == "metrics":
            step, total = int(data.get("step", 0)), data.get("total_steps")
            if step in (1, total) or step % 5 == 0 or "valid_loss" in data:
                valid = f"  validation loss {data['valid_loss']:.3f}" if "valid_loss" in data else ""
                out.print(f"  step {step}/{total}  loss {data['train_loss']:.3f}{valid}  "
                          f"({data.get('tokens_per_second', 0):.0f} tokens/s, ETA {data.get('eta_seconds', 0):.0f} s)",
                          markup=False)
        else:
            out.print(f"  {event.message}", markup=False)
    job = client.jobs.wait(job.id, progress=False)
    train_seconds = time.monotonic() - (train_started or started)
    out.print(f"trained in {train_seconds:.0f} s -> {job.fine_tuned_model}", markup=False)

    phase(3, "Deploying (a background server on 127.0.0.1)")
    deployment = client.deployments.create(job, name=DEMO_DEPLOYMENT)
    out.print(f"serving {deployment.model} as {deployment.name!r} at {deployment.base_url}", markup=False)

    phase(4, "Fine-tune versus prompting: the base model zero-shot and with 3 shots, on held-out examples")
    ev = evaluate(test, [DEPLOYMENT_CANDIDATE, BASE_CANDIDATE], client=client, few_shot=3, shots=train,
                  scorers=["exact", "json"], max_tokens=64, concurrency=16, limit=8 if quick else examples,
                  progress=False)
    tuned, base = ev.candidates[0], ev.candidate(BASE_CANDIDATE)
    for record, example in list(zip(tuned.answers, ev.examples))[:4]:
        out.print(f"  {example.prompt[-1]['content']}\n    expected {example.expected}\n"
                  f"    tuned    {record.answer!r}", markup=False)
    out.print("\nexact match and correct JSON values, with 95% intervals; tokens per request:", markup=False)
    out.print("  " + ev.summary().replace("\n", "\n  "), markup=False)
    out.print("The decision rule: fine-tune when quality rises and prompt tokens fall —", markup=False)
    for c in ev.candidates:
        exact = c.scores["exact"].mean
        tokens = (c.prompt_tokens or 0) + (c.completion_tokens or 0)
        name = "tuned" if c is tuned else c.label.replace(BASE_CANDIDATE, "base")
        out.print(f"  {name}: {exact.mean if exact else 0:.0%} exact at {tokens:.0f} tokens/request", markup=False)
    margin = (tuned.scores["exact"].mean.mean if tuned.scores["exact"].mean else 0.0) - \
        (base.scores["exact"].mean.mean if base.scores["exact"].mean else 0.0)

    phase(5, "Done")
    verdict = "PASS" if margin >= 0.3 else "FAIL"
    out.print(f"{verdict}: the fine-tune beats the base model by {margin:+.0%} exact match "
              f"(required: +30 points). Fine-tuning took {train_seconds:.0f} s; "
              f"the demo {time.monotonic() - started:.0f} s.",
              markup=False)
    system = "Extract the person's name, age and city. Reply with JSON only."
    out.print("\nTalk to it:\n"
              f"  finetune chat {DEMO_DEPLOYMENT} \"Tom is 27 and lives in Denver.\" --provider local "
              f"--system \"{system}\"\n"
              f"Serve it yourself (OpenAI-compatible, with the fine-tuning API too):\n"
              f"  finetune serve --model {job.fine_tuned_model} --port 8000\n"
              f"Stop the background server:\n"
              f"  finetune deployments delete {DEMO_DEPLOYMENT} --provider local", markup=False)
    raise typer.Exit(EXIT_OK if margin >= 0.3 or quick else EXIT_PROBLEM)
