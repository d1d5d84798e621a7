"""The one file lock (finetune_sdk._filelock): processes and threads contend for it for real."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_sdk._filelock import file_lock

REPO_ROOT = Path(__file__).resolve().parents[1]

# Takes the lock, says so, and keeps it until told (a line on stdin) or killed.
_HOLDER = textwrap.dedent("""
    import sys
    from finetune_sdk._filelock import file_lock
    with file_lock(sys.argv[1]) as held:
        print("held" if held else "not held", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
""")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Another process holding the lock on ``tmp_path / "x.lock"``."""
    path = tmp_path / "locks" / "x.lock"  # the folder does not exist yet: the lock creates it
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield path, proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_non_blocking_returns_false_while_another_process_holds_it(holder) -> None:
    path, proc = holder
    with file_lock(path, blocking=False) as held:
        assert held is False
    assert proc.poll() is None  # our attempt did not disturb the holder


def test_blocking_waits_for_the_other_process_and_calls_on_wait(holder) -> None:
    path, proc = holder
    waited: list[float] = []

    def on_wait() -> None:  # we are about to wait: now let the holder go
        waited.append(time.monotonic())
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()

    with file_lock(path, on_wait=on_wait) as held:
        assert held is True
        assert len(waited) == 1, "on_wait fires exactly once, before waiting"
        assert proc.stdout is not None and proc.stdout.readline().strip() == "released"
    assert proc.wait(timeout=30) == 0


def test_a_killed_holder_leaves_no_stale_lock(holder) -> None:
    path, proc = holder
    proc.kill()
    proc.wait(timeout=30)
    with file_lock(path, blocking=False) as held:
        assert held is True


def test_uncontended_lock_does_not_call_on_wait(tmp_path: Path) -> None:
    calls: list[int] = []
    with file_lock(tmp_path / "a.lock", on_wait=lambda: calls.append(1)) as held:
        assert held is True
    with file_lock(tmp_path / "a.lock", blocking=False) as held:  # released on exit: free again
        assert held is True
    assert calls == []
    if os.name == "posix":
        assert (tmp_path / "a.lock").stat().st_mode & 0o077 == 0


def test_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    taken, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with file_lock(path) as held:
            assert held
            order.append("first in")
            taken.set()
            release.wait(30)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    assert taken.wait(30)
    with file_lock(path, blocking=False) as held:
        assert held is False
    waits: list[int] = []

    def second() -> None:
        with file_lock(path, on_wait=lambda: (waits.append(1), release.set())) as held:
            assert held
            order.append("second in")

    u = threading.Thread(target=second)
    u.start()
    t.join(30)
    u.join(30)
    assert order == ["first in", "first out", "second in"]
    assert waits == [1]


def test_the_same_path_spelled_differently_is_one_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with file_lock(tmp_path / "s.lock") as held:
        assert held
        with file_lock("s.lock", blocking=False) as again:
            assert again is False
