"""Tokenization with loss masks, and padding-free packing.

**Loss masks.** A chat example is rendered with the tokenizer's chat template; the loss
covers exactly the tokens each trained assistant message adds — its content, tool calls
and the end-of-turn token (so the model learns to stop) — and nothing else. ``weight: 0``
assistant messages are excluded. Templates rarely carry ``{% generation %}`` markers, so
spans are found by rendering incrementally and comparing: the text an assistant message
adds is ``render(messages[:i+1])`` minus ``render(messages[:i], add_generation_prompt=True)``,
and tokens are labelled by their character offsets in the full rendering.

**Packing.** Each optimizer step takes ``batch_size`` examples; they are packed
best-fit-decreasing into micro-batches of at most ``micro_batch_tokens`` tokens with no
padding at all. Sequences stay isolated: restarted position ids plus a block-diagonal
causal mask (boolean for sdpa, additive for eager attention), or FlashAttention's
variable-length kernels on GPU, where position ids alone delimit sequences.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Tokens", "ChatRenderer", "tokenize_example", "pack", "MicroBatch", "build_micro_batch",
           "IGNORE", "PreferencePair", "UnsupportedContent"]

IGNORE = -100


class UnsupportedContent(ValueError):
    """An example holds content a text-only model cannot train on (an image): refused, never dropped."""


_NO_IMAGES = ("the local trainer trains text-only models and never drops content. Remove the image parts (or "
              "the example), or fine-tune a vision model on a hosted provider.")


@dataclass
class Tokens:
    """One tokenized example: ids and per-token labels (IGNORE where no loss)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass
class PreferencePair:
    chosen: Tokens
    rejected: Tokens


def _text(content: list[Any], where: str) -> str:
    """The text of a list of content parts; UnsupportedContent for an image or any part of unknown kind."""
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        if kind == "text":
            texts.append(part.get("text") or "")
        elif kind != "refusal":  # assistant refusal parts are left out of the rendering, as they always were
            what = "an image" if kind == "image_url" else f"a {kind!r} part"
            raise UnsupportedContent(f"{where}, content part {j} is {what}; {_NO_IMAGES}")
    return "".join(texts)


def _hf_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-format messages as chat templates expect them (text parts joined, tool-call arguments as objects)."""
    out = []
    for i, m in enumerate(messages):
        m = {k: v for k, v in m.items() if k != "weight"}
        content = m.get("content")
        if isinstance(content, list):
            m["content"] = _text(content, f"message {i}")
        elif content is None:
            m["content"] = ""
        calls = m.get("tool_calls")
        if calls:
            converted = []
            for call in calls:
                fn = dict(call.get("function") or {})
                args = fn.get("arguments")
                if isinstance(args, str):
                    try:
                        fn["arguments"] = json.loads(args)
                    except ValueError:
                        pass
                converted.append({**call, "function": fn})
            m["tool_calls"] = converted
        out.append(m)
    return out


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    return [t if isinstance(t, dict) else {"type": "function", "function": t} for t in tools]


class ChatRenderer:
    """Renders conversations with a tokenizer's chat template and labels assistant spans."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("The tokenizer has no chat template; set tokenizer.chat_template (e.g. ChatML).")
        self.tok = tokenizer
        self.max_length = max_length
        self.eot = self._end_of_turn()
        self.mismatches = 0  # templates whose prefixes are not prefixes of the full rendering

    def _end_of_turn(self) -> str | None:
        for candidate in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>"):
            if candidate in (self.tok.get_vocab() or {}):
                return candidate
        eos = getattr(self.tok, "eos_token", None)
        return eos if isinstance(eos, str) else None

    def text(self, messages: list[dict[str, Any]], tools: Any = None, *, add_generation_prompt: bool = False) -> str:
        return self.tok.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                            tokenize=False)

    def _encode(self, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
        if getattr(self.tok, "is_fast", False):
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
            return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        return list(self.tok(text, add_special_tokens=False)["input_ids"]), None

    def _truncate(self, ids: list[int], labels: list[int]) -> Tokens:
        truncated = len(ids) > self.max_length
        return Tokens(ids[: self.max_length], labels[: self.max_length], truncated)

    def chat(self, messages: list[dict[str, Any]], tools: Any = None) -> Tokens:
        """Tokens of a conversation, with labels on trained assistant spans only."""
        msgs = _hf_messages(messages)
        tools = _tools(tools)
        full = self.text(msgs, tools)
        spans: list[tuple[int, int]] = []
        for i, original in enumerate(messages):
            if original.get("role") != "assistant" or original.get("weight", 1) == 0:
                continue
            try:
                before = self.text(msgs[:i], tools, add_generation_prompt=True)
            except Exception:  # some templates cannot render an empty conversation
                if i:
                    raise
                before = ""
            upto = self.text(msgs[: i + 1], tools)
            if not (upto.startswith(before) and full.startswith(upto)):
                self.mismatches += 1
                continue
            start, end = len(before), len(upto)
            if self.eot:
                cut = upto.rfind(self.eot, start, end)
                if cut >= 0:
                    end = cut + len(self.eot)  # through the end-of-turn token, not the newline after it
            spans.append((start, end))
        ids, offsets = self._encode(full)
        labels = [IGNORE] * len(ids)
        if offsets is not None:
            k = 0
            for t, (a, b) in enumerate(offsets):
                while k < len(spans) and spans[k][1] <= a:
                    k += 1
                if k < len(spans) and a >= spans[k][0] and b > a and a < spans[k][1]:
                    labels[t] = ids[t]
        else:  # slow tokenizers: label by token-prefix arithmetic
            for start, end in spans:
                a = len(self._encode(full[:start])[0])
                b = len(self._encode(full[:end])[0])
                for t in range(a, min(b, len(ids))):
                    labels[t] = ids[t]
        return self._truncate(ids, labels)

    def prompt_completion(self, prompt: str, completion: str) -> Tokens:
        p = self._encode(prompt)[0]
        c = self._encode(completion)[0]
        eos = self.tok.eos_token_id
        tail = c + ([eos] if eos is not None else [])
        return self._truncate(p + tail, [IGNORE] * len(p) + tail)

    def preference(self, example: dict[str, Any]) -> PreferencePair:
        inp = example.get("input") or {}
        prompt = list(inp.get("messages") or [])
        tools = inp.get("tools")
        chosen = self.chat(prompt + list(example.get("preferred_output") or []), tools)
        rejected = self.chat(prompt + list(example.get("non_preferred_output") or []), tools)
        # DPO scores only the final answer: drop labels of earlier assistant turns in the input.
        n_prompt = len(self.chat(prompt, tools).input_ids) if any(m.get("role") == "assistant" for m in prompt) else 0
        for seq in (chosen, rejected):
            for t in range(min(n_prompt, len(seq.labels))):
                seq.labels[t] = IGNORE
        return PreferencePair(chosen, rejected)


def tokenize_example(renderer: ChatRenderer, example: dict[str, Any], fmt: str) -> Tokens | PreferencePair:
    """Tokens of one example; UnsupportedContent, naming the part, if it holds an image."""
    from ....data.records import image_parts

    images = image_parts(example)
    if images:
        more = f" (one of {len(images)})" if len(images) > 1 else ""
        raise UnsupportedContent(f"{images[0]} is an image{more}; {_NO_IMAGES}")
    if fmt == "chat":
        return renderer.chat(example.get("messages") or [], example.get("tools"))
    if fmt == "completion":
        return renderer.prompt_completion(str(example.get("prompt", "")), str(example.get("completion", "")))
    if fmt == "preference":
        return renderer.preference(example)
    raise ValueError(f"unknown format {fmt!r}")


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing bins of sequence indices, each holding at most ``capacity`` tokens."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        n = lengths[i]
        best = -1
        for b, free in enumerate(room):
            if n <= free and (best < 0 or free < room[best]):
                best = b
        if best < 0:
            bins.append([i])
            room.append(capacity - n)
        else:
            bins[best].append(i)
            room[best] -= n
    for members in bins:
        members.sort()  # stable order inside a bin, for reproducibility
    return bins


@dataclass
class MicroBatch:
    """One packed row: concatenated sequences, restarted positions, and the targets to score."""

    input_ids: Any           # LongTensor [1, T]
    position_ids: Any        # LongTensor [1, T]
    lengths: list[int]
    target_positions: Any    # LongTensor [N] — positions whose next token is supervised
    targets: Any             # LongTensor [N]
    segments: Any            # LongTensor [N] — which sequence each target belongs to
    cu_seqlens: Any = None   # LongTensor [S+1] — sequence boundaries (FlashAttention-style)
    attention_mask: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    padding: int = 0         # filler tokens at the end of the row (their own segment, never scored)

    @property
    def tokens(self) -> int:
        """Real tokens in the row (filler excluded)."""
        return sum(self.lengths) - self.padding


def build_micro_batch(seqs: Sequence[Tokens], *, mask: str, device: Any = None, pad_to_multiple: int = 1) -> MicroBatch:
    """Concatenate sequences into one padding-free row.

    ``mask``: "bool" (sdpa), "additive" (eager), or "segments" / "none" (per-sequence
    attention or FlashAttention varlen: ``cu_seqlens`` and position ids delimit the sequences).
    ``pad_to_multiple`` (segments only) appends a filler sequence with no targets so the row
    length is a multiple of it: CPU GEMM libraries keep state for every distinct shape, so
    bounding the row lengths bounds the process's memory over a long job.
    """
    import torch

    if pad_to_multiple < 1:
        raise ValueError(f"pad_to_multiple must be >= 1, got {pad_to_multiple}")
    filler = -sum(len(s) for s in seqs) % pad_to_multiple if mask == "segments" else 0
    if filler:
        seqs = [*seqs, Tokens(input_ids=[0] * filler, labels=[IGNORE] * filler)]

    ids: list[int] = []
    pos: list[int] = []
    tpos: list[int] = []
    tgt: list[int] = []
    seg: list[int] = []
    offset = 0
    for s_i, s in enumerate(seqs):
        n = len(s)
        ids.extend(s.input_ids)
        pos.extend(range(n))
        for t in range(n - 1):  # the token at t predicts t+1, inside this sequence only
            label = s.labels[t + 1]
            if label != IGNORE:
                tpos.append(offset + t)
                tgt.append(label)
                seg.append(s_i)
        offset += n
    T = len(ids)
    attention = None
    if mask not in ("none", "segments"):
        seg_of = torch.repeat_interleave(torch.arange(len(seqs)), torch.tensor([len(s) for s in seqs]))
        allow = (seg_of[:, None] == seg_of[None, :]) & torch.ones(T, T, dtype=torch.bool).tril_()
        if mask == "bool":
            attention = allow[None, None]
        else:
            attention = torch.zeros(1, 1, T, T).masked_fill_(~allow[None, None], torch.finfo(torch.float32).min)
    to = (lambda x: x.to(device)) if device is not None else (lambda x: x)
    return MicroBatch(input_ids=to(torch.tensor([ids])), position_ids=to(torch.tensor([pos])),
                      lengths=[len(s) for s in seqs], target_positions=to(torch.tensor(tpos, dtype=torch.long)),
                      targets=to(torch.tensor(tgt, dtype=torch.long)), segments=to(torch.tensor(seg, dtype=torch.long)),
                      cu_seqlens=torch.tensor([0, *itertools.accumulate(len(s) for s in seqs)], dtype=torch.long),
                      attention_mask=to(attention) if attention is not None else None, padding=filler)
