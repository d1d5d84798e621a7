"""Any OpenAI-compatible fine-tuning API (api.openai.com, or a ``base_url``).

A translation table between the provider protocol and the ``openai`` package: statuses
normalised, newest-first event pages turned into a chronological stream, metrics merged
from metrics events and the result CSV, large files sent through the Uploads API in
parallel parts. The ``openai`` client's own retries are off: the SDK's single retry
policy (:mod:`finetune_sdk.retry`) applies on top.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from pydantic import SecretStr

from ..config import ProviderSettings, setting
from ..errors import (ProviderConnectionError, ProviderError, RateLimitError, UnsupportedOperation,
                      error_for_status)
from ..metrics import merge_points, parse_results_csv, point_from_dict, points_from_events
from ..retry import NON_RETRYABLE_CODES, RetryPolicy
from ..types import (ChatDelta, ChatResponse, Checkpoint, Deployment, DeploySpec, Event, File, Job, JobError,
                     JobSpec, JobStatus, MetricPoint, ModelInfo, Usage, from_timestamp)
from .base import Capability, Provider

__all__ = ["OpenAIProvider", "OpenAISettings", "HTTPSettings", "translate_error"]

T = TypeVar("T")
_PORTABLE = ("n_epochs", "batch_size", "learning_rate_multiplier", "beta")
_PAGE = 100


class HTTPSettings(ProviderSettings):
    """Settings shared by the providers that talk to an OpenAI-style HTTP API."""

    timeout: float = setting(60.0, description="Seconds per request.")
    max_retries: int = setting(5, description="Attempts per request under the SDK's retry policy.")
    upload_threshold: int = setting(64 * 1024 * 1024, description="Files above this many bytes use the Uploads API.")
    upload_part_size: int = setting(64 * 1024 * 1024, description="Bytes per Uploads API part (at most 64 MB).")
    upload_concurrency: int = setting(4, description="Parts uploaded in parallel.")


class OpenAISettings(HTTPSettings):
    api_key: SecretStr = setting(..., env=("OPENAI_API_KEY",), secret=True, example="export OPENAI_API_KEY=sk-...")
    base_url: str | None = setting(None, env=("OPENAI_BASE_URL",),
                                   example='base_url = "https://api.openai.com/v1"',
                                   description="Any OpenAI-compatible fine-tuning API.")
    organization: str | None = setting(None, env=("OPENAI_ORG_ID",))
    project: str | None = setting(None, env=("OPENAI_PROJECT_ID",))


def _body_error(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return err
    return {}


def translate_error(exc: Exception, provider: str) -> ProviderError:
    """An ``openai`` exception as the SDK's error (status class, code, retry-after kept)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        err = _body_error(exc.body)
        message = str(err.get("message") or exc.message or f"HTTP {exc.status_code}")
        code = err.get("code")
        code = str(code) if code is not None else None
        kwargs: dict[str, Any] = dict(provider=provider, status_code=exc.status_code, request_id=exc.request_id,
                                      code=code, param=err.get("param") or err.get("target"), body=exc.body)
        cls = error_for_status(exc.status_code)
        if cls is RateLimitError:
            headers = exc.response.headers
            retry_after = None
            if headers.get("retry-after-ms"):
                try:
                    retry_after = float(headers["retry-after-ms"]) / 1000
                except ValueError:
                    retry_after = None
            if retry_after is None and headers.get("retry-after"):
                try:
                    retry_after = float(headers["retry-after"])
                except ValueError:
                    retry_after = None
            return RateLimitError(message, retry_after=retry_after, retryable=code not in NON_RETRYABLE_CODES,
                                  **kwargs)
        return cls(message, **kwargs)
    if isinstance(exc, openai.APIConnectionError):
        timed_out = isinstance(exc, openai.APITimeoutError)
        what = "timed out" if timed_out else "could not connect or lost the connection"
        return ProviderConnectionError(f"The request {what}: {exc}", provider=provider, timed_out=timed_out)
    return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider)


def _dump(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


class OpenAIProvider(Provider):
    """OpenAI fine-tuning, or any service that speaks its API."""

    name = "openai"
    hosted = True
    capabilities = frozenset({Capability.UPLOAD, Capability.FILES, Capability.CREATE_JOB, Capability.EVENTS,
                              Capability.CHECKPOINTS, Capability.METRICS, Capability.CANCEL, Capability.PAUSE,
                              Capability.RESUME, Capability.DEPLOY, Capability.CHAT, Capability.MODELS,
                              Capability.DELETE_MODEL, Capability.METADATA_FILTER})
    Settings = OpenAISettings

    def __init__(self, settings: HTTPSettings | None = None, *, http_client: Any = None,
                 retry: RetryPolicy | None = None, **_: Any) -> None:
        super().__init__(settings)
        s: HTTPSettings = self.settings  # type: ignore[assignment]
        self.retry = retry or RetryPolicy(attempts=s.max_retries)
        self._http_client = http_client
        self.client = self._make_client()

    def _make_client(self) -> Any:
        import openai

        s: OpenAISettings = self.settings  # type: ignore[assignment]
        return openai.OpenAI(api_key=s.api_key.get_secret_value(), base_url=s.base_url, organization=s.organization,
                             project=s.project, timeout=s.timeout, max_retries=0, http_client=self._http_client)

    def close(self) -> None:
        self.client.close()

    # -- plumbing
    def _call(self, fn: Callable[[], T], describe: str) -> T:
        def attempt() -> T:
            try:
                return fn()
            except ProviderError:
                raise
            except Exception as exc:
                import openai

                if isinstance(exc, openai.OpenAIError):
                    raise translate_error(exc, self.name) from None
                raise
        return self.retry.call(attempt, describe=f"{self.name}: {describe}")

    def _pages(self, fetch: Callable[[str | None], Any]) -> Iterator[Any]:
        after = None
        while True:
            page = self._call(lambda: fetch(after), "listing")
            items = list(page.data)
            yield from items
            if not getattr(page, "has_more", False) or not items:
                return
            after = items[-1].id

    # -- files
    def _file(self, obj: Any) -> File:
        raw = _dump(obj)
        status = {"processed": "processed", "error": "error"}.get(raw.get("status") or "", "uploaded")
        details = raw.get("status_details") or (raw.get("error") or {}).get("message") if isinstance(
            raw.get("error"), dict) else raw.get("status_details")
        return File(id=raw["id"], filename=raw.get("filename") or "", bytes=raw.get("bytes") or 0,
                    purpose=raw.get("purpose") or "", status=status, status_details=details,  # type: ignore[arg-type]
                    created_at=from_timestamp(raw.get("created_at")), raw=raw)

    def upload(self, path: Path, *, purpose: str = "fine-tune") -> File:
        path = Path(path)
        size = path.stat().st_size
        s: HTTPSettings = self.settings  # type: ignore[assignment]
        if size <= s.upload_threshold:
            def send() -> Any:
                with open(path, "rb") as fh:
                    return self.client.files.create(file=(path.name, fh), purpose=purpose)
            return self._file(self._call(send, f"uploading {path.name}"))
        return self._upload_in_parts(path, size, purpose)

    def _upload_in_parts(self, path: Path, size: int, purpose: str) -> File:
        s: HTTPSettings = self.settings  # type: ignore[assignment]
        part_size = min(s.upload_part_size, 64 * 1024 * 1024)
        upload = self._call(lambda: self.client.uploads.create(bytes=size, filename=path.name,
                                                               mime_type="application/jsonl", purpose=purpose),
                            f"starting the upload of {path.name}")
        offsets = list(range(0, size, part_size)) or [0]
        md5 = hashlib.md5(usedforsecurity=False)

        def send(offset: int) -> str:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(part_size)
            part = self._call(lambda: self.client.uploads.parts.create(upload.id, data=data),
                              f"uploading a part of {path.name}")
            return part.id

        try:
            # Parts are independent (their order is fixed at completion), so they go in parallel.
            with ThreadPoolExecutor(max_workers=max(1, s.upload_concurrency)) as pool:
                part_ids = list(pool.map(send, offsets))
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    md5.update(chunk)
            done = self._call(lambda: self.client.uploads.complete(upload.id, part_ids=part_ids,
                                                                   md5=md5.hexdigest()),
                              f"completing the upload of {path.name}")
        except BaseException:
            try:
                self.client.uploads.cancel(upload.id)
            except Exception:  # the original error matters more
                pass
            raise
        if done.file is None:
            raise ProviderError(f"The upload of {path.name} completed without a file.", provider=self.name)
        return self._file(done.file)

    def get_file(self, file_id: str) -> File:
        return self._file(self._call(lambda: self.client.files.retrieve(file_id), f"retrieving {file_id}"))

    def list_files(self, *, purpose: str | None = None) -> list[File]:
        kwargs = {"purpose": purpose} if purpose else {}
        files = [self._file(f) for f in self._pages(lambda after: self.client.files.list(
            order="asc", **kwargs, **({"after": after} if after else {})))]
        return files

    def delete_file(self, file_id: str) -> None:
        self._call(lambda: self.client.files.delete(file_id), f"deleting {file_id}")

    def file_content(self, file_id: str) -> bytes:
        return self._call(lambda: self.client.files.content(file_id).content, f"downloading {file_id}")

    # -- jobs
    def _job(self, obj: Any) -> Job:
        raw = _dump(obj)
        method = raw.get("method") or {}
        mtype = method.get("type") or "supervised"
        hyper = dict(raw.get("hyperparameters") or {})
        block = method.get(mtype) if isinstance(method.get(mtype), dict) else {}
        for key, value in ((block or {}).get("hyperparameters") or {}).items():
            if value is not None:
                hyper.setdefault(key, value)
        hyper = {k: v for k, v in hyper.items() if v is not None and v != -1}
        err = raw.get("error")
        error = JobError(code=err.get("code"), message=err["message"], param=err.get("param")) \
            if isinstance(err, dict) and err.get("message") else None  # "error": {} on healthy jobs
        ft = raw.get("fine_tuned_model")
        suffix = ft.split(":")[3] or None if isinstance(ft, str) and ft.startswith("ft:") and ft.count(":") >= 4 \
            else None
        return Job(id=raw["id"], provider=self.name,
                   status=JobStatus.normalise(raw.get("status"), provider=self.name), raw_status=raw.get("status"),
                   model=raw.get("model") or "", fine_tuned_model=ft,
                   created_at=from_timestamp(raw.get("created_at")), finished_at=from_timestamp(raw.get("finished_at")),
                   estimated_finish=from_timestamp(raw.get("estimated_finish")),
                   training_file=raw.get("training_file"), validation_file=raw.get("validation_file"), method=mtype,
                   hyperparameters=hyper, suffix=suffix, seed=raw.get("seed"), trained_tokens=raw.get("trained_tokens"),
                   error=error, metadata=dict(raw.get("metadata") or {}),
                   integrations=list(raw.get("integrations") or []), result_files=list(raw.get("result_files") or []),
                   raw=raw)

    def _create_kwargs(self, spec: JobSpec) -> dict[str, Any]:
        extras = spec.hyperparameters.extras()
        if extras:
            raise UnsupportedOperation(f"the hyperparameter(s) {', '.join(sorted(extras))}", self.name,
                                       "Hosted providers accept n_epochs, batch_size, learning_rate_multiplier "
                                       "(and beta for dpo); the others are for the local trainer.")
        hyper = {k: v for k, v in spec.hyperparameters.portable().items() if k in _PORTABLE}
        if spec.method != "dpo":
            hyper.pop("beta", None)
        block: dict[str, Any] = {"hyperparameters": hyper} if hyper else {}
        if spec.method == "reinforcement":
            grader = spec.extra.get("grader")
            if grader is None:
                raise UnsupportedOperation("reinforcement fine-tuning without a grader", self.name,
                                           "Pass extra={'grader': {...}}.")
            block["grader"] = grader
        kwargs: dict[str, Any] = {"model": spec.model, "training_file": spec.training_file,
                                  "method": {"type": spec.method, spec.method: block}}
        for key in ("validation_file", "suffix", "seed"):
            if getattr(spec, key) is not None:
                kwargs[key] = getattr(spec, key)
        if spec.metadata:
            kwargs["metadata"] = dict(spec.metadata)
        if spec.integrations:
            kwargs["integrations"] = spec.integrations
        extra_body = {k: v for k, v in spec.extra.items() if k != "grader"}
        if extra_body:
            kwargs["extra_body"] = extra_body
        return kwargs

    def create_job(self, spec: JobSpec) -> Job:
        kwargs = self._create_kwargs(spec)
        # No retry here: a retried create could run twice. The client retries it safely,
        # looking for the job it may already have created (idempotency key in metadata).
        try:
            job = self._job(self.client.fine_tuning.jobs.create(**kwargs))
        except Exception as exc:
            import openai

            if isinstance(exc, openai.OpenAIError):
                raise translate_error(exc, self.name) from None
            raise
        self._check_hyperparameters(spec, job)
        return job

    def _check_hyperparameters(self, spec: JobSpec, job: Job) -> None:
        # Some services silently ignore hyperparameters (openai/openai-python#1276): say so.
        from .._secrets import get_logger

        for key, wanted in spec.hyperparameters.portable().items():
            got = job.hyperparameters.get(key)
            if wanted not in (None, "auto") and got not in (None, "auto") and got != wanted:
                get_logger(__name__).warning("%s: job %s reports %s=%r, not the %r requested.", self.name, job.id,
                                             key, got, wanted)

    def get_job(self, job_id: str) -> Job:
        return self._job(self._call(lambda: self.client.fine_tuning.jobs.retrieve(job_id), f"retrieving {job_id}"))

    def list_jobs(self, *, limit: int | None = None, metadata: dict[str, str] | None = None) -> list[Job]:
        jobs = []
        for obj in self._pages(lambda after: self.client.fine_tuning.jobs.list(
                limit=min(_PAGE, limit or _PAGE), **({"after": after} if after else {}),
                **({"metadata": metadata} if metadata else {}))):
            job = self._job(obj)
            if metadata and any(job.metadata.get(k) != v for k, v in metadata.items()):
                continue  # a service that ignores the filter
            jobs.append(job)
            if limit is not None and len(jobs) >= limit:
                break
        return jobs

    def cancel_job(self, job_id: str) -> Job:
        return self._job(self._call(lambda: self.client.fine_tuning.jobs.cancel(job_id), f"cancelling {job_id}"))

    def pause_job(self, job_id: str) -> Job:
        return self._job(self._call(lambda: self.client.fine_tuning.jobs.pause(job_id), f"pausing {job_id}"))

    def resume_job(self, job_id: str) -> Job:
        return self._job(self._call(lambda: self.client.fine_tuning.jobs.resume(job_id), f"resuming {job_id}"))

    def list_events(self, job_id: str, *, after: str | None = None) -> list[Event]:
        """Events newer than ``after``, oldest first: pages (newest first) are read back
        until the last event already seen, so nothing is missed or repeated."""
        newest_first: list[Event] = []
        for obj in self._pages(lambda cursor: self.client.fine_tuning.jobs.list_events(
                job_id, limit=_PAGE, **({"after": cursor} if cursor else {}))):
            if after is not None and obj.id == after:
                break
            raw = _dump(obj)
            level = {"warn": "warning"}.get(raw.get("level") or "info", raw.get("level") or "info")
            newest_first.append(Event(id=raw["id"], created_at=from_timestamp(raw.get("created_at") or 0),
                                      level=level if level in ("info", "warning", "error") else "info",
                                      message=raw.get("message") or "",
                                      type="metrics" if raw.get("type") == "metrics" else "message",
                                      data=raw.get("data") or {}))
        newest_first.reverse()
        return newest_first

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        out = []
        for obj in self._pages(lambda after: self.client.fine_tuning.jobs.checkpoints.list(
                job_id, limit=_PAGE, **({"after": after} if after else {}))):
            raw = _dump(obj)
            metrics = {"step": raw.get("step_number"), **{k: v for k, v in (raw.get("metrics") or {}).items()
                                                         if k != "step"}}
            out.append(Checkpoint(id=raw["id"], step=raw.get("step_number") or 0,
                                  created_at=from_timestamp(raw.get("created_at")),
                                  model=raw.get("fine_tuned_model_checkpoint"), metrics=point_from_dict(metrics)))
        out.sort(key=lambda c: c.step)
        return out

    def metrics(self, job_id: str) -> list[MetricPoint]:
        from_events = points_from_events(self.list_events(job_id))
        job = self.get_job(job_id)
        from_csv: list[MetricPoint] = []
        for fid in job.result_files:
            try:
                from_csv.extend(parse_results_csv(self.file_content(fid)))
            except ProviderError:
                continue  # result files can expire; events still tell the story
        return merge_points(from_events, from_csv)

    # -- models, deployments, chat
    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m.id, created_at=from_timestamp(getattr(m, "created", None)),
                          owned_by=getattr(m, "owned_by", "") or "", fine_tuned=m.id.startswith("ft:"))
                for m in self._call(lambda: list(self.client.models.list()), "listing models")]

    def delete_model(self, model: str) -> None:
        self._call(lambda: self.client.models.delete(model), f"deleting {model}")

    def deploy(self, model: str, spec: DeploySpec) -> Deployment:
        # OpenAI serves a fine-tuned model as soon as the job succeeds: deploying is checking it exists.
        self._call(lambda: self.client.models.retrieve(model), f"checking {model}")
        return Deployment(name=spec.name or model, model=model, provider=self.name, status="succeeded",
                          raw_status="ready", ready=True, base_url=str(self.client.base_url))

    def get_deployment(self, name: str) -> Deployment:
        return self.deploy(name, DeploySpec(name=name))

    def list_deployments(self) -> list[Deployment]:
        return [Deployment(name=m.id, model=m.id, provider=self.name, ready=True, base_url=str(self.client.base_url))
                for m in self.list_models() if m.fine_tuned]

    def delete_deployment(self, name: str) -> None:
        raise UnsupportedOperation("deleting a deployment", self.name,
                                   "OpenAI has no deployments: a fine-tuned model is served until you delete the "
                                   "model itself (client.models.delete).")

    def _chat_kwargs(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        return {"model": model, "messages": messages, **params}

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> ChatResponse:
        resp = self._call(lambda: self.client.chat.completions.create(**self._chat_kwargs(model, messages, params)),
                          f"chatting with {model}")
        choice = resp.choices[0]
        usage = resp.usage
        return ChatResponse(content=choice.message.content, model=resp.model or model,
                            finish_reason=choice.finish_reason,
                            usage=Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                                        total_tokens=usage.total_tokens) if usage else Usage(),
                            tool_calls=[_dump(t) for t in choice.message.tool_calls or []], raw=_dump(resp))

    def chat_stream(self, model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[ChatDelta]:
        kwargs = self._chat_kwargs(model, messages, params)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        stream = self._call(lambda: self.client.chat.completions.create(**kwargs), f"chatting with {model}")
        finish = None
        usage = None
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = Usage(prompt_tokens=chunk.usage.prompt_tokens,
                                  completion_tokens=chunk.usage.completion_tokens,
                                  total_tokens=chunk.usage.total_tokens)
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        yield ChatDelta(content=choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except Exception as exc:
            import openai

            if isinstance(exc, openai.OpenAIError):
                raise translate_error(exc, self.name) from None
            raise
        yield ChatDelta(finish_reason=finish or "stop", usage=usage)
