"""Models, deployments, LoRA addons and inference, as Fireworks serves them.

- ``/v1/accounts/{account}/models``: the account's fine-tunes (``HF_PEFT_ADDON``, appearing
  when their job completes) and, under the ``fireworks`` account, the tunable base models.
- ``.../deployments``: ``CREATING`` → ``READY`` over simulated time (the backend's deployment
  timings). A deployment of a fine-tuned model serves it ("live merge"); one of a base model
  with ``enableAddons`` takes LoRAs through ``.../deployedModels`` (``DEPLOYING`` →
  ``DEPLOYED``).
- ``/fireworks/inference/v1/chat/completions``: OpenAI-compatible JSON and SSE. ``model`` is a
  serverless base model, or a fine-tune with a ready deployment, optionally pinned with
  ``#<deployment>`` (syntax beyond the SDK's docstring unverified). Streams end with a chunk
  carrying ``finish_reason`` and ``usage`` (unverified), then ``[DONE]``.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ...errors import ProviderError
from ...types import Deployment, DeploySpec
from ..api import _call
from ..errors import ApiError, envelope, from_provider_error
from .schemas import ChatRequest, CreateDeployment, LoadLora
from .state import PUBLIC_ACCOUNT, DeploymentRec, LoraRec, State
from .training import ACCOUNT, check_id, ordered
from .wire import page, short_id

__all__ = ["serving_router", "inference_router"]

_NOT_DEPLOYED = "Model not found, inaccessible, and/or not deployed"


def serving_router(st: State, *, auth: Callable[..., Any]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(auth)])

    def mine(account: str) -> None:
        if account != st.account:
            raise ApiError(403, f"Permission denied on account {account!r}.", code="PERMISSION_DENIED")

    # ------------------------------------------------------------------ models
    def readable(account: str) -> list[str]:
        if account == PUBLIC_ACCOUNT:
            return [m for m in st.base_models() if m.startswith(f"accounts/{PUBLIC_ACCOUNT}/")]
        mine(account)
        return [m for m in st.tuned_models() if m.startswith(f"accounts/{account}/")]

    @router.get(ACCOUNT + "/models", summary="List models")
    def list_models(account: str, pageSize: int | None = None, pageToken: str | None = None,
                    filter: str | None = None, orderBy: str | None = None, readMask: str | None = None) -> JSONResponse:
        items = ordered([st.render_model(m) for m in readable(account)], orderBy, filter)
        return JSONResponse(page(items, "models", pageSize, pageToken))

    @router.get(ACCOUNT + "/models/{mid}", summary="Get a model")
    def get_model(account: str, mid: str, readMask: str | None = None) -> JSONResponse:
        name = f"accounts/{account}/models/{mid}"
        if name not in readable(account):
            raise ApiError(404, f"Model {name} not found.", code="NOT_FOUND")
        return JSONResponse(st.render_model(name))

    @router.delete(ACCOUNT + "/models/{mid}", summary="Delete a model")
    def delete_model(account: str, mid: str) -> JSONResponse:
        mine(account)
        name = st.name("models", mid)
        if name not in st.tuned_models():
            raise ApiError(404, f"Model {name} not found.", code="NOT_FOUND")
        users = [st.name("deployments", d) for d in st.deployments
                 if (dep := st.backend_deployment(d)) is not None and dep.model == name]
        users += [st.name("deployedModels", r.id) for r in st.loras.values() if r.model == name]
        if users:
            raise ApiError(400, f"Model {name} is deployed ({', '.join(users)}); undeploy it first.",
                           code="FAILED_PRECONDITION")
        _call(st.provider.delete_model, name)
        return JSONResponse({})

    # ------------------------------------------------------------------ deployments
    def deployment(did: str) -> tuple[DeploymentRec, Deployment]:
        rec = st.deployments.get(did)
        dep = st.backend_deployment(did) if rec else None
        if rec is None or dep is None:
            raise ApiError(404, f"Deployment {st.name('deployments', did)} not found.", code="NOT_FOUND")
        return rec, dep

    @router.post(ACCOUNT + "/deployments", summary="Create a deployment")
    def create_deployment(account: str, body: CreateDeployment, deploymentId: str | None = None,
                          validateOnly: bool = False, disableAutoDeploy: bool = False,
                          disableSpeculativeDecoding: bool = False, skipShapeValidation: bool = False,
                          skipImageTagValidation: bool = False, acceptShapelessRisk: bool = False) -> JSONResponse:
        mine(account)
        did = check_id(deploymentId or f"dep-{secrets.token_hex(4)}", "deploymentId")
        if not st.model_exists(body.baseModel):
            raise ApiError(404, f"Model {body.baseModel} not found.", code="NOT_FOUND", param="baseModel")
        if body.enableAddons and body.baseModel not in st.base_models():
            raise ApiError(400, "enableAddons needs a base model; a fine-tuned model is deployed on its own",
                           code="INVALID_ARGUMENT", param="enableAddons")
        fields = body.model_dump(exclude_none=True)
        rec = DeploymentRec(did, st.now(), fields)
        with st.lock:
            if did in st.deployments:
                raise ApiError(409, f"Deployment {st.name('deployments', did)} already exists.",
                               code="ALREADY_EXISTS")
            if validateOnly:
                return JSONResponse(st.render_deployment(rec, Deployment(name=did, model=body.baseModel,
                                                                         provider="fireworks", status="creating")))
            dep = _call(st.provider.deploy, body.baseModel,
                        DeploySpec(name=did, sku=body.acceleratorType, capacity=body.maxReplicaCount or 1))
            st.deployments[did] = rec
        return JSONResponse(st.render_deployment(rec, dep))

    @router.get(ACCOUNT + "/deployments", summary="List deployments")
    def list_deployments(account: str, pageSize: int | None = None, pageToken: str | None = None,
                         filter: str | None = None, orderBy: str | None = None, readMask: str | None = None,
                         showDeleted: bool = False) -> JSONResponse:
        mine(account)
        items = [st.render_deployment(*deployment(d)) for d in list(st.deployments)]
        return JSONResponse(page(ordered(items, orderBy, filter), "deployments", pageSize, pageToken))

    @router.get(ACCOUNT + "/deployments/{did}", summary="Get a deployment")
    def get_deployment(account: str, did: str, readMask: str | None = None) -> JSONResponse:
        mine(account)
        return JSONResponse(st.render_deployment(*deployment(did)))

    @router.delete(ACCOUNT + "/deployments/{did}", summary="Delete a deployment")
    def delete_deployment(account: str, did: str, hard: bool = False, ignoreChecks: bool = False) -> JSONResponse:
        mine(account)
        deployment(did)
        with st.lock:
            _call(st.provider.delete_deployment, did)
            del st.deployments[did]
            for lid in [lid for lid, r in st.loras.items() if r.deployment == did]:  # its addons go with it
                del st.loras[lid]
        return JSONResponse({})

    # ------------------------------------------------------------------ LoRA addons on a deployment
    def lora(lid: str) -> LoraRec:
        rec = st.loras.get(lid)
        if rec is None:
            raise ApiError(404, f"DeployedModel {st.name('deployedModels', lid)} not found.", code="NOT_FOUND")
        return rec

    @router.post(ACCOUNT + "/deployedModels", summary="Load a LoRA onto a deployment")
    def load_lora(account: str, body: LoadLora, replaceMergedAddon: bool = False) -> JSONResponse:
        mine(account)
        if body.model not in st.tuned_models():
            raise ApiError(404, f"Model {body.model} not found.", code="NOT_FOUND", param="model")
        did = short_id(body.deployment, st.account, "deployments")
        if did is None:
            raise ApiError(400, f"invalid deployment {body.deployment!r}: expected accounts/{st.account}/"
                                f"deployments/<id>", code="INVALID_ARGUMENT", param="deployment")
        rec, dep = deployment(did)
        if not rec.fields.get("enableAddons"):
            raise ApiError(400, f"Deployment {body.deployment} was not created with enableAddons.",
                           code="FAILED_PRECONDITION", param="deployment")
        job = st.job_of_model(body.model)
        if job is not None and job.model != dep.model:
            raise ApiError(400, f"{body.model} was tuned from {job.model}, not {dep.model}.", code="INVALID_ARGUMENT",
                           param="model")
        mid = body.model.rsplit("/", 1)[-1]
        with st.lock:
            if any(r.model == body.model and r.deployment == did for r in st.loras.values()):
                raise ApiError(409, f"{body.model} is already loaded on {body.deployment}.", code="ALREADY_EXISTS")
            lid = f"{mid[:50]}-{secrets.token_hex(3)}"
            default = body.default if body.default is not None else not any(r.model == body.model
                                                                             for r in st.loras.values())
            fields = body.model_dump(exclude_none=True, exclude={"model", "deployment", "default"})
            new = LoraRec(lid, body.model, did, st.now(), default, fields)
            st.loras[lid] = new
        return JSONResponse(st.render_lora(new))

    @router.get(ACCOUNT + "/deployedModels", summary="List deployed LoRAs")
    def list_loras(account: str, pageSize: int | None = None, pageToken: str | None = None,
                   filter: str | None = None, orderBy: str | None = None, readMask: str | None = None) -> JSONResponse:
        mine(account)
        items = ordered([st.render_lora(r) for r in list(st.loras.values())], orderBy, filter)
        return JSONResponse(page(items, "deployedModels", pageSize, pageToken))

    @router.get(ACCOUNT + "/deployedModels/{lid}", summary="Get a deployed LoRA")
    def get_lora(account: str, lid: str, readMask: str | None = None) -> JSONResponse:
        mine(account)
        return JSONResponse(st.render_lora(lora(lid)))

    @router.delete(ACCOUNT + "/deployedModels/{lid}", summary="Unload a LoRA")
    def unload_lora(account: str, lid: str) -> JSONResponse:
        mine(account)
        with st.lock:
            lora(lid)
            del st.loras[lid]
        return JSONResponse({})

    return router


def inference_router(st: State, *, auth: Callable[..., Any]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(auth)])

    @router.post("/chat/completions", summary="Create a chat completion")
    def chat(body: ChatRequest, request: Request) -> Response:
        if not body.model:
            raise ApiError(400, "model is required", param="model", code="INVALID_ARGUMENT")
        model, _, pinned = body.model.partition("#")
        did = (short_id(pinned, st.account, "deployments") or pinned.rsplit("/", 1)[-1]) if pinned else None
        if not st.serving(model, did):
            raise ApiError(404, _NOT_DEPLOYED, param="model", code="NOT_FOUND")
        if body.n is not None and body.n > 1:
            raise ApiError(400, f"n={body.n}: only n=1 is supported by the emulator", param="n")
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        params = body.model_dump(exclude_none=True, exclude={"messages", "model", "stream", "stream_options"})
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(st.now())
        head = {"id": cid, "created": created, "model": body.model}
        if not body.stream:
            reply = _call(st.provider.chat, model, messages, **params)
            usage = reply.usage.model_dump() if reply.usage else None
            return JSONResponse({**head, "object": "chat.completion", "usage": usage,
                                 "choices": [{"index": 0, "finish_reason": reply.finish_reason or "stop",
                                              "message": {"role": "assistant", "content": reply.content}}]})
        deltas = _call(st.provider.chat_stream, model, messages, **params)

        def sse() -> Iterator[bytes]:
            def frame(choice: dict[str, Any], **extra: Any) -> bytes:
                chunk = {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, **choice}], **extra}
                return f"data: {json.dumps(chunk)}\n\n".encode()

            yield frame({"delta": {"role": "assistant"}, "finish_reason": None})
            try:
                for d in deltas:
                    if d.content:
                        yield frame({"delta": {"content": d.content}, "finish_reason": None})
                    if d.finish_reason is not None:
                        yield frame({"delta": {}, "finish_reason": d.finish_reason},
                                    usage=d.usage.model_dump() if d.usage else None)
            except ProviderError as exc:  # after the headers: in-band, then the end of the stream
                yield f"data: {json.dumps(envelope(from_provider_error(exc), 'fireworks/inference'))}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    return router
