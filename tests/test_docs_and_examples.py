"""Docs stay in step with the code, and every example script runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from finetune_sdk.data.records import CODES

ROOT = Path(__file__).resolve().parent.parent


def test_every_validator_code_is_documented() -> None:
    text = (ROOT / "docs" / "dataset-format.md").read_text()
    missing = [code for code in CODES if f"`{code}`" not in text]
    assert not missing, f"codes missing from docs/dataset-format.md: {missing}"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    assert "scripts/test.sh" in commands[1]
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_docs_links_resolve() -> None:
    import re

    for md in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)\)", md.read_text()):
            assert (md.parent / target).exists(), f"{md.name} links to missing {target}"


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, f"{script.name} failed:\n{r.stdout}\n{r.stderr}"
