"""Simulated time for the emulator, and how long each phase of its jobs takes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["SimClock", "SimTimings"]


class SimClock:
    """Simulated time: ``start + (real seconds elapsed) * speed + advanced``.

    ``speed=0`` freezes time so that only :meth:`advance` moves it.
    """

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed < 0:
            raise ValueError("speed cannot be negative")
        self._lock = threading.Lock()
        self._speed = float(speed)
        self._real0 = time.monotonic()
        self._sim0 = float(start if start is not None else time.time())

    def now(self) -> float:
        with self._lock:
            return self._sim0 + (time.monotonic() - self._real0) * self._speed

    def advance(self, seconds: float) -> float:
        """Move simulated time forward; returns the new time."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._sim0 += seconds
        return self.now()

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value < 0:
            raise ValueError("speed cannot be negative")
        now = self.now()
        with self._lock:
            self._sim0, self._real0, self._speed = now, time.monotonic(), float(value)


@dataclass
class SimTimings:
    """Simulated seconds each phase takes."""

    file_processing: float = 2.0
    validation: float = 5.0
    queue: float = 10.0
    step: float = 2.0
    finalize: float = 5.0
    pausing: float = 3.0
    cancelling: float = 3.0
    deploy_accepted: float = 2.0
    deploy_creating: float = 10.0
    deploy_warmup: float = 30.0
