"""The ASGI application: the OpenAI dialect at ``/v1``, the Azure dialect at ``/openai``, the
Azure Resource Manager deployment routes, and (for the emulator) ``/_emulator`` controls.

Every error is a 4xx/5xx in the envelope of the dialect being spoken — request validation
included (400, never FastAPI's 422) — and bad requests never produce a 5xx.
"""

from __future__ import annotations

import hmac
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._secrets import get_logger, register_secret
from ..errors import ProviderError
from ..providers.base import Provider
from .api import Backend, data_plane_router
from .arm import arm_router
from .errors import ENVELOPES, ApiError, envelope, from_provider_error
from .faults import FaultMiddleware, FaultPlan
from .limits import BodyLimitMiddleware
from .validation import validation_message

__all__ = ["create_app", "ServerConfig", "AZURE_API_VERSIONS", "MODULE_DIALECTS"]

_log = get_logger(__name__)

#: Azure OpenAI data-plane versions that carry fine-tuning (hosted-apis.md §3.2).
AZURE_API_VERSIONS = ("2024-02-01", "2024-05-01-preview", "2024-06-01", "2024-08-01-preview", "2024-10-01-preview",
                      "2024-10-21", "2025-01-01-preview", "2025-02-01-preview", "2025-03-01-preview",
                      "2025-04-01-preview")
_PAUSE_SINCE = "2025-04-01-preview"


@dataclass
class ServerConfig:
    """How the server authenticates and what it protects itself against."""

    api_key: str | None = None                      # None: no authentication (loopback use)
    azure_tokens: tuple[str, ...] = ()              # Entra bearer tokens accepted by the Azure dialect
    arm_token: str | None = None                    # bearer token for Azure Resource Manager routes
    organization: str = "org-emulator"
    azure_require_training_type: bool = True
    max_json_bytes: int = 8 * 1024 * 1024
    max_upload_bytes: int = 600 * 1024 * 1024
    faults: FaultPlan | None = None
    admin: bool = False                             # expose /_emulator controls
    extra: dict[str, Any] = field(default_factory=dict)


#: Dialects mounted by a module of this package (``finetune_sdk.server.<name>``, with a
#: ``mount(app, provider, config, auth=...)`` function), under ``/<name>``.
MODULE_DIALECTS = ("together", "fireworks")


def _dialect_of(path: str) -> str:
    for name in MODULE_DIALECTS:
        if path == f"/{name}" or path.startswith(f"/{name}/"):
            # A service may answer differently under a path of its own (Fireworks' inference API
            # vs its control plane): its module registers that envelope as "<name>/<first segment>".
            sub = f"{name}/{path[len(name) + 2:].split('/', 1)[0]}"
            return sub if sub in ENVELOPES else name
    return "azure" if path.startswith(("/openai", "/subscriptions")) else "openai"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def create_app(*, openai: Provider[Any] | None = None, azure: Provider[Any] | None = None,
               dialects: Mapping[str, Provider[Any]] | None = None, config: ServerConfig | None = None,
               routers: Iterable[Any] = ()) -> FastAPI:
    """Build the server over the given providers.

    Args:
        openai: served in the OpenAI dialect under ``/v1``.
        azure: served in the Azure dialect under ``/openai`` (and ARM deployments).
        dialects: more services by name (``together``, ``fireworks``), each served under
            ``/<name>`` by its module in this package.
        config: authentication, limits, faults.
        routers: extra routers to include (the local inference server adds its own).
    """
    cfg = config or ServerConfig()
    for secret in (cfg.api_key, cfg.arm_token, *cfg.azure_tokens):
        register_secret(secret)
    app = FastAPI(title="finetune-sdk server", version="1", docs_url=None, redoc_url=None,
                  description="OpenAI-compatible fine-tuning and chat API over a finetune-sdk provider.")
    app.state.config = cfg
    app.state.backends = {}

    def openai_auth(request: Request) -> None:
        if cfg.api_key is None:
            return
        token = _bearer(request)
        if token is None:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if not _same(token, cfg.api_key):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def azure_auth(request: Request) -> None:
        if cfg.api_key is None and not cfg.azure_tokens:
            return
        key = request.headers.get("api-key")
        token = _bearer(request)
        if _same(key, cfg.api_key) or any(_same(token, t) for t in cfg.azure_tokens):
            return
        raise ApiError(401, "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                            "provide a valid key for an active subscription and use a correct regional API endpoint "
                            "for your resource.", code="401")

    def azure_version(request: Request) -> str:
        version = request.query_params.get("api-version")
        if version not in AZURE_API_VERSIONS:
            # Azure answers a missing or unknown api-version with a bare 404 (MicrosoftDocs/azure-docs#114602).
            raise ApiError(404, "Resource not found", code="404")
        return version

    def pause_version(request: Request) -> None:
        if request.query_params.get("api-version", "") < _PAUSE_SINCE:
            raise ApiError(404, "Resource not found", code="404")

    def arm_auth(request: Request) -> None:
        expected = cfg.arm_token or cfg.api_key
        if expected is None:
            return
        token = _bearer(request)
        if token is None:
            raise ApiError(401, "Authentication failed. The 'Authorization' header is missing.",
                           code="AuthenticationFailed")
        if not _same(token, expected):
            raise ApiError(401, "The access token is invalid.", code="InvalidAuthenticationToken")

    if openai is not None:
        b = Backend(openai, "openai", cfg.organization)
        app.state.backends["openai"] = b
        app.include_router(data_plane_router(b, auth=openai_auth), prefix="/v1")
    if azure is not None:
        b = Backend(azure, "azure", cfg.organization, require_training_type=cfg.azure_require_training_type)
        app.state.backends["azure"] = b
        app.include_router(data_plane_router(b, auth=azure_auth, api_version=azure_version,
                                             pause_version=pause_version), prefix="/openai")
        app.include_router(arm_router(b, auth=arm_auth))
    for name, provider in (dialects or {}).items():
        if name not in MODULE_DIALECTS:
            raise ValueError(f"unknown dialect {name!r}; known: openai, azure, {', '.join(MODULE_DIALECTS)}")
        importlib.import_module(f"{__package__}.{name}").mount(app, provider, cfg, auth=openai_auth)
    for router in routers:
        app.include_router(router)
    if cfg.admin:
        from .admin import admin_router

        app.include_router(admin_router(app, auth=openai_auth), include_in_schema=False)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(envelope(exc, _dialect_of(request.url.path)), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(ProviderError)
    async def _provider_error(request: Request, exc: ProviderError) -> JSONResponse:
        err = from_provider_error(exc)
        return JSONResponse(envelope(err, _dialect_of(request.url.path)), status_code=err.status,
                            headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc, request.url.path)
        err = ApiError(400, message, param=param, code="invalidPayload" if _dialect_of(request.url.path) == "azure"
                       else None)
        return JSONResponse(envelope(err, _dialect_of(request.url.path)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = ApiError(404, f"Invalid URL ({request.method} {request.url.path})")
        elif exc.status_code == 405:
            err = ApiError(405, f"Invalid method for URL ({request.method} {request.url.path})")
        else:
            err = ApiError(exc.status_code, str(exc.detail))
        return JSONResponse(envelope(err, _dialect_of(request.url.path)), status_code=err.status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unhandled error on %s %s", request.method, request.url.path)
        err = ApiError(500, "The server had an error while processing your request. Sorry about that!")
        return JSONResponse(envelope(err, _dialect_of(request.url.path)), status_code=500)

    @app.get("/health", include_in_schema=True, summary="Liveness")
    def health() -> dict[str, Any]:
        return {"status": "ok", "dialects": sorted(app.state.backends)}

    app.add_middleware(FaultMiddleware, plan=lambda: cfg.faults, dialect_of=_dialect_of)
    app.add_middleware(BodyLimitMiddleware, max_json_bytes=cfg.max_json_bytes,
                       max_upload_bytes=cfg.max_upload_bytes, dialect_of=_dialect_of)
    return app
