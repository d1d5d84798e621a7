"""Azure OpenAI: the OpenAI data plane with Azure's auth and quirks, plus Azure Resource
Manager deployments.

- Auth by API key, or any azure-identity ``TokenCredential`` (``DefaultAzureCredential``
  by default) through ``get_bearer_token_provider`` for
  ``https://cognitiveservices.azure.com/.default``.
- ``trainingType`` is sent in the create body (configurable; without it Azure answers the
  misleading "The specified base model does not support fine-tuning").
- Deploy = ARM ``PUT .../deployments/{name}`` with a management-scope token, polled until
  ``provisioningState`` is final; the first chat then rides out the 404
  ``DeploymentNotFound`` window a fresh deployment goes through.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import httpx
from pydantic import SecretStr

from ..config import setting
from ..errors import (ConfigurationError, NotFoundError, ProviderConnectionError, ProviderError, RateLimitError,
                      UnsupportedOperation, WaitTimeout, error_for_status)
from ..retry import RetryPolicy
from ..types import ChatDelta, ChatResponse, Deployment, DeploySpec, JobSpec
from .base import Capability
from .openai import HTTPSettings, OpenAIProvider

__all__ = ["AzureProvider", "AzureSettings", "COGNITIVE_SCOPE", "ARM_SCOPE"]

COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"
ARM_SCOPE = "https://management.azure.com/.default"
_FINAL = {"Succeeded", "Failed", "Canceled"}


class AzureSettings(HTTPSettings):
    endpoint: str = setting(..., env=("AZURE_OPENAI_ENDPOINT",),
                            example='endpoint = "https://my-resource.openai.azure.com"')
    api_version: str = setting("2025-04-01-preview", env=("OPENAI_API_VERSION", "AZURE_OPENAI_API_VERSION"))
    api_key: SecretStr | None = setting(None, env=("AZURE_OPENAI_API_KEY",), secret=True,
                                        example="export AZURE_OPENAI_API_KEY=...",
                                        description="Omit to authenticate with Entra ID (a TokenCredential).")
    training_type: str | None = setting("Standard", description="Sent as trainingType (Standard, GlobalStandard, "
                                                                "Developer); empty to omit.")
    subscription_id: str | None = setting(None, env=("AZURE_SUBSCRIPTION_ID",),
                                          example='subscription_id = "00000000-0000-0000-0000-000000000000"')
    resource_group: str | None = setting(None, env=("AZURE_RESOURCE_GROUP",), example='resource_group = "my-rg"')
    account: str | None = setting(None, env=("AZURE_OPENAI_ACCOUNT",), example='account = "my-resource"')
    arm_endpoint: str = setting("https://management.azure.com", description="Azure Resource Manager.")
    arm_api_version: str = setting("2024-10-01")
    deployment_sku: str = setting("Standard", description="Standard, GlobalStandard, Developer, ...")
    deployment_capacity: int = setting(1)
    deploy_timeout: float = setting(1800.0, description="Seconds to wait for provisioning.")
    warmup_timeout: float = setting(600.0, description="Seconds to retry DeploymentNotFound after provisioning.")


class AzureProvider(OpenAIProvider):
    """Azure OpenAI fine-tuning and deployments."""

    name = "azure"
    capabilities = OpenAIProvider.capabilities - {Capability.DELETE_MODEL}
    Settings = AzureSettings

    def __init__(self, settings: AzureSettings | None = None, *, credential: Any = None, http_client: Any = None,
                 arm_client: httpx.Client | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> None:
        self._credential = credential
        self.sleep = sleep
        super().__init__(settings, http_client=http_client, retry=retry, **kwargs)
        s: AzureSettings = self.settings  # type: ignore[assignment]
        self._arm = arm_client or httpx.Client(base_url=s.arm_endpoint.rstrip("/"), timeout=s.timeout)

    def _make_client(self) -> Any:
        import openai

        s: AzureSettings = self.settings  # type: ignore[assignment]
        common = dict(azure_endpoint=s.endpoint, api_version=s.api_version, timeout=s.timeout, max_retries=0,
                      http_client=self._http_client)
        if s.api_key is not None:
            return openai.AzureOpenAI(api_key=s.api_key.get_secret_value(), **common)
        from azure.identity import get_bearer_token_provider

        return openai.AzureOpenAI(azure_ad_token_provider=get_bearer_token_provider(self.credential, COGNITIVE_SCOPE),
                                  **common)

    @property
    def credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def close(self) -> None:
        super().close()
        self._arm.close()

    def _create_kwargs(self, spec: JobSpec) -> dict[str, Any]:
        kwargs = super()._create_kwargs(spec)
        s: AzureSettings = self.settings  # type: ignore[assignment]
        if s.training_type and "trainingType" not in spec.extra:
            kwargs.setdefault("extra_body", {})["trainingType"] = s.training_type
        return kwargs

    def delete_model(self, model: str) -> None:
        raise UnsupportedOperation("deleting a fine-tuned model", self.name,
                                   "Delete it in the Azure AI Foundry portal; delete its deployments with "
                                   "client.deployments.delete.")

    # ------------------------------------------------------------------ Azure Resource Manager
    def _arm_path(self, name: str | None = None) -> str:
        s: AzureSettings = self.settings  # type: ignore[assignment]
        missing = [k for k in ("subscription_id", "resource_group", "account") if not getattr(s, k)]
        if missing:
            field = missing[0]
            example = AzureSettings.model_fields[field].json_schema_extra["example"]  # type: ignore[index]
            raise ConfigurationError(
                f"Missing setting {field!r} for Azure deployments (Azure Resource Manager needs subscription_id, "
                f"resource_group and account). Looked in: the {field}= argument; environment variable(s) "
                f"{', '.join(AzureSettings.env_names(field))}; the profile. Example, in finetune.toml: {example}")
        path = (f"/subscriptions/{s.subscription_id}/resourceGroups/{s.resource_group}/providers/"
                f"Microsoft.CognitiveServices/accounts/{s.account}/deployments")
        return f"{path}/{name}" if name else path

    def _arm_request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        s: AzureSettings = self.settings  # type: ignore[assignment]

        def attempt() -> httpx.Response:
            try:
                token = self.credential.get_token(ARM_SCOPE).token
            except Exception as exc:
                raise ConfigurationError(f"Could not get an Azure Resource Manager token ({type(exc).__name__}: "
                                         f"{exc}). Sign in (az login) or pass credential=...") from None
            try:
                resp = self._arm.request(method, path, params={"api-version": s.arm_api_version}, json=json,
                                         headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                raise ProviderConnectionError(f"Azure Resource Manager {method} {path}: {exc}",
                                              provider=self.name) from None
            if resp.status_code >= 400 and not (method == "DELETE" and resp.status_code == 404):
                raise self._arm_error(resp)
            return resp

        return self.retry.call(attempt, describe=f"{self.name}: ARM {method} {path.rsplit('/', 1)[-1]}")

    def _arm_error(self, resp: httpx.Response) -> ProviderError:
        try:
            err = resp.json().get("error", {})
        except ValueError:
            err = {}
        message = err.get("message") or f"HTTP {resp.status_code} from Azure Resource Manager"
        kwargs: dict[str, Any] = dict(provider=self.name, status_code=resp.status_code, code=err.get("code"),
                                      request_id=resp.headers.get("x-ms-request-id"))
        cls = error_for_status(resp.status_code)
        if cls is RateLimitError:
            retry_after = resp.headers.get("retry-after")
            return RateLimitError(message, retry_after=float(retry_after) if retry_after else None, **kwargs)
        return cls(message, **kwargs)

    def _deployment(self, body: dict[str, Any]) -> Deployment:
        props = body.get("properties") or {}
        raw = props.get("provisioningState") or "Succeeded"
        status = {"Succeeded": "succeeded", "Failed": "failed", "Canceled": "failed",
                  "Deleting": "deleting"}.get(raw, "creating")
        sku = body.get("sku") or {}
        return Deployment(name=body.get("name") or "", model=(props.get("model") or {}).get("name") or "",
                          provider=self.name, status=status, raw_status=raw, ready=raw == "Succeeded",  # type: ignore[arg-type]
                          sku=sku.get("name"), capacity=sku.get("capacity"), raw=body)

    def deploy(self, model: str, spec: DeploySpec) -> Deployment:
        s: AzureSettings = self.settings  # type: ignore[assignment]
        name = spec.name or model.replace(":", "-")[:64]
        body = {"sku": {"name": spec.sku or s.deployment_sku, "capacity": spec.capacity or s.deployment_capacity},
                "properties": {"model": {"format": "OpenAI", "name": model, "version": "1"}}}
        dep = self._deployment(self._arm_request("PUT", self._arm_path(name), json=body).json())
        deadline = time.monotonic() + s.deploy_timeout
        interval = 2.0
        while dep.raw_status not in _FINAL:
            if time.monotonic() > deadline:
                raise WaitTimeout(f"Deployment {name} is still {dep.raw_status} after {s.deploy_timeout:g} s; it "
                                  f"keeps provisioning. Check it with client.deployments.get({name!r}).")
            self.sleep(interval)
            interval = min(15.0, interval * 1.5)
            dep = self.get_deployment(name)
        if dep.raw_status != "Succeeded":
            raise ProviderError(f"Deployment {name} ended {dep.raw_status}.", provider=self.name)
        dep.ready = False  # Azure answers DeploymentNotFound for a while: the first chat waits it out.
        return dep

    def get_deployment(self, name: str) -> Deployment:
        return self._deployment(self._arm_request("GET", self._arm_path(name)).json())

    def list_deployments(self) -> list[Deployment]:
        return [self._deployment(d) for d in self._arm_request("GET", self._arm_path()).json().get("value", [])]

    def delete_deployment(self, name: str) -> None:
        resp = self._arm_request("DELETE", self._arm_path(name))
        if resp.status_code == 404:
            raise NotFoundError(f"No deployment named {name!r}.", provider=self.name, status_code=404,
                                code="DeploymentNotFound")

    # ------------------------------------------------------------------ chat through a deployment
    def _warming_up(self, deployment: str) -> bool:
        s: AzureSettings = self.settings  # type: ignore[assignment]
        if not (s.subscription_id and s.resource_group and s.account):
            return False
        try:
            return self.get_deployment(deployment).raw_status == "Succeeded"
        except ProviderError:
            return False

    def _through_warmup(self, deployment: str, fn: Callable[[], Any]) -> Any:
        s: AzureSettings = self.settings  # type: ignore[assignment]
        deadline = time.monotonic() + s.warmup_timeout
        interval = 5.0
        while True:
            try:
                return fn()
            except NotFoundError as exc:
                if exc.code != "DeploymentNotFound" or time.monotonic() > deadline or not self._warming_up(deployment):
                    if exc.code == "DeploymentNotFound":
                        raise NotFoundError(f"{exc.detail} (deployment {deployment!r})", provider=self.name,
                                            status_code=404, code=exc.code) from None
                    raise
            self.sleep(interval)
            interval = min(30.0, interval * 1.5)

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        return self._through_warmup(model, lambda: OpenAIProvider.chat(self, model, messages, **params))

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        holder: dict[str, Iterator[ChatDelta]] = {}

        def start() -> ChatDelta:
            # A failed stream cannot be resumed: each try opens a new one.
            stream = OpenAIProvider.chat_stream(self, model, messages, **params)
            first = next(stream)
            holder["stream"] = stream
            return first

        yield self._through_warmup(model, start)
        yield from holder["stream"]

    def chat_target(self, deployment: Deployment) -> str:
        return deployment.name
