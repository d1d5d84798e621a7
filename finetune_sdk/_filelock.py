"""One exclusive lock on a file, between processes and between the threads of a process.

The local backend serialises several things through lock files: updates of a job's
``job.json`` (the provider and the training process both write it), the one running job
per device, the deployment registry, starting the background server, and converting the
embedded base model once. :func:`file_lock` is the one implementation they share.

- Between processes: ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows. The OS
  releases the lock when its holder exits, even after ``kill -9``, so a crash never leaves
  a stale lock behind (the lock file itself stays; it is never deleted, because deleting
  it while another process waits on it would let a third one lock a new file).
- Between threads: a process-wide :class:`threading.Lock` per path, taken first. flock
  alone already excludes two descriptors of one process, but ``msvcrt`` and POSIX record
  locks do not, and the thread lock also spares a thread the system call while a sibling
  holds the file.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ._secrets import get_logger

__all__ = ["file_lock"]

_log = get_logger(__name__)

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()

# msvcrt.locking(LK_LOCK) gives up after 10 s, so a blocking wait on Windows polls instead.
_WINDOWS_POLL_SECONDS = 0.2


def _thread_lock(path: Path) -> threading.Lock:
    key = os.path.abspath(path)
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, blocking: bool = True,
              on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created, with its folder, if missing) for the ``with`` block.

    Yields whether the lock is held. ``blocking=True`` waits for it and yields True;
    ``blocking=False`` yields False at once when another process or thread holds it (the
    block then runs without the lock: check the value). ``on_wait`` is called once, before
    waiting, when the lock is taken: to tell a user why nothing happens. On a platform
    with neither fcntl nor msvcrt, a blocking lock excludes the threads of this process
    only and yields False; a non-blocking one raises OSError.
    """
    path = Path(path)
    tlock = _thread_lock(path)
    if not tlock.acquire(blocking=False):
        if not blocking:
            yield False
            return
        if on_wait is not None:
            on_wait()
            on_wait = None
        tlock.acquire()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            held = _lock(fd, blocking, on_wait)
            try:
                yield held
            finally:
                if held:
                    _unlock(fd)
        finally:
            os.close(fd)
    finally:
        tlock.release()


def _lock(fd: int, blocking: bool, on_wait: Callable[[], None] | None) -> bool:
    """Lock the open file ``fd``; False when non-blocking and another holder has it."""
    try:
        import fcntl
    except ImportError:
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if not blocking:
                return False
        if on_wait is not None:
            on_wait()
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    try:
        import msvcrt
    except ImportError:
        msvcrt = None
    if msvcrt is not None:  # pragma: no cover - Windows
        told = False
        while True:
            os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the current position
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not blocking:
                    return False
            if on_wait is not None and not told:
                on_wait()
                told = True
            time.sleep(_WINDOWS_POLL_SECONDS)
    if not blocking:  # pragma: no cover - no such platform among those supported
        raise OSError("this platform has no file locking (neither fcntl nor msvcrt)")
    _log.warning("No file locking on this platform: other processes are not excluded.")  # pragma: no cover
    return False  # pragma: no cover


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
