"""Azure OpenAI: OpenAI's fine-tuning API with Azure's addresses, auth and quirks, plus Azure
Resource Manager (ARM) deployments.

- Data plane at ``{endpoint}/openai/...?api-version=...``; auth by ``api-key``, or a bearer
  token for ``https://cognitiveservices.azure.com/.default`` from any azure-identity
  ``TokenCredential`` (``DefaultAzureCredential`` by default), refreshed before it expires.
- ``trainingType`` is sent in the create body (without it Azure answers the misleading
  "The specified base model does not support fine-tuning").
- Deploy = ARM ``PUT .../deployments/{name}`` with a management-scope token (from the
  credential, or the static ``arm_token`` setting, as ``az account get-access-token``
  prints it), polled until ``provisioningState`` is final; the first chat then rides out
  the 404 ``DeploymentNotFound`` window a fresh deployment goes through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import SecretStr

from .._secrets import register_secret
from ..config import setting
from ..errors import ConfigurationError, NotFoundError, ProviderError, UnsupportedOperation
from ..polling import Poller, PollSchedule
from ..types import ChatDelta, ChatResponse, Deployment, DeploySpec, JobSpec, JobStatus
from .base import Capability
from .http import Transport
from .openai import OpenAIProvider, OpenAIWireSettings

__all__ = ["AzureProvider", "AzureSettings", "COGNITIVE_SCOPE", "ARM_SCOPE"]

COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"
ARM_SCOPE = "https://management.azure.com/.default"
_FINAL = {"Succeeded", "Failed", "Canceled"}
T = TypeVar("T")


class AzureSettings(OpenAIWireSettings):
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
    arm_token: SecretStr | None = setting(
        None, env=("AZURE_ARM_TOKEN",), secret=True,
        example="export AZURE_ARM_TOKEN=$(az account get-access-token --query accessToken -o tsv)",
        description="A static Azure Resource Manager bearer token; omit to get one from the credential.")
    deployment_sku: str = setting("Standard", description="Standard, GlobalStandard, Developer, ...")
    deployment_capacity: int = setting(1)
    deploy_timeout: float = setting(1800.0, description="Seconds to wait for provisioning.")
    warmup_timeout: float = setting(600.0, description="Seconds to retry DeploymentNotFound after provisioning.")


class _Tokens:
    """Bearer tokens from a TokenCredential, cached per scope until shortly before they expire."""

    def __init__(self, credential: Callable[[], Any]) -> None:
        self._credential = credential
        self._cache: dict[str, tuple[str, float]] = {}

    def get(self, scope: str) -> str:
        token, expires = self._cache.get(scope, ("", 0.0))
        if time.time() < expires - 300:
            return token
        try:
            access = self._credential().get_token(scope)
        except Exception as exc:
            raise ConfigurationError(f"Could not get an Azure token for {scope} ({type(exc).__name__}: {exc}). "
                                     f"Sign in (az login), pass credential=..., or use an API key.") from None
        register_secret(access.token)
        self._cache[scope] = (access.token, float(access.expires_on))
        return str(access.token)


class AzureProvider(OpenAIProvider[AzureSettings]):
    """Azure OpenAI fine-tuning and deployments."""

    name = "azure"
    capabilities = OpenAIProvider.capabilities - {Capability.DELETE_MODEL}
    # FineTuningState (2025-04-01-preview); `created` is documented but never returned.
    statuses: ClassVar[Mapping[str, JobStatus]] = {
        "created": JobStatus.QUEUED, "pending": JobStatus.QUEUED, "running": JobStatus.RUNNING,
        "pausing": JobStatus.RUNNING, "paused": JobStatus.PAUSED, "resuming": JobStatus.RUNNING,
        "succeeded": JobStatus.SUCCEEDED, "failed": JobStatus.FAILED, "cancelled": JobStatus.CANCELLED}
    Settings = AzureSettings

    def __init__(self, settings: AzureSettings | None = None, *, credential: Any = None,
                 http_client: httpx.Client | None = None, arm_client: httpx.Client | None = None,
                 **kwargs: Any) -> None:
        self._credential = credential
        self._tokens = _Tokens(lambda: self.credential)
        super().__init__(settings, http_client=http_client, **kwargs)
        s = self.settings
        self.arm = Transport(self.name, s.arm_endpoint, policy=lambda: self.retry, headers=self._arm_headers,
                             params=lambda: {"api-version": s.arm_api_version}, timeout=s.timeout,
                             client=arm_client or http_client)

    @property
    def credential(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def base_url(self) -> str:
        return self.settings.endpoint.rstrip("/") + "/openai"

    def default_params(self) -> Mapping[str, str]:
        return {"api-version": self.settings.api_version}

    def auth_headers(self) -> Mapping[str, str]:
        if self.settings.api_key is not None:
            return {"api-key": self.settings.api_key.get_secret_value()}
        return {"Authorization": f"Bearer {self._tokens.get(COGNITIVE_SCOPE)}"}

    def _arm_headers(self) -> Mapping[str, str]:
        token = self.settings.arm_token
        return {"Authorization": f"Bearer {token.get_secret_value() if token else self._tokens.get(ARM_SCOPE)}"}

    def close(self) -> None:
        super().close()
        self.arm.close()

    def create_body(self, spec: JobSpec) -> dict[str, Any]:
        body = super().create_body(spec)
        if self.settings.training_type and "trainingType" not in spec.extra:
            body["trainingType"] = self.settings.training_type
        return body

    def is_fine_tuned(self, model: str) -> bool:
        return ".ft-" in model  # {base}.ft-{32 hex}, checkpoints with :ckpt-step-N

    def delete_model(self, model: str) -> None:
        raise UnsupportedOperation("deleting a fine-tuned model", self.name,
                                   "Delete it in the Azure AI Foundry portal; delete its deployments with "
                                   "client.deployments.delete.")

    # ------------------------------------------------------------------ Azure Resource Manager
    def _arm_path(self, name: str | None = None) -> str:
        s = self.settings
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
        s = self.settings
        name = spec.name or model.replace(":", "-")[:64]
        body = {"sku": {"name": spec.sku or s.deployment_sku, "capacity": spec.capacity or s.deployment_capacity},
                "properties": {"model": {"format": "OpenAI", "name": model, "version": "1"}}}
        self.arm.json("PUT", self._arm_path(name), json=body, describe=f"deploying {model} as {name}")
        poller: Poller[Deployment] = Poller(PollSchedule(initial=2.0, maximum=15.0, growth=1.5),
                                            sleep=self.retry.sleep, clock=self.poll_clock)
        dep = poller.until(lambda: self.get_deployment(name), lambda d: d.raw_status in _FINAL,
                           what=f"provisioning deployment {name}", timeout=s.deploy_timeout,
                           on_timeout=lambda d: f"Deployment {name} is still {d.raw_status if d else 'unknown'} after "
                                                f"{s.deploy_timeout:g} s; it keeps provisioning. Check it with "
                                                f"client.deployments.get({name!r}).")
        if dep.raw_status != "Succeeded":
            raise ProviderError(f"Deployment {name} ended {dep.raw_status}.", provider=self.name)
        dep.ready = False  # Azure answers DeploymentNotFound for a while: the first chat waits it out.
        return dep

    def get_deployment(self, name: str) -> Deployment:
        return self._deployment(self.arm.json("GET", self._arm_path(name), describe=f"reading deployment {name}"))

    def list_deployments(self) -> list[Deployment]:
        return [self._deployment(d) for d in self.arm.json("GET", self._arm_path(),
                                                           describe="listing deployments").get("value", [])]

    def delete_deployment(self, name: str) -> None:
        response = self.arm.request("DELETE", self._arm_path(name), describe=f"deleting deployment {name}")
        if response.status_code == 204:  # ARM's answer for a deployment that does not exist
            raise NotFoundError(f"No deployment named {name!r}.", provider=self.name, status_code=404,
                                code="DeploymentNotFound")

    # ------------------------------------------------------------------ chat through a deployment
    def chat_route(self, model: str) -> str:
        return f"/deployments/{model}/chat/completions"

    def _through_warmup(self, deployment: str, fn: Callable[[], T]) -> T:
        """``fn()``, riding out the DeploymentNotFound window of a fresh deployment — only while
        ARM says the deployment exists, so that a typo still fails at once."""
        checked: list[bool] = []

        def attempt() -> T | None:
            try:
                return fn()
            except NotFoundError as exc:
                if exc.code != "DeploymentNotFound":
                    raise
                if not checked:
                    checked.append(self._provisioned(deployment))
                if not checked[0]:
                    raise NotFoundError(f"{exc.detail} (deployment {deployment!r})", provider=self.name,
                                        status_code=404, code=exc.code) from None
                return None

        poller: Poller[T | None] = Poller(PollSchedule(initial=5.0, maximum=30.0, growth=1.5),
                                          sleep=self.retry.sleep, clock=self.poll_clock)
        result = poller.until(attempt, lambda value: value is not None, what=f"warming up deployment {deployment}",
                              timeout=self.settings.warmup_timeout,
                              on_timeout=lambda _: f"Deployment {deployment} still answers DeploymentNotFound "
                                                   f"{self.settings.warmup_timeout:g} s after it was provisioned.",
                              ride_outages=False)
        return result  # type: ignore[return-value]

    def _provisioned(self, deployment: str) -> bool:
        s = self.settings
        if not (s.subscription_id and s.resource_group and s.account):
            return False
        try:
            return self.get_deployment(deployment).raw_status == "Succeeded"
        except ProviderError:
            return False

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        return self._through_warmup(model, lambda: OpenAIProvider.chat(self, model, messages, **params))

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        holder: list[Iterator[ChatDelta]] = []

        def start() -> ChatDelta:  # a failed stream cannot be resumed: each try opens a new one
            stream = OpenAIProvider.chat_stream(self, model, messages, **params)
            first = next(stream)
            holder[:] = [stream]
            return first

        yield self._through_warmup(model, start)
        yield from holder[0]

    def chat_target(self, deployment: Deployment) -> str:
        return deployment.name
