"""Together's ``/fine-tunes``: create (checked against the model's limits), list, retrieve,
cancel (``cancel_requested``, then ``cancelled``), events, checkpoints, metrics, and what its
SDK asks before creating: model limits (404 for a model that cannot be fine-tuned), the
supported models, a price estimate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from ...errors import NotFoundError, ProviderError
from ...types import Hyperparameters, JobSpec
from ..api import _call
from ..errors import ApiError, from_provider_error
from .schemas import CreateFineTune, EstimatePrice, LoraTraining, MethodDPO
from .state import TogetherState, limits_for
from .wire import checkpoint_body, events_body, job_body, metric_rows

__all__ = ["jobs_router"]

_PRICE_PER_MILLION = 0.48  # dollars per million training tokens: illustrative


def _limit(ok: bool, message: str, param: str) -> None:
    if not ok:
        raise ApiError(400, message, param=param, code="invalid_request")


def _training_file(state: TogetherState, file_id: str, param: str) -> Any:
    try:
        f = state.provider.get_file(file_id)
    except NotFoundError:
        raise ApiError(400, f"File {file_id} does not exist.", param=param, code="invalid_request") from None
    except ProviderError as exc:
        raise from_provider_error(exc) from None
    _limit(f.purpose == "fine-tune", f"File {file_id} was uploaded with purpose {f.purpose!r}, not 'fine-tune'.",
           param)
    return f


def _params(body: CreateFineTune, limits: dict[str, Any]) -> dict[str, Any]:
    """Together's fields of the request, checked against the model's limits, defaults filled in."""
    dpo = isinstance(body.training_method, MethodDPO)
    _limit(body.n_epochs <= limits["max_num_epochs"], f"n_epochs must be at most {limits['max_num_epochs']}.",
           "n_epochs")
    _limit(body.n_evals <= limits["max_num_evals"], f"n_evals must be at most {limits['max_num_evals']}.", "n_evals")
    _limit(body.n_checkpoints <= limits["max_num_checkpoints"],
           f"n_checkpoints must be at most {limits['max_num_checkpoints']}.", "n_checkpoints")
    _limit(limits["min_learning_rate"] <= body.learning_rate <= limits["max_learning_rate"],
           f"learning_rate must be between {limits['min_learning_rate']} and {limits['max_learning_rate']}.",
           "learning_rate")
    lora = limits["lora_training"]
    ttype = body.training_type or LoraTraining(type="Lora", lora_r=lora["default_rank"],
                                               lora_alpha=2 * lora["default_rank"], lora_dropout=0.0)
    if isinstance(ttype, LoraTraining):
        _limit(ttype.lora_r <= lora["max_rank"], f"lora_r must be at most {lora['max_rank']} for this model.",
               "training_type.lora_r")
    bounds = lora if isinstance(ttype, LoraTraining) else limits["full_training"]
    if isinstance(body.batch_size, int):
        top = bounds["max_batch_size_dpo" if dpo else "max_batch_size"]
        _limit(bounds["min_batch_size"] <= body.batch_size <= top,
               f"batch_size must be between {bounds['min_batch_size']} and {top}.", "batch_size")
    scheduler = body.lr_scheduler.model_dump(exclude_none=True) if body.lr_scheduler else {
        "lr_scheduler_type": "linear", "lr_scheduler_args": {"min_lr_ratio": 0.0}}
    method = body.training_method.model_dump(exclude={"method"})
    return {"n_epochs": body.n_epochs, "n_checkpoints": body.n_checkpoints, "n_evals": body.n_evals,
            "learning_rate": body.learning_rate, "lr_scheduler": scheduler, "warmup_ratio": body.warmup_ratio,
            "max_grad_norm": body.max_grad_norm, "weight_decay": body.weight_decay,
            "training_type": ttype.model_dump(), "packing": body.packing, "max_seq_length": body.max_seq_length,
            "wandb_project_name": body.wandb_project_name, "wandb_name": body.wandb_name, **method}


def jobs_router(state: TogetherState) -> APIRouter:
    router = APIRouter()
    provider = state.provider
    flavor = provider.flavor

    def job(job_id: str, *, full: bool = True) -> dict[str, Any]:
        return job_body(state, _call(provider.get_job, job_id), full=full)

    @router.get("/fine-tunes/models/supported", summary="Models that can be fine-tuned")
    def supported() -> JSONResponse:
        return JSONResponse({"models": list(flavor.fine_tunable)})

    @router.get("/fine-tunes/models/limits", summary="A model's fine-tuning limits")
    def limits(model_name: str = Query(..., min_length=1)) -> JSONResponse:
        if model_name not in flavor.fine_tunable:  # this answer is a bare message, not an error envelope
            return JSONResponse({"message": f"Model {model_name} is not available for fine-tuning."}, status_code=404)
        return JSONResponse(limits_for(model_name))

    @router.post("/fine-tunes/estimate-price", summary="Estimate a job's price")
    def estimate(body: EstimatePrice) -> JSONResponse:
        train = _training_file(state, body.training_file, "training_file")
        tokens = train.bytes // 4 * body.n_epochs  # ~4 bytes a token: an estimate, as the real one is
        evals = 0
        if body.validation_file:
            evals = _training_file(state, body.validation_file, "validation_file").bytes // 4 * body.n_evals
        return JSONResponse({"estimation_available": True, "estimated_total_price": round(
            (tokens + evals) / 1e6 * _PRICE_PER_MILLION, 6), "allowed_to_proceed": True, "user_limit": 1000.0,
            "estimated_train_token_count": tokens, "estimated_eval_token_count": evals})

    @router.post("/fine-tunes", summary="Create a fine-tuning job")
    def create(body: CreateFineTune) -> JSONResponse:
        for field in ("from_checkpoint", "from_hf_model"):
            if getattr(body, field):
                raise ApiError(400, f"{field} is not supported by this emulator.", param=field,
                               code="unsupported_operation")
        if not body.model:
            raise ApiError(400, "Missing required parameter: 'model'.", param="model", code="invalid_request")
        if body.model not in flavor.fine_tunable:
            raise ApiError(400, flavor.model_error.format(model=body.model), param="model",
                           code=flavor.codes["model_not_available"])
        params = _params(body, limits_for(body.model))
        _training_file(state, body.training_file, "training_file")
        validation = body.validation_file or None
        if validation:
            _training_file(state, validation, "validation_file")
        method = body.training_method
        dpo = isinstance(method, MethodDPO)
        hyper = Hyperparameters(n_epochs=body.n_epochs, batch_size=None if body.batch_size == "max"
                                else body.batch_size, beta=method.dpo_beta if isinstance(method, MethodDPO) else None)
        spec = JobSpec(model=body.model, training_file=body.training_file, validation_file=validation,
                       method="dpo" if dpo else "supervised", hyperparameters=hyper, suffix=body.suffix or None,
                       seed=body.random_seed)
        created = _call(provider.create_job, spec)
        with state.lock:
            state.jobs[created.id] = params
        return JSONResponse(job_body(state, created, full=False))

    @router.get("/fine-tunes", summary="List fine-tuning jobs")
    def list_jobs() -> JSONResponse:
        return JSONResponse({"data": [job_body(state, j, full=False) for j in _call(provider.list_jobs)]})

    @router.get("/fine-tunes/{job_id}", summary="Retrieve a fine-tuning job")
    def get_job(job_id: str) -> JSONResponse:
        return JSONResponse(job(job_id))

    @router.post("/fine-tunes/{job_id}/cancel", summary="Cancel a fine-tuning job")
    def cancel(job_id: str) -> JSONResponse:
        return JSONResponse(job_body(state, _call(provider.cancel_job, job_id), full=False))

    @router.get("/fine-tunes/{job_id}/events", summary="A job's events, oldest first")
    def events(job_id: str) -> JSONResponse:
        return JSONResponse({"object": "list", "data": events_body(state, _call(provider.get_job, job_id))})

    @router.get("/fine-tunes/{job_id}/checkpoints", summary="A job's checkpoints")
    def checkpoints(job_id: str) -> JSONResponse:
        ckpts = _call(provider.list_checkpoints, job_id)
        _, total, _ = provider.progress(job_id)
        return JSONResponse({"data": [checkpoint_body(c, job_id, total) for c in reversed(ckpts)]})

    @router.get("/fine-tunes/{job_id}/metrics", summary="A job's training metrics")
    def metrics(job_id: str, global_step_from: int | None = Query(None, ge=0),
                global_step_to: int | None = Query(None, ge=0), logged_at_from: str | None = None,
                logged_at_to: str | None = None, resolution: int | None = Query(None, ge=1)) -> JSONResponse:
        if logged_at_from or logged_at_to:
            raise ApiError(400, "Filtering metrics by time is not supported by this emulator.",
                           param="logged_at_from" if logged_at_from else "logged_at_to", code="unsupported_operation")
        found = _call(provider.get_job, job_id)
        _, total, _ = provider.progress(job_id)
        rows = metric_rows(_call(provider.metrics, job_id), state.params(job_id), total,
                           validated=bool(found.validation_file))
        low, high = global_step_from or 0, global_step_to if global_step_to is not None else total
        rows = [r for r in rows if low <= r["train/global_step"] <= high]
        if resolution is not None:
            train = [r for r in rows if "eval/loss" not in r]
            keep = {id(train[round(i * (len(train) - 1) / max(1, resolution - 1))]) for i in range(resolution)} \
                if len(train) > resolution else {id(r) for r in train}
            rows = [r for r in rows if "eval/loss" in r or id(r) in keep]
        return JSONResponse({"metrics": rows})

    return router

