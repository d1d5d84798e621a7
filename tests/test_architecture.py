"""The layers of docs/architecture.md, enforced: who may import whom, and where retries live.

Imports are read from the source (every ``import`` statement, at any depth, relative ones
resolved), so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "finetune_sdk"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of the finetune_sdk modules ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("finetune_sdk")}


def sources(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py")) if (PACKAGE / sub).is_dir() else [PACKAGE / sub]


def offenders(sub: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sources(sub):
        for name in imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return bad


def test_dataset_code_imports_no_provider_nor_anything_above_it() -> None:
    assert offenders("data", ("finetune_sdk.providers", "finetune_sdk.client", "finetune_sdk.server",
                              "finetune_sdk.cli", "finetune_sdk.waiting", "finetune_sdk.polling")) == []


def test_providers_import_neither_the_client_nor_the_server_nor_the_cli() -> None:
    assert offenders("providers", ("finetune_sdk.client", "finetune_sdk.server", "finetune_sdk.cli",
                                   "finetune_sdk.waiting")) == []


def test_the_server_never_imports_the_cli() -> None:
    assert offenders("server", ("finetune_sdk.cli",)) == []


SHARED = {"finetune_sdk.providers", "finetune_sdk.providers.base", "finetune_sdk.providers.http"}
ALLOWED = {("azure", "finetune_sdk.providers.openai")}  # Azure speaks OpenAI's API and extends it


@pytest.mark.parametrize("path", [p for p in sources("providers") if p.name not in ("__init__.py", "base.py",
                                                                                   "http.py")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_provider_imports_another_providers_module(path: Path) -> None:
    own = module_name(path).split(".")[2]  # finetune_sdk.providers.<own>[...]
    for name in imports(path):
        if not name.startswith("finetune_sdk.providers.") or name in SHARED:
            continue
        if name.startswith(("finetune_sdk.providers.base.", "finetune_sdk.providers.http.")):
            continue
        other = name.split(".")[2]
        assert other == own or (own, f"finetune_sdk.providers.{other}") in ALLOWED, \
            f"{path.relative_to(PACKAGE.parent)} imports {name}"


def test_one_retry_layer() -> None:
    """tenacity is used in retry.py only; no other module builds a retry loop of its own."""
    users = [p.relative_to(PACKAGE.parent) for p in PACKAGE.rglob("*.py")
             if "tenacity" in p.read_text(encoding="utf-8") and p.name != "retry.py"]
    assert users == []


def test_no_lifecycle_from_english_text() -> None:
    """Lifecycle comes from Event.kind and statuses, never from an event's message."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "message.startswith(" not in text and "message.lower().startswith(" not in text, path
