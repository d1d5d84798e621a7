"""``/_emulator``: controls for tests that run the emulator out of process.

- ``POST /_emulator/clock`` ``{"advance": seconds}`` or ``{"speed": x}`` → ``{"now": ...}``
- ``PUT /_emulator/faults`` a fault spec (string or rule list, see faults.py); ``DELETE`` clears it
- ``GET /_emulator/stats`` requests seen and faults injected per route
- ``POST /_emulator/jobs/{id}/fail?dialect=openai|azure`` ``{"at_step": n, "message": "..."}``
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI

from .api import _call
from .errors import ApiError
from .faults import FaultPlan

__all__ = ["admin_router"]


def admin_router(app: FastAPI, *, auth: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/_emulator", dependencies=[Depends(auth)])

    def clocks() -> list[Any]:
        found: list[Any] = []
        for backend in app.state.backends.values():
            clock = getattr(backend.provider, "clock", None)
            if clock is not None and all(clock is not c for c in found):
                found.append(clock)
        if not found:
            raise ApiError(400, "No simulated backend: the clock cannot be controlled.")
        return found

    def number(body: dict[str, Any], key: str, maximum: float) -> float | None:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= maximum:
            raise ApiError(400, f"{key} must be a number between 0 and {maximum:g}", param=key)
        return float(value)

    @router.post("/clock")
    def clock(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        advance = number(body, "advance", 10 * 365 * 86400.0)  # at most ten simulated years
        speed = number(body, "speed", 1e6)
        for c in clocks():
            if speed is not None:
                c.speed = float(speed)
            if advance:
                c.advance(float(advance))
        return {"now": clocks()[0].now()}

    @router.put("/faults")
    def set_faults(body: Any = Body(...)) -> dict[str, Any]:
        spec = body.get("spec") if isinstance(body, dict) else body
        seed = body.get("seed", 0) if isinstance(body, dict) else 0
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ApiError(400, "seed must be an integer", param="seed")
        try:
            plan = FaultPlan.parse(spec, seed=seed)
        except (ValueError, TypeError, KeyError) as exc:
            raise ApiError(400, f"invalid fault spec: {exc}", param="spec") from None
        app.state.config.faults = plan
        return {"rules": len(plan.rules), "sequences": len(plan.sequences)}

    @router.delete("/faults")
    def clear_faults() -> dict[str, Any]:
        app.state.config.faults = None
        return {"rules": 0, "sequences": 0}

    @router.get("/stats")
    def stats() -> dict[str, Any]:
        plan = app.state.config.faults
        return {"requests": dict(plan.requests) if plan else {}, "injected": dict(plan.injected) if plan else {}}

    @router.post("/jobs/{job_id}/fail")
    def fail(job_id: str, dialect: str = "openai", body: dict[str, Any] = Body(default={})) -> dict[str, Any]:
        backend = app.state.backends.get(dialect)
        if backend is None or not hasattr(backend.provider, "fail_job"):
            raise ApiError(400, f"No simulated {dialect} backend.", param="dialect")
        at_step, message = body.get("at_step"), body.get("message")
        if at_step is not None and (isinstance(at_step, bool) or not isinstance(at_step, int) or at_step < 0):
            raise ApiError(400, "at_step must be a non-negative integer", param="at_step")
        if message is not None and not isinstance(message, str):
            raise ApiError(400, "message must be a string", param="message")
        job = _call(backend.provider.fail_job, job_id, at_step=body.get("at_step"), message=body.get("message"))
        return backend.wire.job(job)

    return router
