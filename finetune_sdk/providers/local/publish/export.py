"""Export a finished local job for serving: a PEFT adapter, a merged model, or a GGUF file.

``export_job(home, job_id, format=..., out=DIR)`` reads ``FINETUNE_HOME/jobs/<job_id>/`` and
writes ``DIR``:

- ``adapter`` — the job's PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``)
  and its tokenizer, for ``vllm serve BASE --enable-lora --lora-modules NAME=DIR``.
  LoRA jobs only.
- ``merged`` — the base model with the adapter merged in (``merge_and_unload``), saved as
  safetensors with its tokenizer, chat template and generation config: a plain Hugging Face
  model directory (``vllm serve DIR``). A full fine-tune is copied as it is.
- ``gguf`` — one GGUF file (``f16``, ``f32`` or ``q8_0``) for llama.cpp and Ollama, written
  by :mod:`.gguf_writer` for the LLaMA architecture (SmolLM2 is one), plus an Ollama
  ``Modelfile``. Other architectures: export ``merged`` and run llama.cpp's converter on it.

Everything is written to a temporary directory beside ``DIR`` and renamed into place when
complete; an existing non-empty ``DIR`` is never overwritten.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ....errors import FineTuneError
from ..jobs.store import JobRecord, JobStore
from .gguf_writer import GgufUnsupported, check_llama_gguf, write_llama_gguf

__all__ = ["VLLM_LORA_RANKS", "ExportError", "ExportResult", "export_job"]

ExportFormat = Literal["adapter", "merged", "gguf"]
GgufType = Literal["f16", "f32", "q8_0"]

FORMATS = ("adapter", "merged", "gguf")
GGUF_TYPES = ("f16", "f32", "q8_0")

#: The ``--max-lora-rank`` values vLLM accepts (its default is 16).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16

CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"

#: Ollama's Go-template rendering of ChatML (the same text as the Jinja ChatML template).
OLLAMA_CHATML_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ExportError(FineTuneError):
    """A job cannot be exported as asked. The message says why and what to do instead."""


@dataclass
class ExportResult:
    """What :func:`export_job` wrote, and how to serve it."""

    format: str
    path: Path                                          # the output directory
    files: list[Path] = field(default_factory=list)     # every file written, under ``path``
    commands: list[str] = field(default_factory=list)   # shell commands that serve the export
    notes: list[str] = field(default_factory=list)      # caveats worth reading


# --------------------------------------------------------------------------- public entry point

def export_job(home: Path, job_id: str, *, format: ExportFormat, out: Path, gguf_type: GgufType = "f16",
               name: str | None = None) -> ExportResult:
    """Export the finished job ``job_id`` of the local backend under ``home`` into ``out``.

    ``format``: ``"adapter"`` (LoRA jobs), ``"merged"`` or ``"gguf"`` (with ``gguf_type``
    ``"f16"``, ``"f32"`` or ``"q8_0"``). ``name`` is the model name used in the serving
    commands and the GGUF file name (default: derived from the fine-tuned model id).
    Raises :class:`ExportError`.
    """
    if format not in FORMATS:
        raise ExportError(f"Unknown export format {format!r}. Use one of: {', '.join(FORMATS)} "
                          f"(adapter = the LoRA adapter for vLLM, merged = a full Hugging Face model, "
                          f"gguf = one file for llama.cpp/Ollama).")
    if gguf_type not in GGUF_TYPES:
        raise ExportError(f"Unknown gguf_type {gguf_type!r}. Use one of: {', '.join(GGUF_TYPES)}.")
    home = Path(home).expanduser()
    record, job_dir = _read_job(home, job_id)
    name = _model_name(record, name)
    out = Path(out).expanduser().absolute()
    _check_out(out)
    source = _JobSource(record, job_dir)

    if format == "adapter":
        return _atomic(out, lambda tmp: _export_adapter(source, tmp, out, name))
    if format == "merged":
        return _atomic(out, lambda tmp: _export_merged(source, tmp, out, name))
    # Check what can be checked before the (slow) merge.
    _check_gguf_supported(source)
    return _atomic(out, lambda tmp: _export_gguf(source, tmp, out, name, gguf_type))


# --------------------------------------------------------------------------- the job

def _read_job(home: Path, job_id: str) -> tuple[JobRecord, Path]:
    store = JobStore(home)
    try:
        job_dir = store.dir(job_id)
    except KeyError:
        raise ExportError(f"{job_id!r} is not a valid job id (expected something like 'ftjob-...'). "
                          f"List the local jobs to find the id.") from None
    if not (job_dir / "job.json").is_file():
        known = sorted(store.ids())
        hint = f" Known jobs: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}." if known else \
            " There are no local jobs there."
        raise ExportError(f"No local job {job_id!r}: {job_dir / 'job.json'} does not exist (looked in "
                          f"{store.root}).{hint} Check the job id and FINETUNE_HOME.")
    try:
        record = store.read(job_id)
    except (OSError, ValueError) as exc:
        raise ExportError(f"The record of job {job_id!r} ({job_dir / 'job.json'}) cannot be read "
                          f"({type(exc).__name__}: {exc}); the job directory looks damaged.") from exc
    if record.status != "succeeded":
        if record.status in ("failed", "cancelled"):
            why = f"it {record.status}" + (f" ({record.error.message})" if record.error else "")
            fix = "Only a succeeded job has a final model; fix the cause and start a new job."
        else:
            why = f"it is still {record.status}"
            fix = "Wait until it has succeeded, then export it."
        raise ExportError(f"Job {job_id!r} cannot be exported: {why}. {fix}")
    return record, job_dir


class _JobSource:
    """Where a finished job's weights, tokenizer and base model are."""

    def __init__(self, record: JobRecord, job_dir: Path) -> None:
        self.record = record
        self.job_dir = job_dir
        self.adapter_dir = job_dir / "adapter"
        self.model_dir = job_dir / "model"
        if (self.adapter_dir / "adapter_config.json").is_file():
            self.kind: Literal["lora", "full"] = "lora"
        elif (self.model_dir / "config.json").is_file():
            self.kind = "full"
        else:
            expected = "adapter/ (a LoRA adapter)" if record.config.get("lora", True) else "model/ (full weights)"
            raise ExportError(f"Job {record.id!r} succeeded but its directory {job_dir} has no {expected}; "
                              f"the trained weights are missing. Run the job again.")
        self._base_dir: Path | None = None

    @property
    def trust_remote_code(self) -> bool:
        return bool(self.record.config.get("trust_remote_code", False))

    def base_dir(self) -> Path:
        """The base model directory (resolved again if the recorded one is gone)."""
        if self._base_dir is not None:
            return self._base_dir
        recorded = self.record.base_model_path
        if recorded and (Path(recorded) / "config.json").is_file():
            self._base_dir = Path(recorded)
            return self._base_dir
        from .. import models

        try:
            resolved = models.resolve_base_model(self.record.spec.model, trust_remote_code=self.trust_remote_code)
        except FineTuneError as exc:
            raise ExportError(f"The base model of job {self.record.id!r} ({self.record.spec.model!r}) is needed "
                              f"to merge the adapter, and it cannot be found: {exc}") from exc
        self._base_dir = resolved.path
        return self._base_dir

    def embedded_upstream(self) -> str | None:
        """The Hub id of the embedded base model, when the job used it."""
        from .. import models

        canonical = models.ALIASES.get(str(self.record.spec.model).strip().lower())
        if canonical is None:
            return None
        embedded = getattr(models, "_EMBEDDED", {}).get(canonical)
        return getattr(embedded, "upstream", None) or "HuggingFaceTB/SmolLM2-135M-Instruct"

    def hub_id(self) -> str | None:
        """The Hub id of the base model, when it came from the Hub."""
        model = str(self.record.spec.model).strip()
        if Path(model).expanduser().exists():
            return None
        if re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$", model):
            return model
        return None

    def base_for_serving(self) -> tuple[str, list[str]]:
        """What to pass to ``vllm serve`` as the base model, and notes about it."""
        upstream = self.embedded_upstream()
        if upstream is not None:
            note = (f"The base model is the embedded {upstream}, whose local copy was dequantised from a Q4_1 GGUF; "
                    f"vLLM downloads the original bf16 weights from the Hub, so outputs differ slightly from the "
                    f"local evaluation. For bit-for-bit the same weights, export format='merged' and serve that.")
            return upstream, [note]
        hub = self.hub_id()
        if hub is not None:
            return hub, []
        return str(self.base_dir()), []

    def config_source(self) -> Path:
        """The directory whose config.json describes the exported architecture."""
        return self.model_dir if self.kind == "full" else self.base_dir()

    def tokenizer_source(self) -> Path:
        """The directory holding the tokenizer the job trained with."""
        d = self.model_dir if self.kind == "full" else self.adapter_dir
        if (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file():
            return d
        return self.base_dir()


def _model_name(record: JobRecord, name: str | None) -> str:
    if name is not None:
        if not _NAME.match(name):
            raise ExportError(f"Model name {name!r} is not usable: use letters, digits, '.', '_' and '-' "
                              f"(starting with a letter or digit, at most 128 characters), e.g. 'my-model'.")
        return name
    base = record.fine_tuned_model or record.id
    derived = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._").lower()
    derived = re.sub(r"-{2,}", "-", derived)[:128] or "model"
    return derived


# --------------------------------------------------------------------------- the output directory

def _check_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"The output path {out} is a file. Give a directory path that does not exist yet "
                              f"(or an empty directory).")
        if any(out.iterdir()):
            raise ExportError(f"The output directory {out} is not empty; exports never overwrite files. "
                              f"Choose a new directory, or delete {out} first.")


def _atomic(out: Path, build: Any) -> ExportResult:
    """Run ``build(tmp)`` in a temporary directory beside ``out``, then rename it to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        result: ExportResult = build(tmp)
        _check_out(out)  # another export may have got there first
        if out.exists():
            out.rmdir()  # empty: a directory cannot be renamed onto an existing one everywhere
        try:
            os.rename(tmp, out)
        except OSError as exc:
            raise ExportError(f"Could not move the finished export from {tmp} to {out}: {exc}. Nothing was "
                              f"written to {out}.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.path = out
    result.files = sorted(p for p in out.rglob("*") if p.is_file())
    return result


# --------------------------------------------------------------------------- adapter

def _export_adapter(source: _JobSource, tmp: Path, out: Path, name: str) -> ExportResult:
    if source.kind != "lora":
        raise ExportError(f"Job {source.record.id!r} is a full fine-tune: it has no adapter: export merged "
                          f"instead (format='merged', or format='gguf' for llama.cpp/Ollama).")
    shutil.copytree(source.adapter_dir, tmp, dirs_exist_ok=True)
    adapter_cfg = json.loads((tmp / "adapter_config.json").read_text(encoding="utf-8"))
    rank = _adapter_rank(adapter_cfg, source.record)
    base, notes = source.base_for_serving()
    command = (f"vllm serve {shlex.quote(base)} --enable-lora --lora-modules "
               f"{shlex.quote(f'{name}={out}')}")
    if rank > VLLM_DEFAULT_MAX_LORA_RANK:
        allowed = [r for r in VLLM_LORA_RANKS if r >= rank]
        if allowed:
            command += f" --max-lora-rank {allowed[0]}"
        else:
            notes.append(f"The adapter's rank {rank} is above the largest rank vLLM serves "
                         f"({VLLM_LORA_RANKS[-1]}); export format='merged' and serve that instead.")
    if source.record.config.get("qlora"):
        notes.append("The adapter was trained on a 4-bit (QLoRA) base; serving it on the full-precision base "
                     "gives slightly different outputs.")
    notes.append(f"Requests select the adapter with \"model\": \"{name}\".")
    return ExportResult(format="adapter", path=out, commands=[command], notes=notes)


def _adapter_rank(adapter_cfg: dict[str, Any], record: JobRecord) -> int:
    candidates = [adapter_cfg.get("r"), *(adapter_cfg.get("rank_pattern") or {}).values()]
    ranks = [int(r) for r in candidates if isinstance(r, (int, float))]
    if not ranks:
        ranks = [int(record.config.get("lora_rank", VLLM_DEFAULT_MAX_LORA_RANK))]
    return max(ranks)


# --------------------------------------------------------------------------- merged

def _export_merged(source: _JobSource, tmp: Path, out: Path, name: str) -> ExportResult:
    notes = _write_merged(source, tmp)
    return ExportResult(format="merged", path=out, commands=[f"vllm serve {shlex.quote(str(out))}"], notes=notes)


def _write_merged(source: _JobSource, dest: Path) -> list[str]:
    """Write the fine-tuned model as a plain Hugging Face directory into ``dest`` (which exists)."""
    notes: list[str] = []
    if source.kind == "full":
        shutil.copytree(source.model_dir, dest, dirs_exist_ok=True)
        return notes
    try:
        import torch
        from peft import PeftModel
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ExportError("Merging an adapter needs torch, transformers and peft: "
                          "pip install 'finetune-sdk[local]'") from exc
    from .. import models

    base_dir = source.base_dir()
    base_cfg = _read_config(base_dir)
    resolved = models.ResolvedModel(name=str(base_dir), path=base_dir, source="local")
    try:
        model = models.load_model(resolved, dtype=torch.float32, trust_remote_code=source.trust_remote_code)
    except FineTuneError as exc:
        raise ExportError(f"Cannot load the base model of job {source.record.id!r} to merge its adapter: {exc}") \
            from exc
    try:
        model = PeftModel.from_pretrained(model, str(source.adapter_dir), torch_device="cpu")
        model = model.merge_and_unload()
    except Exception as exc:
        raise ExportError(f"Merging the adapter of job {source.record.id!r} ({source.adapter_dir}) into its base "
                          f"model ({base_dir}) failed: {type(exc).__name__}: {exc}. The adapter may not belong "
                          f"to this base model.") from exc
    dtype_name = base_cfg.get("dtype") or base_cfg.get("torch_dtype")
    target = getattr(torch, str(dtype_name), None) if dtype_name else None
    if isinstance(target, torch.dtype) and target.is_floating_point and target != torch.float32:
        model = model.to(target)  # merged in float32, stored like the base
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.tokenizer_source()),
                                                  trust_remote_code=source.trust_remote_code)
    except Exception as exc:
        raise ExportError(f"Cannot load the tokenizer of job {source.record.id!r} from "
                          f"{source.tokenizer_source()}: {type(exc).__name__}: {exc}") from exc
    gen = getattr(model, "generation_config", None)
    if gen is not None and tokenizer.eos_token_id is not None:
        eos = gen.eos_token_id
        eos_ids = eos if isinstance(eos, list) else ([] if eos is None else [eos])
        if tokenizer.eos_token_id not in eos_ids:
            gen.eos_token_id = [*eos_ids, tokenizer.eos_token_id] if eos_ids else tokenizer.eos_token_id
        if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
            gen.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))
    if not any(dest.glob("*.safetensors")):
        raise ExportError(f"transformers wrote no safetensors file into {dest}; the merged export is incomplete.")
    if source.embedded_upstream():
        notes.append(f"The merged weights are the embedded {source.embedded_upstream()} (dequantised from its "
                     f"Q4_1 GGUF) plus the adapter, i.e. exactly the model the job evaluated.")
    if source.record.config.get("qlora"):
        notes.append("The adapter was trained on a 4-bit (QLoRA) base and merged into the full-precision base; "
                     "outputs differ slightly from the quantised training model.")
    return notes


def _read_config(d: Path) -> dict[str, Any]:
    try:
        data = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"Cannot read {d / 'config.json'} ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{d / 'config.json'} is not a JSON object.")
    return data


# --------------------------------------------------------------------------- gguf

def _convert_command(what: str) -> str:
    return f"python convert_hf_to_gguf.py {what} --outfile model.gguf --outtype f16"


def _unsupported(source: _JobSource, why: str) -> ExportError:
    return ExportError(
        f"Job {source.record.id!r} cannot be exported to GGUF here: {why}. Export it with format='merged' "
        f"and convert that directory with llama.cpp's converter (https://github.com/ggml-org/llama.cpp): "
        f"`{_convert_command('<merged dir>')}` (then `llama-quantize model.gguf model-q8_0.gguf Q8_0` if you "
        f"want it smaller).")


def _check_gguf_supported(source: _JobSource) -> None:
    cfg = _read_config(source.config_source())
    try:
        check_llama_gguf(cfg, source.tokenizer_source() / "tokenizer.json")
    except GgufUnsupported as exc:
        raise _unsupported(source, str(exc)) from None


def _export_gguf(source: _JobSource, tmp: Path, out: Path, name: str, gguf_type: str) -> ExportResult:
    if source.kind == "full":
        model_dir = source.model_dir
    else:
        model_dir = tmp / ".merged"
        model_dir.mkdir()
        _write_merged(source, model_dir)
    filename = f"{name}-{gguf_type}.gguf"
    try:
        info = write_llama_gguf(model_dir, tmp / filename, gguf_type=gguf_type, name=name)
    except GgufUnsupported as exc:
        raise _unsupported(source, str(exc)) from None
    finally:
        if model_dir.parent == tmp:
            shutil.rmtree(model_dir, ignore_errors=True)
    notes = list(info["notes"])
    modelfile, more = _modelfile(filename, info)
    notes += more
    (tmp / "Modelfile").write_text(modelfile, encoding="utf-8")
    commands = [
        f"ollama create {name} -f {shlex.quote(str(out / 'Modelfile'))}",
        f"ollama run {name}",
        f"llama-cli -m {shlex.quote(str(out / filename))} -cnv",
        f"llama-server -m {shlex.quote(str(out / filename))}",
    ]
    if source.embedded_upstream():
        notes.append(f"The GGUF holds the embedded {source.embedded_upstream()} (dequantised from its Q4_1 GGUF) "
                     f"plus the adapter.")
    return ExportResult(format="gguf", path=out, commands=commands, notes=notes)


# --------------------------------------------------------------------------- Ollama

_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.+?)<\|im_end\|>")


def _go_quote(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def _modelfile(filename: str, info: dict[str, Any]) -> tuple[str, list[str]]:
    """An Ollama Modelfile for the GGUF, and notes."""
    template = info.get("chat_template") or ""
    lines = ["# Ollama Modelfile written by finetune-sdk.  ollama create NAME -f Modelfile",
             f"FROM ./{filename}", ""]
    notes: list[str] = []
    if CHATML_START in template or not template:
        lines.append(f"TEMPLATE {_go_quote(OLLAMA_CHATML_TEMPLATE)}")
        default_system = _DEFAULT_SYSTEM.search(template)
        if default_system and "{{" not in default_system.group(1) and "'" not in default_system.group(1):
            lines.append(f"SYSTEM {_go_quote(default_system.group(1))}")
        lines.append(f'PARAMETER stop "{CHATML_END}"')
        if not template:
            notes.append("The model has no chat template; the Modelfile assumes ChatML.")
    else:
        notes.append("The chat template is not ChatML, so the Modelfile has no TEMPLATE: Ollama derives one from "
                     "the GGUF's tokenizer.chat_template when it recognises it; otherwise add a TEMPLATE by hand.")
        eos = info.get("eos_token")
        if eos:
            lines.append(f"PARAMETER stop {json.dumps(eos)}")
    return "\n".join(lines) + "\n", notes
