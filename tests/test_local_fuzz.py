"""schemathesis over the server's OpenAPI description with the LOCAL provider behind it (chat served by
a tiny model with an adapter): hostile requests never produce a 5xx."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from finetune_sdk.providers.local.jobs.store import JobRecord, JobStore
from finetune_sdk.providers.local.provider import LocalProvider, LocalSettings
from finetune_sdk.providers.local.serving.host import ModelHost
from finetune_sdk.providers.local.training.tiny import make_tiny_model
from finetune_sdk.server import ServerConfig, create_app
from finetune_sdk.types import JobSpec


def finished_job(home: Path, base: Path) -> str:
    """A succeeded LoRA job on disk, as the trainer leaves it (no training needed)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    store = JobStore(home)
    record = JobRecord(id="ftjob-fuzz0000fuzz0000fuzz0000", status="succeeded",
                       spec=JobSpec(model=str(base), training_file="file-x"), config={"lora": True},
                       created_at=time.time(), finished_at=time.time(), base_model_path=str(base),
                       fine_tuned_model="ft:model:local:fuzz:fuzz0000")
    store.create(record)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)),
                                LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(str(store.dir(record.id) / "adapter"))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(store.dir(record.id) / "adapter"))
    return record.fine_tuned_model or ""


def _build_app() -> tuple[Any, Path]:
    root = Path(tempfile.mkdtemp(prefix="fuzz-local-"))
    base = make_tiny_model(root / "model")
    home = root / "home"
    finished_job(home, base)
    host = ModelHost(home, device="cpu", max_completion_tokens=16, batch_window=0.0)
    host.add_base(str(base))
    provider = LocalProvider(LocalSettings(home=str(home)), host=host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        app = create_app(openai=provider, config=ServerConfig(api_key=None, max_json_bytes=256 * 1024))
        app.openapi()
    return app, root


# schemathesis needs the application when the test is collected.
_APP, _ROOT = _build_app()
_SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    for backend in _APP.state.backends.values():
        backend.uploads.close()
    shutil.rmtree(_ROOT, ignore_errors=True)


@_SCHEMA.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_local_server_fuzz_no_server_errors(case: Any) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
