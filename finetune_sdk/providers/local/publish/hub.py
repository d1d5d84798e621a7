"""Publishing a finished local job to the Hugging Face Hub.

``push_job_to_hub(home, job_id, "alice/my-model")`` creates the model repository (if it
does not exist) and uploads, in ONE commit, the job's LoRA adapter (``adapter/``) — or,
with ``merged=True``, the base model with the adapter merged into its weights — or the
full fine-tune (``model/``), plus a ``README.md`` model card (:func:`model_card`): base
model, training data statistics, hyperparameters, final metrics and how to load and
serve it.

Calls made through ``huggingface_hub.HfApi``: ``create_repo(exist_ok=True)`` (``POST
/api/repos/create``) then ``create_commit`` (``POST /api/validate-yaml`` for the card's
front matter, ``POST /api/models/{repo}/preupload/main`` to learn which files go as
regular git blobs and which through LFS/Xet, the LFS/Xet upload when the Hub asks for it,
and ``POST /api/models/{repo}/commit/main``). Re-pushing unchanged files makes no commit.

The token is the ``token`` argument, else ``HF_TOKEN``, else the one stored by
``hf auth login``; it is registered as a secret, so it never appears in a message or
repr. The endpoint is the ``endpoint`` argument, else ``HF_ENDPOINT`` read at call time
(``huggingface_hub`` itself reads it only once, at import), else https://huggingface.co.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...._secrets import get_logger, register_secret, scrub, scrub_third_party_logs
from ....errors import FineTuneError
from ..jobs.store import JobRecord, JobStore

__all__ = ["HubError", "PushResult", "model_card", "push_job_to_hub"]

_log = get_logger(__name__)

_LOGIN_HINT = ("Log in with `hf auth login` (stores a token), set HF_TOKEN, or pass token=...; create a token "
               "with write access at https://huggingface.co/settings/tokens.")


class HubError(FineTuneError):
    """Publishing to the Hugging Face Hub failed; the message says why and what to do.

    ``status_code`` is the Hub's HTTP status (None when no answer came back or the failure
    was local), ``server_message`` what the Hub said, ``request_id`` its request id.
    """

    def __init__(self, message: str, *, status_code: int | None = None, server_message: str | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = scrub(server_message) if server_message else None
        self.request_id = request_id


@dataclass
class PushResult:
    """What was published: the repository, its URL, the files of the commit and the commit's URL.

    ``commit_url`` is that of the repository's latest commit when nothing had changed (no
    new commit is made then), and None if the Hub did not say.
    """

    repo_id: str
    url: str
    files: list[str] = field(default_factory=list)
    commit_url: str | None = None


# --------------------------------------------------------------------------- the job

@dataclass(frozen=True)
class _Job:
    record: JobRecord
    dir: Path
    kind: str            # "adapter" | "merged" | "full"
    weights: Path        # adapter/ or model/


def _load_job(home: Path, job_id: str, *, merged: bool) -> _Job:
    store = JobStore(Path(home))
    if not store.exists(job_id):
        known = sorted(store.ids())
        hint = f" Jobs there: {', '.join(known[:5])}{' ...' if len(known) > 5 else ''}." if known else \
            " There are no jobs there."
        raise HubError(f"No local fine-tuning job {job_id!r} in {Path(home) / 'jobs'}.{hint} "
                       f"List them with `finetune jobs list --provider local`; set FINETUNE_HOME if the job "
                       f"was trained under another home.")
    record = store.read(job_id)
    if record.status != "succeeded":
        what = {"failed": "it failed" + (f" ({record.error.message})" if record.error else ""),
                "cancelled": "it was cancelled"}.get(record.status, f"it is still {record.status}")
        raise HubError(f"Job {job_id} cannot be pushed: {what}. Only succeeded jobs have final weights; "
                       f"wait for it with `finetune jobs wait {job_id}`, or push another job.")
    d = store.dir(job_id)
    lora = bool(record.config.get("lora", True))
    weights = d / ("adapter" if lora else "model")
    if not weights.is_dir() or not any(weights.iterdir()):
        raise HubError(f"Job {job_id} succeeded but its {weights.name}/ directory is missing or empty "
                       f"({weights}); it cannot be pushed. Was the job directory cleaned up?")
    kind = ("merged" if merged else "adapter") if lora else "full"
    return _Job(record=record, dir=d, kind=kind, weights=weights)


def _base_info(spec_model: str) -> tuple[str, str | None, str | None, bool]:
    """(display name, Hub id or None, license or None, embedded) of the base model a job was given."""
    from .. import models

    name = (spec_model or models.DEFAULT_BASE_MODEL).strip()
    canonical = models.ALIASES.get(name.lower())
    if canonical is not None:
        emb = models._EMBEDDED[canonical]
        return emb.upstream, emb.upstream, emb.license.lower(), True
    if models._HUB_ID.match(name) and not Path(name).expanduser().exists():
        return name, name, None, False
    # A local directory: publish its name only, never the path on this machine.
    return Path(name.rstrip("/\\")).name or name, None, None, False


def _metrics(store: JobStore, job: _Job) -> dict[str, tuple[int, float]]:
    """The last value (with its step) of each loss/accuracy series, from events, else results.csv."""
    from ....metrics import parse_results_csv, points_from_events

    points = points_from_events(store.events(job.record.id))
    if not points and (job.dir / "results.csv").is_file():
        points = parse_results_csv((job.dir / "results.csv").read_bytes())
    out: dict[str, tuple[int, float]] = {}
    for point in sorted(points, key=lambda p: p.step):
        for name in ("train_loss", "train_token_accuracy", "valid_loss", "valid_token_accuracy",
                     "full_valid_loss", "full_valid_token_accuracy"):
            value = getattr(point, name, None)
            if value is not None:
                out[name] = (point.step, float(value))
    if points:
        out["steps"] = (max(p.step for p in points), float(max(p.step for p in points)))
    return out


def _report(job: _Job) -> dict[str, Any] | None:
    path = job.dir / "validation_report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML scalar


# --------------------------------------------------------------------------- the model card

def model_card(home: Path, job_id: str, *, repo_id: str, merged: bool) -> str:
    """The ``README.md`` published with a job: YAML metadata, then a description of the model."""
    job = _load_job(Path(home), job_id, merged=merged)
    return _card(Path(home), job, repo_id)


def _card(home: Path, job: _Job, repo_id: str) -> str:
    record, cfg = job.record, job.record.config
    base, base_hub_id, license_id, embedded = _base_info(record.spec.model)
    method = str(cfg.get("method") or record.spec.method or "supervised")
    adapter = job.kind == "adapter"
    rank = cfg.get("lora_rank")
    short = repo_id.rsplit("/", 1)[-1]

    # -- front matter
    tags = ["finetune-sdk"]
    if job.kind in ("adapter", "merged"):
        tags.append("lora")
    tags += ["peft"] if adapter else (["merged"] if job.kind == "merged" else ["full-fine-tune"])
    tags += ["dpo"] if method == "dpo" else ["sft"]
    tags.append("text-generation")
    front = ["---"]
    if base_hub_id:
        front.append(f"base_model: {_yaml_str(base_hub_id)}")
        if job.kind in ("adapter", "merged"):
            front.append(f"base_model_relation: {'adapter' if adapter else 'merge'}")
        else:
            front.append("base_model_relation: finetune")
    front.append(f"library_name: {'peft' if adapter else 'transformers'}")
    if license_id:
        front.append(f"license: {license_id}")
    front.append("pipeline_tag: text-generation")
    front.append("tags:")
    front += [f"- {t}" for t in tags]
    front.append("---")

    # -- what it is
    what = {
        "adapter": f"A LoRA adapter for [`{base}`]({_hub_link(base_hub_id)}) " if base_hub_id
        else f"A LoRA adapter for the base model `{base}` ",
        "merged": f"[`{base}`]({_hub_link(base_hub_id)}) with a LoRA adapter merged into its weights, "
        if base_hub_id else f"The base model `{base}` with a LoRA adapter merged into its weights, ",
        "full": f"A full fine-tune of [`{base}`]({_hub_link(base_hub_id)}), " if base_hub_id
        else f"A full fine-tune of the base model `{base}`, ",
    }[job.kind]
    method_text = "direct preference optimisation (DPO)" if method == "dpo" else "supervised fine-tuning"
    lines = [f"# {short}", "",
             what + f"trained by {method_text} with the local trainer of "
             f"[finetune-sdk](https://pypi.org/project/finetune-sdk/) (job `{record.id}`"
             + (f", model id `{record.fine_tuned_model}`" if record.fine_tuned_model else "") + ").", ""]
    if adapter:
        lines += [("This repository holds only the adapter (`adapter_config.json`, `adapter_model.safetensors`) "
                  "and the tokenizer; load it on top of the base model."), ""]

    # -- base model
    lines += ["## Base model", "", f"- **Base model:** `{base}`"
              + ("" if base_hub_id else " (a local model directory, not on the Hub)")]
    if license_id:
        lines.append(f"- **License:** {license_id} (the base model's)")
    if embedded:
        lines.append("- Trained on finetune-sdk's embedded copy of this model, whose weights were dequantised "
                     "from a Q4_1 GGUF file; they differ slightly from the original bf16 weights on the Hub"
                     + (", so results on top of the original weights may differ a little." if adapter else "."))
    lines.append("")

    # -- data
    lines += ["## Training data", ""]
    report = _report(job)
    rows: list[tuple[str, str]] = []
    if report:
        rows.append(("Training examples", _num(report.get("examples"))))
        if report.get("format"):
            rows.append(("Format", str(report["format"])))
        tokens = report.get("tokens") or {}
        if tokens:
            how = tokens.get("encoding") or "tokenizer"
            rows.append(("Tokens in the training file", (f"{_num(tokens.get('total_tokens'))} "
                         f"({'exact' if tokens.get('exact') else 'estimated'}, {how})")))
            if tokens.get("assistant_tokens"):
                rows.append(("Assistant (trained) tokens", _num(tokens.get("assistant_tokens"))))
            per = tokens.get("per_example") or {}
            if per.get("count"):
                rows.append(("Tokens per example (mean / median / max)",
                             f"{_num(per.get('mean'), 1)} / {_num(per.get('median'), 1)} / {_num(per.get('max'))}"))
            if tokens.get("over_limit"):
                rows.append(("Examples over the context limit", _num(tokens.get("over_limit"))))
        val = report.get("validation") or {}
        if val:
            rows.append(("Validation examples", _num(val.get("examples"))))
            vt = val.get("tokens") or {}
            if vt.get("total_tokens") is not None:
                rows.append(("Tokens in the validation file", _num(vt.get("total_tokens"))))
    if record.trained_tokens is not None:
        rows.append(("Trained tokens (all epochs)", _num(record.trained_tokens)))
    lines += _table(("Statistic", "Value"), rows) if rows else ["The dataset statistics were not recorded."]
    lines.append("")

    # -- hyperparameters
    lines += ["## Training hyperparameters", ""]
    lr_base = 2e-4 if cfg.get("lora", True) else 2e-5
    mult = cfg.get("learning_rate_multiplier")
    hp: list[tuple[str, str]] = [("Method", method)]
    for key, label in (("n_epochs", "Epochs"), ("batch_size", "Batch size (examples per step)"),
                       ("max_steps", "Max steps")):
        if cfg.get(key) is not None:
            hp.append((label, _num(cfg[key])))
    if mult is not None:
        hp.append(("Learning rate", f"{_num(lr_base * float(mult), 3)} (multiplier {_num(float(mult))})"))
    if method == "dpo" and cfg.get("beta") is not None:
        hp.append(("DPO beta", _num(cfg["beta"])))
    if cfg.get("max_length") is not None:
        hp.append(("Max length (tokens)", _num(cfg["max_length"])))
    if cfg.get("lora", True):
        hp.append(("LoRA rank / alpha / dropout", (f"{_num(rank)} / {_num(cfg.get('lora_alpha'))} / "
                                                  f"{_num(cfg.get('lora_dropout'))}")))
        tm = cfg.get("target_modules")
        if tm:
            hp.append(("LoRA target modules", ", ".join(tm) if isinstance(tm, list) else str(tm)))
        if cfg.get("qlora"):
            hp.append(("QLoRA (4-bit base)", "yes"))
    else:
        hp.append(("Fine-tuning", "full (all weights)"))
    for key, label in (("warmup_ratio", "Warmup ratio"), ("weight_decay", "Weight decay"),
                       ("max_grad_norm", "Max grad norm"), ("packing", "Packing"), ("seed", "Seed")):
        if key in cfg and cfg[key] is not None:
            hp.append((label, _num(cfg[key]) if not isinstance(cfg[key], bool) else ("yes" if cfg[key] else "no")))
    lines += _table(("Setting", "Value"), hp)
    lines.append("")

    # -- metrics
    lines += ["## Results", ""]
    metrics = _metrics(JobStore(home), job)
    mrows = []
    for name, label in (("train_loss", "Training loss"), ("train_token_accuracy", "Training token accuracy"),
                        ("valid_loss", "Validation loss"), ("valid_token_accuracy", "Validation token accuracy"),
                        ("full_valid_loss", "Full validation loss"),
                        ("full_valid_token_accuracy", "Full validation token accuracy")):
        if name in metrics:
            step, value = metrics[name]
            mrows.append((label, f"{value:.4f}", str(step)))
    if mrows:
        steps = int(metrics["steps"][0]) if "steps" in metrics else None
        lines += [f"Final metrics{f' after {steps} optimizer steps' if steps else ''} (last recorded value):", ""]
        lines += _table(("Metric", "Value", "Step"), mrows)
    else:
        lines.append("No metrics were recorded.")
    lines.append("")

    # -- usage
    base_ref = base_hub_id or f"path/to/{base}"
    lines += ["## How to use", "", "### transformers", "", "```python"]
    if adapter:
        lines += ["from peft import PeftModel",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f"base = AutoModelForCausalLM.from_pretrained({base_ref!r})",
                  f"model = PeftModel.from_pretrained(base, {repo_id!r})",
                  f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r})",
                  "# optional: model = model.merge_and_unload()  # fold the adapter into the weights"]
    else:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f"model = AutoModelForCausalLM.from_pretrained({repo_id!r})",
                  f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r})"]
    lines += ["",
              'messages = [{"role": "user", "content": "Hello!"}]',
              "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,",
              '                                       return_tensors="pt")',
              "output = model.generate(**inputs, max_new_tokens=128)",
              'print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
              "```", "", "### vLLM (OpenAI-compatible server)", "", "```bash"]
    if adapter:
        max_rank = max(16, int(rank)) if isinstance(rank, (int, float)) else 16
        lines += [(f"vllm serve {base_ref} --enable-lora --lora-modules {short}={repo_id} "
                  f"--max-lora-rank {max_rank}"),
                  "curl http://localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\",
                  f"  -d '{{\"model\": \"{short}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'"]
    else:
        lines += [f"vllm serve {repo_id}",
                  "curl http://localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\",
                  f"  -d '{{\"model\": \"{repo_id}\", "
                  f"\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'"]
    local_id = record.fine_tuned_model or record.id
    lines += ["```", "", "### finetune-sdk (OpenAI-compatible server)", ""]
    if adapter:
        lines += ["On the machine that trained it (the job's `FINETUNE_HOME`):", "", "```bash",
                  f"finetune serve --model {local_id}", "```", "",
                  f"then request the model `{local_id}` at `http://127.0.0.1:8000/v1`.", ""]
    else:
        lines += ["```bash", f"finetune serve --model {repo_id}", "```", "",
                  (f"then request the model `{repo_id}` at `http://127.0.0.1:8000/v1`. On the machine that trained "
                  f"it, `finetune serve --model {local_id}` serves the local copy."), ""]
    return "\n".join(front) + "\n\n" + "\n".join(lines)


def _hub_link(hub_id: str | None) -> str:
    return f"https://huggingface.co/{hub_id}" if hub_id else ""


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


# --------------------------------------------------------------------------- files

def _folder_files(folder: Path) -> list[tuple[str, Path]]:
    """(path in repo, local path) of every file to publish from a weights folder."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.as_posix() == "README.md" or path.suffix == ".tmp":
            continue  # our model card replaces PEFT's template
        out.append((rel.as_posix(), path))
    return out


@contextlib.contextmanager
def _weights_folder(job: _Job) -> Iterator[Path]:
    """The folder to publish: the job's adapter/ or model/, or a temporary merged model."""
    if job.kind != "merged":
        yield job.weights
        return
    with tempfile.TemporaryDirectory(prefix="finetune-merge-") as tmp:
        out = Path(tmp) / "merged"
        _merge(job, out)
        yield out


def _merge(job: _Job, out: Path) -> None:
    """Merge the job's adapter into its base model; write safetensors + config + tokenizer to ``out``."""
    import shutil

    from .. import models

    try:
        from peft import PeftModel
    except ImportError as exc:
        raise HubError("Merging a LoRA adapter needs peft: pip install 'finetune-sdk[local]'.") from exc
    record = job.record
    base_path = record.base_model_path
    try:
        if base_path and Path(base_path).is_dir():
            resolved = models.ResolvedModel(name=Path(base_path).name, path=Path(base_path), source="local")
        else:
            resolved = models.resolve_base_model(record.spec.model)
        trust = bool(record.config.get("trust_remote_code", False))
        base = models.load_model(resolved, dtype="auto", trust_remote_code=trust)
    except models.BaseModelError as exc:
        raise HubError(f"Cannot merge job {record.id}: its base model could not be loaded. {exc} "
                       f"Push the adapter instead (merged=False).") from None
    try:
        merged = PeftModel.from_pretrained(base, str(job.weights)).merge_and_unload()
    except Exception as exc:
        raise HubError(f"Cannot merge the adapter of job {record.id} into {resolved.name}: "
                       f"{type(exc).__name__}: {exc}. Push the adapter instead (merged=False).") from None
    out.mkdir(parents=True)
    kwargs: dict[str, Any] = {}
    if "safe_serialization" in inspect.signature(merged.save_pretrained).parameters:
        kwargs["safe_serialization"] = True  # transformers < 5 (5 writes safetensors only)
    merged.save_pretrained(str(out), **kwargs)
    # The tokenizer (with its chat template) as the job saved it next to the adapter.
    for name, src in _folder_files(job.weights):
        if not name.startswith("adapter_") and not (out / name).exists():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / name)
    gen = Path(resolved.path) / "generation_config.json"
    if gen.is_file() and not (out / "generation_config.json").exists():
        shutil.copyfile(gen, out / "generation_config.json")


# --------------------------------------------------------------------------- the Hub

def _resolve_token(token: str | None) -> str:
    if token is not None and token.strip():
        register_secret(token.strip())
        return token.strip()
    from huggingface_hub import get_token

    try:
        found = get_token()
    except Exception as exc:
        raise HubError(f"Could not get a Hugging Face token ({type(exc).__name__}: {scrub(exc)}). "
                       f"{_LOGIN_HINT}") from None
    if not found:
        raise HubError(f"No Hugging Face token: pushing to the Hub needs one with write access. {_LOGIN_HINT}")
    register_secret(found)
    return found


def _resolve_endpoint(endpoint: str | None) -> str | None:
    value = endpoint or os.environ.get("HF_ENDPOINT") or None
    return value.rstrip("/") if value else None


def _hub_error(exc: Exception, *, repo_id: str, endpoint: str, action: str) -> HubError:
    """A HubError for whatever huggingface_hub raised, with the Hub's message and a fix."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        server = exc.server_message or ""
        if not server.strip():  # no message from the Hub: keep the first line of what huggingface_hub said
            server = next((line for line in str(exc).splitlines() if line.strip()), "")
        said = f" The Hub said: {server.strip()}" if server.strip() else ""
        said = said.rstrip(".") + "." if said else ""
        namespace = repo_id.split("/")[0] if "/" in repo_id else "your account"
        if status == 401:
            fix = ("The token was rejected (invalid, expired or revoked). Check it with `hf auth whoami`, "
                   + _LOGIN_HINT)
        elif status == 403:
            fix = (f"The token may not write to {namespace!r}: use a token with write access to that namespace "
                   f"(a fine-grained token needs 'write' on it), ask an admin of the organisation for the write "
                   f"role, or push to your own namespace.")
        elif status == 404:
            fix = (f"Repository {repo_id!r} was not found or is not visible to this token; check the repo id and "
                   f"that the token can see it.")
        elif status == 409:
            fix = ("Another operation on the repository conflicted (e.g. a concurrent commit); retry in a "
                   "moment, or push to another repo id.")
        elif status == 429:
            fix = "The Hub is rate-limiting this account; retry in a few minutes."
        elif status is not None and status >= 500:
            fix = ("The Hub failed on its side; this is usually temporary: retry in a few minutes (status at "
                   "https://status.huggingface.co).")
        else:
            fix = "Check the repo id and the token, then retry."
        message = f"Pushing to the Hugging Face Hub failed while {action} {repo_id!r} at {endpoint} " \
                  f"(HTTP {status}).{said} {fix}"
        return HubError(message, status_code=status, server_message=server or None,
                        request_id=getattr(exc, "request_id", None))
    name = type(exc).__name__
    if name == "OfflineModeIsEnabled":
        return HubError("HF_HUB_OFFLINE is set, so nothing can be pushed to the Hub. Unset it and retry.")
    if isinstance(exc, ValueError):  # an invalid repo id, or card metadata the Hub refused
        return HubError(f"Pushing to the Hugging Face Hub failed while {action} {repo_id!r}: {exc}")
    if isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
        return HubError(f"Could not reach the Hugging Face Hub at {endpoint} while {action} {repo_id!r} "
                        f"({name}: {exc}). Check the network connection, proxy settings and HF_ENDPOINT, "
                        f"then retry.")
    return HubError(f"Pushing to the Hugging Face Hub failed while {action} {repo_id!r} at {endpoint} "
                    f"({name}: {exc}). Retry; if it persists, check the installed huggingface_hub version.")


def _published(name: str, path: Path, job: _Job) -> str | bytes:
    """What to upload for a file: itself, except an adapter config naming a path on this machine.

    The adapter's ``base_model_name_or_path`` is the local base directory; on the Hub it
    must name the base model's Hub id (or, when there is none, just its name), so that
    ``PeftModel.from_pretrained(base, repo)`` users can find the base and no local path leaks.
    """
    if name != "adapter_config.json" or job.kind != "adapter":
        return str(path)
    config = json.loads(path.read_text(encoding="utf-8"))
    display, hub_id, _, _ = _base_info(job.record.spec.model)
    config["base_model_name_or_path"] = hub_id or display
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")


def push_job_to_hub(home: Path, job_id: str, repo_id: str, *, private: bool = False, merged: bool = False,
                    token: str | None = None, endpoint: str | None = None,
                    commit_message: str | None = None) -> PushResult:
    """Publish a succeeded local job to the Hub as model repository ``repo_id``, in one commit.

    Uploads the LoRA adapter (default), the merged model (``merged=True``; done here with
    peft) or the full fine-tune, plus a generated ``README.md``. Creates the repository if
    needed (``private`` applies only then: an existing repository keeps its visibility).
    Raises :class:`HubError` (unknown or unfinished job, no token, Hub errors).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    scrub_third_party_logs()
    home = Path(home)
    job = _load_job(home, job_id, merged=merged)
    secret = _resolve_token(token)
    hub_endpoint = _resolve_endpoint(endpoint)
    api = HfApi(endpoint=hub_endpoint, token=secret)
    shown_endpoint = api.endpoint

    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    except Exception as exc:
        raise _hub_error(exc, repo_id=repo_id, endpoint=shown_endpoint, action="creating") from None
    full_id = getattr(repo_url, "repo_id", None) or repo_id
    _log.info("Pushing job %s (%s) to %s", job_id, job.kind, full_id)

    with _weights_folder(job) as folder:
        files = _folder_files(folder)
        card = _card(home, job, full_id).encode("utf-8")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=_published(name, path, job))
                      for name, path in files]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card))
        what = {"adapter": "LoRA adapter", "merged": "merged model", "full": "fine-tuned model"}[job.kind]
        message = commit_message or f"Upload {what} from finetune-sdk job {job_id}"
        try:
            info = api.create_commit(full_id, operations=operations, commit_message=message, repo_type="model",
                                     commit_description=f"finetune-sdk model `{job.record.fine_tuned_model}`, "
                                                        f"base `{_base_info(job.record.spec.model)[0]}`.")
        except Exception as exc:
            raise _hub_error(exc, repo_id=full_id, endpoint=shown_endpoint, action="uploading to") from None
    return PushResult(repo_id=full_id, url=str(repo_url), files=sorted([name for name, _ in files] + ["README.md"]),
                      commit_url=getattr(info, "commit_url", None))
