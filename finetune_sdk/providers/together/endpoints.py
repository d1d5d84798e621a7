"""Deploying on Together: serverless LoRA where its base allows it, else a dedicated endpoint.

A dedicated endpoint (``POST /endpoints``) bills while it runs, so it is created exactly
once: the endpoints of the model are listed first, and after a create whose answer was
lost the one that appeared is taken instead of a second one. Its state goes PENDING →
STARTING → STARTED; chat addresses it by its ``name``, not its id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import NotFoundError, ProviderError, UnsupportedOperation
from ...polling import Poller, PollSchedule
from ...retry import create_exactly_once
from ...types import Deployment, DeploySpec, Job
from . import parse

if TYPE_CHECKING:
    from ..http import Transport
    from .provider import TogetherSettings

__all__ = ["Endpoints"]

_FINAL = {"STARTED", "STOPPED", "ERROR", "FAILED"}
_STATUS = {"PENDING": "creating", "STARTING": "creating", "STARTED": "succeeded", "STOPPING": "succeeded",
           "STOPPED": "succeeded", "ERROR": "failed", "FAILED": "failed"}
# Fields of POST /endpoints a caller may add through DeploySpec.extra.
_ENDPOINT_EXTRAS = ("inactive_timeout", "disable_speculative_decoding", "availability_zone", "hardware")


class Endpoints:
    """The deployment half of :class:`~finetune_sdk.providers.together.TogetherProvider`."""

    name: ClassVar[str]
    settings: TogetherSettings
    http: Transport
    poll_clock: Callable[[], float]
    retry: Any

    if TYPE_CHECKING:
        def _fine_tunes(self) -> dict[str, Job]: ...

    def _serverless(self, model: str) -> bool:
        """A succeeded fine-tune of a base Together serves LoRA adapters of without an endpoint."""
        job = self._fine_tunes().get(model)
        return job is not None and job.model in self.settings.serverless_lora_models

    def _serverless_deployment(self, model: str) -> Deployment:
        return Deployment(name=model, model=model, provider=self.name, status="succeeded", raw_status="serverless",
                          ready=True, base_url=self.http.base_url)

    def _deployment(self, raw: dict[str, Any]) -> Deployment:
        state = str(raw.get("state") or "").upper()
        found = raw.get("autoscaling")
        scaling: dict[str, Any] = found if isinstance(found, dict) else {}
        return Deployment(name=raw.get("id") or "", model=raw.get("model") or "", provider=self.name,
                          status=_STATUS.get(state, "creating"), raw_status=state, ready=state == "STARTED",  # type: ignore[arg-type]
                          created_at=parse.iso_time(raw.get("created_at")), sku=raw.get("hardware"),
                          capacity=scaling.get("max_replicas"), base_url=self.http.base_url, raw=raw)

    def _endpoint_ids(self, model: str) -> set[str]:
        listed = self.http.json("GET", "/endpoints", params={"type": "dedicated", "mine": "true"},
                                describe="listing endpoints")
        return {e["id"] for e in listed.get("data") or [] if e.get("model") == model and e.get("id")}

    def deploy(self, model: str, spec: DeploySpec) -> Deployment:
        """Serverless for a fine-tune of a serverless-LoRA base (no hardware asked for), else a
        dedicated endpoint, waited on until it is STARTED."""
        s = self.settings
        unknown = sorted(set(spec.extra) - set(_ENDPOINT_EXTRAS))
        if unknown:
            raise UnsupportedOperation(f"the deployment option(s) {', '.join(unknown)}", self.name,
                                       f"Together endpoints take {', '.join(_ENDPOINT_EXTRAS)}.")
        hardware = spec.sku or spec.extra.get("hardware")
        if hardware is None and self._serverless(model):
            return self._serverless_deployment(model)
        replicas = max(s.endpoint_min_replicas, spec.capacity or s.endpoint_max_replicas)
        body: dict[str, Any] = {"model": model, "hardware": hardware or s.endpoint_hardware, "state": "STARTED",
                                "autoscaling": {"min_replicas": s.endpoint_min_replicas, "max_replicas": replicas}}
        if spec.name:
            body["display_name"] = spec.name
        if s.endpoint_inactive_timeout is not None:
            body["inactive_timeout"] = s.endpoint_inactive_timeout
        body.update({k: v for k, v in spec.extra.items() if k != "hardware"})
        before = self._endpoint_ids(model)

        def appeared() -> dict[str, Any] | None:
            new = sorted(self._endpoint_ids(model) - before)
            return self.http.json("GET", f"/endpoints/{new[0]}", describe="reading the new endpoint") if new else None

        created = create_exactly_once(
            lambda: self.http.json("POST", "/endpoints", json=body, describe=f"creating an endpoint for {model}"),
            appeared, self.retry, clock=self.poll_clock, describe=f"{self.name}: creating an endpoint")
        endpoint_id = created["id"]
        poller: Poller[Deployment] = Poller(PollSchedule(initial=5.0, maximum=30.0, growth=1.5),
                                            sleep=self.retry.sleep, clock=self.poll_clock)
        dep = poller.until(lambda: self.get_deployment(endpoint_id), lambda d: d.raw_status in _FINAL,
                           what=f"starting endpoint {endpoint_id}", timeout=s.deploy_timeout,
                           on_timeout=lambda d: f"Endpoint {endpoint_id} is still {d.raw_status if d else 'unknown'} "
                                                f"after {s.deploy_timeout:g} s; it keeps starting (and billing). Check "
                                                f"it with client.deployments.get({endpoint_id!r}).")
        if dep.raw_status != "STARTED":
            raise ProviderError(f"Endpoint {endpoint_id} ended {dep.raw_status}.", provider=self.name)
        return dep

    def get_deployment(self, name: str) -> Deployment:
        """A dedicated endpoint by id (``endpoint-...``), or a serverless fine-tune by model name."""
        if name.startswith("endpoint-"):
            return self._deployment(self.http.json("GET", f"/endpoints/{name}", describe=f"reading endpoint {name}"))
        if self._serverless(name):
            return self._serverless_deployment(name)
        raise NotFoundError(f"No deployment named {name!r}: dedicated endpoints are named endpoint-..., and "
                            f"{name!r} is no serverless fine-tune.", provider=self.name, status_code=404)

    def list_deployments(self) -> list[Deployment]:
        listed = self.http.json("GET", "/endpoints", params={"type": "dedicated", "mine": "true"},
                                describe="listing endpoints")
        dedicated = [self._deployment(e) for e in listed.get("data") or [] if isinstance(e, dict)]
        serverless = [self._serverless_deployment(model) for model, job in self._fine_tunes().items()
                      if job.model in self.settings.serverless_lora_models]
        return dedicated + serverless

    def delete_deployment(self, name: str) -> None:
        if not name.startswith("endpoint-"):
            if self._serverless(name):
                raise UnsupportedOperation("deleting a serverless model's deployment", self.name,
                                           "A serverless LoRA fine-tune has no endpoint to delete.")
            raise NotFoundError(f"No endpoint named {name!r} (endpoint ids start with endpoint-).",
                                provider=self.name, status_code=404)
        self.http.request("DELETE", f"/endpoints/{name}", describe=f"deleting endpoint {name}")

    def chat_target(self, deployment: Deployment) -> str:
        """What chat addresses: an endpoint's name, or the serverless model itself."""
        return str(deployment.raw.get("name") or deployment.model) if deployment.raw else deployment.model

    def _addressable(self, model: str) -> str:
        # An endpoint id given where its name is meant (what deploy returned) is looked up once.
        if model.startswith("endpoint-"):
            return str(self.http.json("GET", f"/endpoints/{model}", describe=f"reading endpoint {model}")["name"])
        return model
