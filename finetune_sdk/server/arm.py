"""Azure Resource Manager deployments of fine-tuned models, on the emulator.

``PUT/GET/DELETE /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices
/accounts/{account}/deployments/{name}?api-version=2024-10-01``, the list route and the
``Azure-AsyncOperation`` status route. ``provisioningState`` moves Accepted → Creating →
Succeeded over (simulated) time; inference through the data plane answers 404
``DeploymentNotFound`` for a warm-up window after that, as the real service does.
Shapes: ../shared/specs/azure-mgmt-2024-10-01-examples.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ..errors import NotFoundError
from ..types import Deployment, DeploySpec
from .api import Backend, _call
from .errors import ApiError
from .schemas import ArmDeploymentRequest

__all__ = ["arm_router", "ARM_API_VERSIONS"]

ARM_API_VERSIONS = ("2023-05-01", "2024-04-01-preview", "2024-06-01-preview", "2024-10-01", "2025-04-01-preview",
                    "2025-06-01")
_ACCOUNT = ("/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.CognitiveServices"
            "/accounts/{account}")


def arm_router(b: Backend, *, auth: Callable[..., Any], location: str = "eastus") -> APIRouter:
    router = APIRouter(dependencies=[Depends(auth)])
    operations: dict[str, str] = {}  # operation id -> deployment name
    lock = threading.Lock()

    def api_version(request: Request) -> str:
        version = request.query_params.get("api-version")
        if not version:
            raise ApiError(400, "The api-version query parameter (?api-version=) is required for all requests.",
                           code="MissingApiVersionParameter")
        if version not in ARM_API_VERSIONS:
            raise ApiError(400, f"No registered resource provider found for location '{location}' and API version "
                                f"'{version}' for type 'accounts/deployments'. The supported api-versions are "
                                f"'{', '.join(ARM_API_VERSIONS)}'.", code="NoRegisteredProviderFound")
        return version

    def render(dep: Deployment, subscription: str, group: str, account: str) -> dict[str, Any]:
        rid = _ACCOUNT.format(subscription=subscription, group=group, account=account) + f"/deployments/{dep.name}"
        return {"id": rid, "name": dep.name, "type": "Microsoft.CognitiveServices/accounts/deployments",
                "sku": {"name": dep.sku or "Standard", "capacity": dep.capacity or 1},
                "properties": {"model": {"format": "OpenAI", "name": dep.model, "version": "1"},
                               "provisioningState": dep.raw_status or dep.status.capitalize(),
                               "versionUpgradeOption": "NoAutoUpgrade"}}

    def operation_url(request: Request, subscription: str, op: str, version: str) -> str:
        base = str(request.base_url).rstrip("/")
        return (f"{base}/subscriptions/{subscription}/providers/Microsoft.CognitiveServices/locations/{location}"
                f"/operationResults/{op}?api-version={version}")

    def get_or_none(name: str) -> Deployment | None:
        try:
            return b.provider.get_deployment(name)
        except NotFoundError:
            return None

    @router.put(_ACCOUNT + "/deployments/{name}", summary="Create or update a deployment")
    def put(subscription: str, group: str, account: str, name: str, body: ArmDeploymentRequest, request: Request,
            version: str = Depends(api_version)) -> JSONResponse:
        existed = get_or_none(name) is not None
        sku = body.sku
        dep = _call(b.provider.deploy, body.properties.model.name,
                    DeploySpec(name=name, sku=sku.name if sku else None, capacity=sku.capacity if sku else None))
        op = uuid.uuid4().hex
        with lock:
            operations[op] = name
        headers = {"Azure-AsyncOperation": operation_url(request, subscription, op, version)}
        return JSONResponse(render(dep, subscription, group, account), status_code=200 if existed else 201,
                            headers=headers)

    @router.get(_ACCOUNT + "/deployments/{name}", summary="Get a deployment")
    def get(subscription: str, group: str, account: str, name: str,
            version: str = Depends(api_version)) -> JSONResponse:
        dep = get_or_none(name)
        if dep is None:
            raise ApiError(404, f"The specified deployment '{name}' was not found.", code="DeploymentNotFound")
        return JSONResponse(render(dep, subscription, group, account))

    @router.get(_ACCOUNT + "/deployments", summary="List deployments")
    def list_(subscription: str, group: str, account: str, version: str = Depends(api_version)) -> JSONResponse:
        return JSONResponse({"value": [render(d, subscription, group, account)
                                       for d in _call(b.provider.list_deployments)]})

    @router.delete(_ACCOUNT + "/deployments/{name}", summary="Delete a deployment")
    def delete(subscription: str, group: str, account: str, name: str,
               version: str = Depends(api_version)) -> Response:
        if get_or_none(name) is None:
            return Response(status_code=204)
        _call(b.provider.delete_deployment, name)
        return Response(status_code=200)

    @router.get("/subscriptions/{subscription}/providers/Microsoft.CognitiveServices/locations/{loc}"
                "/operationResults/{op}", summary="Status of an asynchronous operation")
    def operation(subscription: str, loc: str, op: str, version: str = Depends(api_version)) -> JSONResponse:
        with lock:
            name = operations.get(op)
        if name is None:
            raise ApiError(404, f"Operation {op} was not found.", code="OperationNotFound")
        dep = get_or_none(name)
        state = "Failed" if dep is None or dep.status == "failed" else (
            "Succeeded" if dep.status == "succeeded" else "InProgress")
        return JSONResponse({"id": f"/subscriptions/{subscription}/providers/Microsoft.CognitiveServices/locations/"
                                   f"{loc}/operationResults/{op}", "name": op, "status": state})

    return router
