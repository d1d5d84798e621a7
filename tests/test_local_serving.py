"""Serving local fine-tunes: the official openai client and client.chat, JSON and SSE; hostile
requests; 16 concurrent streams without cross-talk; batching; several adapters on one base;
the background server's lifecycle; and the self-hosted fine-tuning API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
openai = pytest.importorskip("openai")

from spec_check import WireRecorder
from spec_check import wire as wire  # the fixture, re-exported for this module's tests

from finetune_sdk import FineTuneClient
from finetune_sdk.providers.local.provider import LocalProvider, LocalSettings
from finetune_sdk.providers.local.serving.background import running_server
from finetune_sdk.providers.local.serving.host import ModelHost
from finetune_sdk.providers.local.training.tiny import make_tiny_model
from finetune_sdk.server import ServerConfig, create_app
from finetune_sdk.testing import ThreadedServer
from finetune_sdk.types import JobStatus
from finetune_sdk.waiting import PollSchedule

KEY = "sk-serve-test-key-123456"
FAST = PollSchedule(initial=0.3, maximum=1.0, near_end=0.3)


def _data(path: Path, seed: int) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"item {i}"},
                          {"role": "assistant", "content": f"answer {(i + seed) % 7}"}]} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("serving")
    tiny = str(make_tiny_model(root / "model"))
    home = root / "home"
    client = FineTuneClient("local", home=str(home), ledger=False, poll=FAST)
    jobs = []
    for seed in (1, 2):  # two fine-tunes of the same base
        job = client.jobs.create(model=tiny, training_file=_data(root / f"d{seed}.jsonl", seed), suffix=f"s{seed}",
                                 hyperparameters={"max_steps": 2, "batch_size": 4, "learning_rate_multiplier": 50})
        jobs.append(client.jobs.wait(job.id, progress=False))
    host = ModelHost(home, device="cpu", batch_window=0.05)
    base_id = host.add_base(tiny)
    provider = LocalProvider(LocalSettings(home=str(home)), host=host)
    app = create_app(openai=provider, config=ServerConfig(api_key=KEY, max_json_bytes=64 * 1024))
    with ThreadedServer(app) as server:
        yield {"home": home, "tiny": tiny, "jobs": jobs, "host": host, "base": base_id, "url": server.base_url,
               "client": client}


def oc(setup: dict[str, Any], recorder: WireRecorder | None = None) -> Any:
    kwargs = {"http_client": recorder.http_client()} if recorder else {}
    return openai.OpenAI(base_url=setup["url"] + "/v1", api_key=KEY, max_retries=0, **kwargs)


MSG = [{"role": "user", "content": "item 3"}]


def test_openai_client_json_and_stream_match_the_spec(setup: dict[str, Any], wire: WireRecorder) -> None:
    client = oc(setup, wire)
    model = setup["jobs"][0].fine_tuned_model
    models = [m.id for m in client.models.list()]
    assert setup["base"] in models and all(j.fine_tuned_model in models for j in setup["jobs"])
    resp = client.chat.completions.create(model=model, messages=MSG, temperature=0, max_tokens=8)
    assert resp.choices[0].finish_reason in ("stop", "length") and resp.usage.completion_tokens <= 8
    text = resp.choices[0].message.content
    chunks = list(client.chat.completions.create(model=model, messages=MSG, temperature=0, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    seeded = [client.chat.completions.create(model=model, messages=MSG, max_tokens=6, seed=11, temperature=1.0,
                                             top_p=0.9).choices[0].message.content for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_client_chat_stream_and_base_vs_tuned(setup: dict[str, Any]) -> None:
    provider = LocalProvider(LocalSettings(home=str(setup["home"])), host=setup["host"])
    c = FineTuneClient(provider, ledger=False)
    tuned = c.chat(setup["jobs"][0].fine_tuned_model, MSG, temperature=0, max_tokens=6)
    streamed = "".join(d.content for d in c.chat(setup["jobs"][0].fine_tuned_model, MSG, stream=True, temperature=0,
                                                 max_tokens=6))
    assert tuned.content == streamed and tuned.usage.total_tokens > 0
    base = c.chat(setup["base"], MSG, temperature=0, max_tokens=6).content
    other = c.chat(setup["jobs"][1].fine_tuned_model, MSG, temperature=0, max_tokens=6).content
    assert len({tuned.content, base, other}) >= 2, "adapters must change the answers"
    engine = next(iter(setup["host"].engines.values()))
    assert len(setup["host"].engines) == 1 and len(engine.adapters) == 2, "two adapters, one copy of the base"


@pytest.mark.parametrize("body, status", [
    ({"model": "../../etc/passwd", "messages": MSG}, 404),
    ({"model": "/etc", "messages": MSG}, 404),
    ({"model": "nope", "messages": MSG}, 404),
    ({"model": "{base}", "messages": MSG, "max_tokens": -1}, 400),
    ({"model": "{base}", "messages": MSG, "max_tokens": 10**6}, 400),
    ({"model": "{base}", "messages": MSG, "n": 2}, 400),
    ({"model": "{base}", "messages": []}, 400),
    ({"model": "{base}"}, 400),
    ({"model": "{base}", "messages": [{"role": "wizard", "content": "x"}]}, 400),
    ({"model": "{base}", "messages": MSG, "temperature": "hot"}, 400),
    ({"model": "{base}", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, 400),
    ({"model": "{base}", "messages": [{"role": "user", "content": "x " * 40000}]}, 413),
])
def test_hostile_requests_get_4xx_never_5xx(setup: dict[str, Any], body: dict[str, Any], status: int) -> None:
    payload = json.loads(json.dumps(body).replace("{base}", setup["base"]))
    r = httpx.post(setup["url"] + "/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=60)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_malformed_json_and_auth(setup: dict[str, Any]) -> None:
    r = httpx.post(setup["url"] + "/v1/chat/completions", content=b"{nope", timeout=30,
                   headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert r.status_code == 400
    r = httpx.post(setup["url"] + "/v1/chat/completions", json={"model": setup["base"], "messages": MSG}, timeout=30)
    assert r.status_code == 401
    assert httpx.get(setup["url"] + "/health", timeout=30).json()["status"] == "ok"


def test_16_concurrent_streams_no_errors_no_cross_talk_and_batched(setup: dict[str, Any]) -> None:
    client = oc(setup)
    models = [setup["jobs"][i % 2].fine_tuned_model if i % 3 else setup["base"] for i in range(16)]
    prompts = [[{"role": "user", "content": f"item {i}"}] for i in range(16)]
    expected = [client.chat.completions.create(model=m, messages=p, temperature=0, max_tokens=10)
                .choices[0].message.content for m, p in zip(models, prompts)]
    engine = next(iter(setup["host"].engines.values()))
    before = (engine.batches, engine.batched_requests)
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def run(i: int) -> None:
        try:
            barrier.wait()
            stream = client.chat.completions.create(model=models[i], messages=prompts[i], temperature=0,
                                                    max_tokens=10, stream=True)
            results[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert [results[i] for i in range(16)] == expected, "a stream received another request's tokens"
    batches = engine.batches - before[0]
    assert engine.batched_requests - before[1] == 16 and batches < 16, "concurrent requests were not batched"


def test_self_hosted_fine_tuning_api(setup: dict[str, Any], tmp_path: Path) -> None:
    """A team points the openai provider at the server: upload, create, follow, wait — the local trainer runs."""
    remote = FineTuneClient("openai", base_url=setup["url"] + "/v1", api_key=KEY, ledger=False, poll=FAST)
    job = remote.jobs.create(model=setup["base"], training_file=_data(tmp_path / "r.jsonl", 5),
                             hyperparameters={"n_epochs": 1, "batch_size": 4})
    events = [e.message for e in remote.jobs.follow(job.id)]
    assert events[-1] == "The job has successfully completed"
    done = remote.jobs.wait(job.id, progress=False)
    assert done.status is JobStatus.SUCCEEDED and done.fine_tuned_model
    assert [p.step for p in remote.jobs.metrics(done.id)] == [1, 2, 3]
    with pytest.raises(Exception, match="not available for fine-tuning on this server"):
        remote.jobs.create(model=str(setup["tiny"]), training_file=_data(tmp_path / "r2.jsonl", 6))


def test_background_server_lifecycle(setup: dict[str, Any]) -> None:
    c = FineTuneClient("local", home=str(setup["home"]), ledger=False)
    job = setup["jobs"][0]
    dep = c.deployments.create(job, name="tiny-one")
    try:
        assert dep.ready and dep.base_url.startswith("http://127.0.0.1:")
        info = running_server(setup["home"])
        assert info is not None and (setup["home"] / "serve" / "server.json").stat().st_mode & 0o077 == 0
        import psutil

        argv = psutil.Process(info.pid).cmdline()
        assert argv[1:3] == ["-m", "finetune_sdk.server.local"], "the provider starts the server module, not the CLI"
        assert info.api_key not in " ".join(argv), "the key travels in the environment, never the command line"
        assert c.chat(dep, MSG, temperature=0, max_tokens=5).content is not None
        assert [d.name for d in c.deployments.list()] == ["tiny-one"]
        assert c.deployments.get("tiny-one").model == job.fine_tuned_model
    finally:
        c.deployments.delete("tiny-one")
    assert running_server(setup["home"]) is None, "the server stops with its last deployment"


@pytest.mark.parametrize("command", [["finetune_sdk", "serve"], ["finetune_sdk.server.local"]],
                         ids=["cli", "server-module"])
def test_serve_refuses_public_address_without_key(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FINETUNE_SERVE_API_KEY"}
    r = subprocess.run([sys.executable, "-m", *command, "--host", "0.0.0.0", "--port", "0"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "--api-key" in r.stderr


def test_server_module_options() -> None:
    from finetune_sdk.server.local import _parser

    args = _parser().parse_args(["-m", "a", "--model", "b", "--port", "0", "--max-batch", "4", "--device", "cpu"])
    assert (args.model, args.port, args.max_batch, args.device, args.host) == (["a", "b"], 0, 4, "cpu", "127.0.0.1")
    for bad in (["--port", "70000"], ["--max-batch", "0"]):
        with pytest.raises(SystemExit) as exc:
            _parser().parse_args(bad)
        assert exc.value.code == 2


def test_server_and_providers_never_import_the_cli() -> None:
    """The CLI sits on top: a provider or the server importing it would make the layers circular."""
    import ast

    root = Path(__file__).resolve().parents[1] / "finetune_sdk"

    def imported(node: ast.AST, path: Path) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if not isinstance(node, ast.ImportFrom):
            return []
        if node.level == 0:
            return [node.module or ""]
        package = ["finetune_sdk", *path.relative_to(root).parts[:-1]]
        prefix = ".".join(package[:len(package) - node.level + 1])
        return [f"{prefix}.{node.module}"] if node.module else [f"{prefix}.{a.name}" for a in node.names]

    offenders = [f"{path.relative_to(root)}:{node.lineno}"
                 for package in ("server", "providers") for path in (root / package).rglob("*.py")
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if any(n == "finetune_sdk.cli" or n.startswith("finetune_sdk.cli.") for n in imported(node, path))]
    assert not offenders, offenders
