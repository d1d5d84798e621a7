"""``/_emulator``: controls for tests that run the emulator out of process.

- ``POST /_emulator/clock`` ``{"advance": seconds}`` or ``{"speed": x}`` → ``{"now": ...}``
- ``PUT /_emulator/faults`` a fault spec (string or rule list, see faults.py); ``DELETE`` clears it
- ``GET /_emulator/stats`` requests seen and faults injected per route
- ``POST /_emulator/jobs/{id}/fail?dialect=openai|azure`` ``{"at_step": n, "message": "..."}``
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Body, Depends, FastAPI

from .api import _call
from .errors import ApiError
from .faults import FaultPlan

__all__ = ["admin_router"]


def admin_router(app: FastAPI, *, auth: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/_emulator", dependencies=[Depends(auth)])

    def clocks() -> list[Any]:
        found = []
        for backend in app.state.backends.values():
            clock = getattr(backend.provider, "clock", None)
            if clock is not None and all(clock is not c for c in found):
                found.append(clock)
        if not found:
            raise ApiError(400, "No simulated backend: the clock cannot be controlled.")
        return found

    @router.post("/clock")
    def clock(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        advance, speed = body.get("advance"), body.get("speed")
        if advance is not None and (not isinstance(advance, (int, float)) or isinstance(advance, bool) or advance < 0):
            raise ApiError(400, "advance must be a non-negative number of seconds", param="advance")
        if speed is not None and (not isinstance(speed, (int, float)) or isinstance(speed, bool) or speed < 0):
            raise ApiError(400, "speed must be a non-negative number", param="speed")
        for c in clocks():
            if speed is not None:
                c.speed = float(speed)
            if advance:
                c.advance(float(advance))
        return {"now": clocks()[0].now()}

    @router.put("/faults")
    def set_faults(body: Any = Body(...)) -> dict[str, Any]:
        spec = body.get("spec") if isinstance(body, dict) else body
        try:
            plan = FaultPlan.parse(spec, seed=int(body.get("seed", 0)) if isinstance(body, dict) else 0)
        except (ValueError, TypeError) as exc:
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
        job = _call(backend.provider.fail_job, job_id, at_step=body.get("at_step"), message=body.get("message"))
        return backend.wire.job(job)

    return router
