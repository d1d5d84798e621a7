"""The Fireworks AI dialect of the emulator, under ``/fireworks`` (standing in for
``https://api.fireworks.ai``):

- the control plane, ``/fireworks/v1/accounts/{account}/...``: datasets, supervised and DPO
  fine-tuning jobs, models, deployments and deployed LoRAs (:mod:`.training`, :mod:`.serving`);
- inference, ``/fireworks/inference/v1/chat/completions``;
- pre-signed storage URLs, ``/fireworks/_signed/...`` (no API key, as on cloud storage).

Control-plane errors are gRPC-gateway statuses, inference errors Fireworks' flat form
(:mod:`.wire`). The official ``fireworks-ai`` SDK drives it unmodified:
``Fireworks(api_key=..., base_url=emu.fireworks_base_url, account_id=emu.account_id)``, and
for chat ``base_url=emu.fireworks_base_url + "/inference"`` (with its base URL overridden the
SDK posts chat to ``{base_url}/v1/chat/completions``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request

from ...providers.base import Provider
from ..errors import ENVELOPES, ApiError
from .serving import inference_router, serving_router
from .state import State
from .training import signed_router, training_router
from .wire import control_envelope, inference_envelope

__all__ = ["mount"]


def mount(app: FastAPI, provider: Provider[Any], config: Any, *, auth: Callable[..., Any]) -> State:
    """Serve ``provider`` as Fireworks AI under ``/fireworks``; returns the dialect's state."""
    ENVELOPES["fireworks"] = control_envelope
    ENVELOPES["fireworks/inference"] = inference_envelope
    state = State(provider, account=str(config.extra.get("account_id") or "emulator"))

    def bearer(request: Request) -> None:
        try:
            auth(request)
        except ApiError as exc:  # same check, Fireworks' words: a gRPC UNAUTHENTICATED status
            raise ApiError(exc.status, "The API key is missing or invalid; send it as Authorization: Bearer <key>.",
                           code="UNAUTHENTICATED") from None

    app.state.backends["fireworks"] = state
    app.include_router(training_router(state, auth=bearer), prefix="/fireworks")
    app.include_router(serving_router(state, auth=bearer), prefix="/fireworks")
    app.include_router(inference_router(state, auth=bearer), prefix="/fireworks/inference/v1")
    app.include_router(signed_router(state), prefix="/fireworks")
    return state
