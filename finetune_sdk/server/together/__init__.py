"""Together AI's API under ``/together/v1``, over the simulated backend: the emulator's
Together dialect, driven in the test suite by Together's official, unmodified SDK.

- :mod:`.files`: the upload its SDKs use (302 to an upload URL, PUT, preprocess), the
  direct upload of its description, list, retrieve, delete, content;
- :mod:`.jobs`: ``/fine-tunes`` and the model limits, supported models and price estimate;
- :mod:`.serving`: ``/models``, ``/chat/completions``, dedicated ``/endpoints``, ``/hardware``;
- :mod:`.wire`: the JSON of each object, validated in the tests against Together's
  public OpenAPI description.

Errors come in Together's ``ErrorData`` envelope, registered here for paths under
``/together`` (request validation, unknown routes and injected faults included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from ...providers.base import Provider
from ...providers.simulated import SimulatedProvider
from ..app import ServerConfig
from ..errors import ENVELOPES, ApiError
from .files import files_router, storage_router
from .jobs import jobs_router
from .serving import serving_router
from .state import TogetherState

__all__ = ["mount", "envelope", "TogetherState"]


def envelope(err: ApiError) -> dict[str, Any]:
    """Together's ``ErrorData``: ``message`` and ``type`` always, ``param`` and ``code`` or null."""
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


def mount(app: FastAPI, provider: Provider[Any], config: ServerConfig, *, auth: Callable[..., Any]) -> None:
    """Serve ``provider`` (a simulated backend of the ``together`` flavor) under ``/together/v1``."""
    if not isinstance(provider, SimulatedProvider) or provider.flavor.name != "together":
        raise ValueError("the together dialect serves a simulated backend of the 'together' flavor")
    ENVELOPES["together"] = envelope
    state = TogetherState(provider, config)
    app.state.backends["together"] = state
    api = APIRouter(dependencies=[Depends(auth)])
    for router in (files_router(state), jobs_router(state), serving_router(state)):
        api.include_router(router)
    app.include_router(api, prefix="/together/v1")
    app.include_router(storage_router(state), prefix="/together")
