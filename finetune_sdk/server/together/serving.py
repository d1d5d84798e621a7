"""Together's serving side: ``/models``, ``/chat/completions`` (JSON and SSE), dedicated
``/endpoints`` (PENDING → STARTING → STARTED over simulated time) and ``/hardware``.

Chat addresses a base model, a fine-tune of a base Together serves LoRA adapters of
without an endpoint, or a STARTED endpoint by its name. Any other fine-tune is refused the
way Together refuses a non-serverless model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ...errors import ProviderError
from ...types import DeploySpec
from ..api import _call
from ..errors import ApiError, envelope, from_provider_error
from .schemas import ChatRequest, CreateEndpoint, UpdateEndpoint
from .state import HARDWARE, Endpoint, TogetherState
from .wire import chunks, completion_body, endpoint_body, iso, model_body

__all__ = ["serving_router"]

_PARAMS = ("max_tokens", "stop", "temperature", "top_p", "seed")  # what the simulated reply takes into account


def serving_router(state: TogetherState) -> APIRouter:
    router = APIRouter()
    provider = state.provider
    flavor = provider.flavor
    started_word = flavor.deployment_states["succeeded"]

    def endpoint(endpoint_id: str) -> Endpoint:
        with state.lock:
            ep = state.endpoints.get(endpoint_id)
        if ep is None:
            raise ApiError(404, f"Endpoint {endpoint_id} not found.", param="endpointId", code="not_found")
        return ep

    def state_of(ep: Endpoint) -> str:
        return "STOPPED" if ep.stopped else str(_call(provider.get_deployment, ep.id).raw_status)

    def served(model: str) -> str:
        """The model a chat request reaches, or the refusal Together answers."""
        with state.lock:
            ep = next((e for e in state.endpoints.values() if e.name == model), None)
        if ep is not None:
            word = state_of(ep)
            if word != started_word:
                raise ApiError(400, f"Endpoint {model} is not running (state {word}).", param="model",
                               code="endpoint_not_running")
            return ep.model
        if flavor.serves_fine_tunes_of is not None and flavor.is_fine_tune(model):
            base = next((j.model for j in _call(provider.list_jobs) if j.fine_tuned_model == model), None)
            if base is not None and base not in flavor.serves_fine_tunes_of:
                raise ApiError(400, f"Unable to access non-serverless model {model}. Please visit "
                                    f"https://api.together.ai/models/{model} to create and start a new dedicated "
                                    f"endpoint for the model.", param="model", code="model_not_available")
        return model

    # ------------------------------------------------------------------ models
    @router.get("/models", summary="List models")
    def list_models() -> JSONResponse:
        return JSONResponse([model_body(m, state.namespace, flavor.fine_tunable)
                             for m in _call(provider.list_models) if ":" not in m.id])

    # ------------------------------------------------------------------ chat
    @router.post("/chat/completions", summary="Create a chat completion")
    def chat(body: ChatRequest) -> Response:
        if body.n is not None and body.n > 1:
            raise ApiError(400, f"n={body.n} is not supported by this emulator; use n=1.", param="n")
        model = served(body.model)
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        params = body.model_dump(include=set(_PARAMS), exclude_none=True)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(state.now())
        if not body.stream:
            reply = _call(provider.chat, model, messages, **params)
            return JSONResponse(completion_body(reply, completion_id=completion_id, created=created, model=body.model))
        deltas = _call(provider.chat_stream, model, messages, **params)

        def sse() -> Iterator[bytes]:
            try:
                for chunk in chunks(deltas, completion_id=completion_id, created=created, model=body.model):
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
            except ProviderError as exc:  # the headers are gone: report in the stream
                yield f"data: {json.dumps(envelope(from_provider_error(exc), 'together'))}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    # ------------------------------------------------------------------ dedicated endpoints
    @router.get("/hardware", summary="Hardware for endpoints")
    def hardware(model: str | None = None) -> JSONResponse:
        items = [{"object": "hardware", "id": hw, "pricing": {"cents_per_minute": 5.0 * int(hw[0])},
                  "specs": {"gpu_type": hw.split("_", 2)[2].rsplit("_", 2)[0], "gpu_link": "sxm",
                            "gpu_memory": float(hw.rsplit("_", 2)[1].removesuffix("gb")), "gpu_count": int(hw[0])},
                  "availability": {"status": "available"}, "updated_at": iso(state.now())} for hw in HARDWARE]
        return JSONResponse({"object": "list", "data": items})

    @router.post("/endpoints", summary="Create a dedicated endpoint")
    def create_endpoint(body: CreateEndpoint) -> JSONResponse:
        if body.hardware not in HARDWARE:
            raise ApiError(400, f"Unknown hardware {body.hardware!r}; GET /hardware lists what there is.",
                           param="hardware", code="invalid_request")
        if body.autoscaling.min_replicas > body.autoscaling.max_replicas:
            raise ApiError(400, "autoscaling.min_replicas must not exceed max_replicas.", param="autoscaling",
                           code="invalid_request")
        endpoint_id, name = state.endpoint_ids(body.model)
        _call(provider.deploy, body.model, DeploySpec(name=endpoint_id, sku=body.hardware,
                                                      capacity=body.autoscaling.max_replicas))
        ep = Endpoint(id=endpoint_id, name=name, display_name=body.display_name or name, model=body.model,
                      hardware=body.hardware, min_replicas=body.autoscaling.min_replicas,
                      max_replicas=body.autoscaling.max_replicas, created=state.now(), stopped=body.state == "STOPPED")
        with state.lock:
            state.endpoints[endpoint_id] = ep
        return JSONResponse(endpoint_body(ep, state_of(ep), state.namespace))

    @router.get("/endpoints", summary="List endpoints")
    def list_endpoints(type: str | None = Query(None, pattern="^(dedicated|serverless)$"),
                       usage_type: str | None = Query(None, pattern="^(on-demand|reserved)$"),
                       mine: bool | None = None) -> JSONResponse:
        with state.lock:
            eps = list(state.endpoints.values()) if type != "serverless" else []
        return JSONResponse({"object": "list", "data": [endpoint_body(e, state_of(e), state.namespace, listed=True)
                                                        for e in eps]})

    @router.get("/endpoints/{endpoint_id}", summary="Retrieve an endpoint")
    def get_endpoint(endpoint_id: str) -> JSONResponse:
        ep = endpoint(endpoint_id)
        return JSONResponse(endpoint_body(ep, state_of(ep), state.namespace))

    @router.patch("/endpoints/{endpoint_id}", summary="Update an endpoint")
    def update_endpoint(endpoint_id: str, body: UpdateEndpoint) -> JSONResponse:
        ep = endpoint(endpoint_id)
        if body.autoscaling is not None:
            if body.autoscaling.min_replicas > body.autoscaling.max_replicas:
                raise ApiError(400, "autoscaling.min_replicas must not exceed max_replicas.", param="autoscaling",
                               code="invalid_request")
            ep.min_replicas, ep.max_replicas = body.autoscaling.min_replicas, body.autoscaling.max_replicas
        if body.display_name is not None:
            ep.display_name = body.display_name
        if body.state == "STOPPED":
            ep.stopped = True
        elif body.state == "STARTED" and ep.stopped:  # starting again goes through PENDING and STARTING
            _call(provider.delete_deployment, ep.id)
            _call(provider.deploy, ep.model, DeploySpec(name=ep.id, sku=ep.hardware, capacity=ep.max_replicas))
            ep.stopped = False
        return JSONResponse(endpoint_body(ep, state_of(ep), state.namespace))

    @router.delete("/endpoints/{endpoint_id}", summary="Delete an endpoint", status_code=204)
    def delete_endpoint(endpoint_id: str) -> Response:
        endpoint(endpoint_id)
        _call(provider.delete_deployment, endpoint_id)
        with state.lock:
            state.endpoints.pop(endpoint_id, None)
        return Response(status_code=204)

    return router

