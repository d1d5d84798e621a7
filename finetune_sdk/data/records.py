"""The schema of one JSONL line, checked by hand for precise codes, paths and fixes.

Three formats (facts: OpenAI fine-tuning guide and SPEC history, see docs/dataset-format.md):

- ``chat`` — ``{"messages": [...], "tools": [...], "parallel_tool_calls": bool, "functions": [...]}``
  (supervised; with ``method="reinforcement"`` the same shape with free extra keys);
- ``preference`` — ``{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}`` (DPO);
- ``completion`` — ``{"prompt": "...", "completion": "..."}`` (legacy babbage-002 / davinci-002).

Every check appends ``(code, path, message)`` to a list; the validator attaches line
numbers and severities. Checks never raise on any JSON value.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .rules import DatasetRules, rules_for

__all__ = ["CODES", "CodeInfo", "Context", "detect_format", "check_example", "image_parts", "severity_of"]


@dataclass(frozen=True)
class CodeInfo:
    severity: str  # "error" or "warning" (the default; a few depend on the target)
    summary: str
    fix: str


#: Every code the validator can report. Stable: codes are never renamed or reused.
CODES: dict[str, CodeInfo] = {
    # -- lines and files
    "invalid_utf8": CodeInfo("error", "The line is not valid UTF-8.", "Re-save the file as UTF-8."),
    "invalid_json": CodeInfo("error", "The line is not valid JSON.",
                             "Write exactly one JSON object per line (JSON Lines); no trailing commas or comments."),
    "not_an_object": CodeInfo("error", "The line is JSON but not an object.",
                              "Each line must be a JSON object such as {\"messages\": [...]}."),
    "blank_line": CodeInfo("warning", "The line is empty.", "Remove blank lines; some uploaders reject them."),
    "unknown_format": CodeInfo("error", "The object has none of the keys of a known format.",
                               "Use {\"messages\": [...]} (chat), {\"input\", \"preferred_output\", "
                               "\"non_preferred_output\"} (preference) or {\"prompt\", \"completion\"} (legacy)."),
    "mixed_formats": CodeInfo("error", "The file mixes dataset formats.",
                              "Put every example in the same format; split the file per format."),
    "method_format_mismatch": CodeInfo("error", "The format does not fit the training method.",
                                       "Use the chat format for supervised and reinforcement, the preference "
                                       "format for dpo."),
    "format_not_supported_by_model": CodeInfo("error", "The model does not accept this format.",
                                              "Chat models take the chat format; babbage-002/davinci-002 take "
                                              "prompt/completion."),
    "method_not_supported_by_model": CodeInfo("error", "The model cannot be trained with this method.",
                                              "Pick a model that supports the method (e.g. DPO: gpt-4o, gpt-4.1 "
                                              "families), or change the method."),
    "empty_file": CodeInfo("error", "The file holds no examples.", "Add examples, one JSON object per line."),
    "too_few_examples": CodeInfo("error", "Fewer examples than the service requires (OpenAI and Azure: 10).",
                                 "Add examples: OpenAI and Azure require at least 10 (50-100 are recommended), "
                                 "Fireworks 3, Together 1."),
    "too_many_examples": CodeInfo("error", "More examples than the service accepts in one file.",
                                  "Split the dataset or sample it down (Fireworks: at most 3,000,000)."),
    "format_not_supported_by_provider": CodeInfo("error", "The service does not accept this dataset format.",
                                                 "Convert the file (finetune convert) to a format the service "
                                                 "takes, e.g. chat."),
    "too_many_image_examples": CodeInfo("error", "More than 50,000 examples contain images.",
                                        "Split the dataset; a file may have at most 50,000 examples with images."),
    "duplicate_example": CodeInfo("warning", "The example repeats an earlier line exactly.",
                                  "Remove duplicates (finetune convert ... or finetune split de-duplicate)."),
    "train_validation_overlap": CodeInfo("warning", "A validation example also appears in the training file.",
                                         "Keep validation examples out of training, "
                                         "or metrics will flatter the model."),
    "example_too_long": CodeInfo("warning", "The example exceeds the model's training context limit.",
                                 "Shorten it or split the conversation; the provider truncates it from the end."),
    # -- messages
    "missing_messages": CodeInfo("error", "\"messages\" is missing, empty or not a list.",
                                 "Give a non-empty list of message objects."),
    "message_not_object": CodeInfo("error", "A message is not an object.",
                                   "Each message must be an object with \"role\" and \"content\"."),
    "missing_role": CodeInfo("error", "A message has no role.", "Add \"role\": one of system, user, assistant, tool."),
    "invalid_role": CodeInfo("error", "A message has an unknown role.",
                             "Use system, user, assistant, tool (or the deprecated function)."),
    "unknown_key": CodeInfo("error", "An object has a key the format does not allow.",
                            "Remove the key or fix its spelling."),
    "unknown_top_level_key": CodeInfo("warning", "The example has a top-level key the format does not use.",
                                      "Remove it; it is ignored by training."),
    "missing_content": CodeInfo("error", "A message has no content.",
                                "Add \"content\" (assistant messages may omit it only when they carry tool_calls)."),
    "empty_content": CodeInfo("warning", "A message has empty content.", "Fill it in or remove the message."),
    "invalid_content": CodeInfo("error", "Content is neither a string nor a list of content parts.",
                                "Use a string, or a list of {\"type\": \"text\", \"text\": ...} parts."),
    "invalid_content_part": CodeInfo("error", "A content part is malformed or of a type this role cannot have.",
                                     "Use {\"type\": \"text\", \"text\": \"...\"} or, in user messages, "
                                     "{\"type\": \"image_url\", \"image_url\": {\"url\": \"...\"}}."),
    "image_in_assistant_message": CodeInfo("error", "An assistant message contains an image.",
                                           "Images are only allowed in user messages."),
    "images_not_supported": CodeInfo("error", "Images are not supported here.",
                                     "Preference (DPO) and completion data are text-only; remove the images."),
    "invalid_image_url": CodeInfo("error", "An image URL is not an https URL or a base64 data URL.",
                                  "Use https://... or data:image/jpeg|png|webp;base64,..."),
    "image_too_large": CodeInfo("error", "An inline image exceeds 10 MB.", "Resize or compress the image."),
    "too_many_images": CodeInfo("error", "An example contains more than 10 images.",
                                "Keep at most 10 images per example."),
    "images_not_supported_by_model": CodeInfo("error", "The example contains images, and the target trains "
                                                       "text-only models (the local trainer).",
                                              "Remove the image parts (or the examples), or fine-tune a "
                                              "vision model on a hosted provider."),
    "invalid_weight": CodeInfo("error", "\"weight\" is not 0 or 1, or is on a non-assistant message.",
                               "Use \"weight\": 0 (skip) or 1 (train), on assistant messages only."),
    "no_trainable_assistant": CodeInfo("error", "The example has no assistant message to train on.",
                                       "Add an assistant message (with weight 1 or no weight)."),
    "invalid_name": CodeInfo("error", "\"name\" is not a string, or a function message lacks one.",
                             "Use a string (function messages require it)."),
    "invalid_refusal": CodeInfo("error", "\"refusal\" is not a string.", "Use a string or null."),
    "invalid_tool_calls": CodeInfo("error", "\"tool_calls\" is malformed.",
                                   "Use [{\"id\": \"call_1\", \"type\": \"function\", \"function\": "
                                   "{\"name\": \"...\", \"arguments\": \"{...}\"}}]."),
    "tool_arguments_not_json": CodeInfo("warning", "Tool-call arguments are not a JSON object encoded as a string.",
                                        "Encode the arguments object with json.dumps."),
    "undefined_tool": CodeInfo("warning", "The example calls a tool it does not define.",
                               "Add the tool to the example's \"tools\" list, or fix the name."),
    "missing_tool_call_id": CodeInfo("error", "A tool message has no tool_call_id.",
                                     "Add \"tool_call_id\" with the id of the call it answers."),
    "unmatched_tool_call_id": CodeInfo("error", "A tool message answers a call that was never made.",
                                       "Its tool_call_id must equal the id of an earlier assistant tool call."),
    "invalid_function_call": CodeInfo("error", "\"function_call\" is malformed.",
                                      "Use {\"name\": \"...\", \"arguments\": \"{...}\"}."),
    "invalid_tools": CodeInfo("error", "\"tools\" is malformed.",
                              "Use [{\"type\": \"function\", "
                              "\"function\": {\"name\": \"...\", \"parameters\": {...}}}]."),
    "invalid_functions": CodeInfo("error", "\"functions\" is malformed.",
                                  "Use 1-128 objects {\"name\": \"...\", \"parameters\": {...}}."),
    "invalid_parallel_tool_calls": CodeInfo("error", "\"parallel_tool_calls\" is not a boolean.",
                                            "Use true or false."),
    "special_token_in_content": CodeInfo("error", "Text contains a reserved special token such as <|endoftext|>.",
                                         "Remove or escape it; OpenAI rejects files containing special tokens."),
    "repeated_role": CodeInfo("error", "Two consecutive messages have the same role.",
                              "Merge the two messages into one, or put the other role's turn between them "
                              "(Together AI rejects repeated roles)."),
    "system_message_not_first": CodeInfo("error", "A system message comes after other messages.",
                                         "Put the system message first, or drop it (Fireworks AI)."),
    "missing_system_message": CodeInfo("warning", "The example has no system message.",
                                       "Optional, but a consistent system prompt usually helps."),
    "missing_user_message": CodeInfo("warning", "The example has no user message.",
                                     "Most examples should contain at least one user turn."),
    "messages_after_last_assistant": CodeInfo("warning", "Messages follow the last assistant message.",
                                              "They are not trained on; drop them."),
    # -- preference
    "missing_input": CodeInfo("error", "\"input\" is missing or not an object with messages.",
                              "Give {\"input\": {\"messages\": [...]}}."),
    "missing_preferred_output": CodeInfo("error", "\"preferred_output\" is missing.",
                                         "Give a list with one assistant message."),
    "missing_non_preferred_output": CodeInfo("error", "\"non_preferred_output\" is missing.",
                                             "Give a list with one assistant message."),
    "invalid_preference_output": CodeInfo("error", "A preference output is not one assistant message with text.",
                                          "Use [{\"role\": \"assistant\", \"content\": \"...\"}]."),
    "legacy_preference_keys": CodeInfo("error", "Old key names preferred_completion/non_preferred_completion.",
                                       "Rename them to preferred_output / non_preferred_output."),
    "identical_preference_outputs": CodeInfo("warning", "The preferred and non-preferred outputs are identical.",
                                             "The pair teaches nothing; make them differ or drop it."),
    "preference_input_not_user_last": CodeInfo("warning", "The preference input does not end with a user message.",
                                               "The outputs answer the last user turn; end the input with one."),
    # -- completion
    "invalid_prompt": CodeInfo("error", "\"prompt\" is missing or not a string.", "Give a string."),
    "invalid_completion": CodeInfo("error", "\"completion\" is missing or not a string.", "Give a string."),
    # -- reinforcement
    "rft_last_message_not_user": CodeInfo("warning", "A reinforcement example should end with a user message.",
                                          "The model's answer to the last user message is graded."),
}

def severity_of(code: str, rules: DatasetRules) -> str:
    """A code's severity for a target: some limits are errors only where a service enforces them."""
    if code == "too_few_examples":
        return "error" if rules.hosted else "warning"
    if code == "special_token_in_content":
        return "error" if rules.hosted and rules.reserved_tokens else "warning"
    if code == "unknown_top_level_key":
        return "error" if rules.strict_top_level_keys else "warning"
    return CODES[code].severity


@dataclass
class Context:
    """What the checks need to know about the target: the method and the service's rules."""

    method: str | None = None  # "supervised" | "dpo" | "reinforcement" | None
    rules: DatasetRules = dataclasses.field(default_factory=lambda: rules_for(None))

    @property
    def images(self) -> bool:
        return self.rules.images


Issues = list  # list of (code, path, message)

_ROLES = ("system", "user", "assistant", "tool", "function")
_ALLOWED_KEYS = {
    "system": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "tool_calls", "function_call", "refusal", "weight"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
_PART_TYPES = {
    "system": ("text",),
    "user": ("text", "image_url"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
    "function": ("text",),
}
_CHAT_TOP = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
_PREF_TOP = frozenset({"input", "preferred_output", "non_preferred_output"})
_PREF_INPUT = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
_COMPLETION_TOP = frozenset({"prompt", "completion"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SPECIAL = re.compile(r"<\|(endoftext|fim_prefix|fim_middle|fim_suffix|endofprompt|im_start|im_end|im_sep)\|>")
_DATA_URL = re.compile(r"^data:image/(jpeg|jpg|png|webp);base64,", re.IGNORECASE)
MAX_IMAGES_PER_EXAMPLE = 10
MAX_IMAGE_BYTES = 10 * 1024 * 1024


def detect_format(obj: dict) -> str | None:
    if "messages" in obj:
        return "chat"
    if "input" in obj or "preferred_output" in obj or "non_preferred_output" in obj \
            or "preferred_completion" in obj:
        return "preference"
    if "prompt" in obj or "completion" in obj:
        return "completion"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _special(text: str, path: str, out: Issues) -> None:
    if "<|" in text:
        m = _SPECIAL.search(text)
        if m:
            out.append(("special_token_in_content", path,
                        f"{path} contains the reserved token {m.group(0)}; OpenAI rejects such files "
                        f"(\"message contains an invalid token\"). Remove it or break it up, e.g. '<| endoftext |>'."))


def _is_json_object_string(s: str) -> bool:
    try:
        return isinstance(json.loads(s), dict)
    except (ValueError, RecursionError):
        return False


class _ChatState:
    __slots__ = ("images", "call_ids", "tool_names", "called", "has_system", "has_user", "trainable",
                 "assistants", "last_assistant", "count")

    def __init__(self) -> None:
        self.images = 0
        self.call_ids: set[str] = set()
        self.tool_names: set[str] | None = None  # None: the example defines no tools
        self.called: list[tuple[str, str]] = []  # (name, path)
        self.has_system = False
        self.has_user = False
        self.trainable = 0
        self.assistants = 0
        self.last_assistant = -1
        self.count = 0


def _check_parts(parts: list, role: str, path: str, state: _ChatState, out: Issues, images_ok: bool) -> bool:
    """Check a list of content parts; True if it holds any non-empty text or an image."""
    allowed = _PART_TYPES[role]
    substantial = False
    if not parts:
        out.append(("invalid_content", path, f"{path} is an empty list; give at least one content part."))
        return False
    for j, part in enumerate(parts):
        p = f"{path}[{j}]"
        if not isinstance(part, dict):
            out.append(("invalid_content_part", p, f"{p} is {_kind(part)}; each content part must be an object."))
            continue
        kind = part.get("type")
        if kind == "image_url":
            if role == "assistant":
                out.append(("image_in_assistant_message", p,
                            f"{p} is an image in an assistant message; images are only allowed in user messages."))
                continue
            if not images_ok:
                out.append(("images_not_supported", p, f"{p} is an image; this format is text-only."))
                continue
            if kind not in allowed:
                out.append(("invalid_content_part", p, f"{p} is an image; {role} messages cannot contain images."))
                continue
            state.images += 1
            substantial = True
            img = part.get("image_url")
            if not isinstance(img, dict) or not isinstance(img.get("url"), str):
                out.append(("invalid_content_part", p + ".image_url",
                            f"{p}.image_url must be an object with a string \"url\"."))
                continue
            extra = set(part) - {"type", "image_url"}
            if extra:
                out.append(("unknown_key", p, f"{p} has unknown key(s) {sorted(extra)}."))
            url = img["url"]
            if url.startswith("data:"):
                if not _DATA_URL.match(url):
                    out.append(("invalid_image_url", p + ".image_url.url",
                                f"{p}.image_url.url is a data URL but not data:image/jpeg|png|webp;base64,...; "
                                f"only JPEG, PNG and WEBP images are accepted."))
                elif (len(url) - url.index(",") - 1) * 3 // 4 > MAX_IMAGE_BYTES:
                    out.append(("image_too_large", p + ".image_url.url",
                                f"{p}.image_url.url holds an image over 10 MB; resize or compress it."))
            elif not (url.startswith(("https://", "http://"))):
                out.append(("invalid_image_url", p + ".image_url.url",
                            f"{p}.image_url.url must be an https:// URL or a base64 data URL, not {url[:40]!r}."))
            detail = img.get("detail")
            if detail is not None and detail not in ("low", "high", "auto"):
                out.append(("invalid_content_part", p + ".image_url.detail",
                            f"{p}.image_url.detail is {detail!r}; use low, high or auto."))
        elif kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                out.append(("invalid_content_part", p + ".text", f"{p}.text must be a string, not {_kind(text)}."))
                continue
            extra = set(part) - {"type", "text"}
            if extra:
                out.append(("unknown_key", p, f"{p} has unknown key(s) {sorted(extra)}."))
            if text:
                substantial = True
                _special(text, p + ".text", out)
        elif kind == "refusal" and "refusal" in allowed:
            if not isinstance(part.get("refusal"), str):
                out.append(("invalid_content_part", p + ".refusal", f"{p}.refusal must be a string."))
            else:
                substantial = True
        else:
            out.append(("invalid_content_part", p + ".type",
                        f"{p}.type is {kind!r}; {role} messages accept content parts of type "
                        f"{', '.join(allowed)}."))
    return substantial


def _check_tool_calls(calls: Any, path: str, state: _ChatState, out: Issues) -> bool:
    if not isinstance(calls, list) or not calls:
        out.append(("invalid_tool_calls", path, f"{path} must be a non-empty list of tool calls, not {_kind(calls)}."))
        return False
    ok = False
    for j, call in enumerate(calls):
        p = f"{path}[{j}]"
        if not isinstance(call, dict):
            out.append(("invalid_tool_calls", p, f"{p} is {_kind(call)}; a tool call is an object."))
            continue
        cid = call.get("id")
        if not isinstance(cid, str) or not cid:
            out.append(("invalid_tool_calls", p + ".id",
                        f"{p}.id must be a non-empty string (tool messages refer to it)."))
        else:
            state.call_ids.add(cid)
        if call.get("type", "function") != "function":
            out.append(("invalid_tool_calls", p + ".type", f"{p}.type is {call.get('type')!r}; use \"function\"."))
        extra = set(call) - {"id", "type", "function"}
        if extra:
            out.append(("unknown_key", p, f"{p} has unknown key(s) {sorted(extra)}."))
        fn = call.get("function")
        if not isinstance(fn, dict):
            out.append(("invalid_tool_calls", p + ".function",
                        f"{p}.function must be an object with \"name\" and \"arguments\"."))
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            out.append(("invalid_tool_calls", p + ".function.name", f"{p}.function.name must be a non-empty string."))
        else:
            state.called.append((name, p + ".function.name"))
            ok = True
        args = fn.get("arguments")
        if not isinstance(args, str):
            out.append(("invalid_tool_calls", p + ".function.arguments",
                        f"{p}.function.arguments must be a string holding JSON (use json.dumps), not {_kind(args)}."))
        elif not _is_json_object_string(args):
            out.append(("tool_arguments_not_json", p + ".function.arguments",
                        f"{p}.function.arguments is not a JSON object encoded as a string: {args[:60]!r}."))
    return ok


def _check_function_call(fc: Any, path: str, state: _ChatState, out: Issues) -> bool:
    if not isinstance(fc, dict) or not isinstance(fc.get("name"), str) or not isinstance(fc.get("arguments"), str):
        out.append(("invalid_function_call", path,
                    f"{path} must be {{\"name\": str, \"arguments\": str}}, not {_kind(fc)}."))
        return False
    state.called.append((fc["name"], path + ".name"))
    if not _is_json_object_string(fc["arguments"]):
        out.append(("tool_arguments_not_json", path + ".arguments",
                    f"{path}.arguments is not a JSON object encoded as a string."))
    return True


def _check_message(msg: Any, i: int, prefix: str, state: _ChatState, out: Issues, *, images_ok: bool,
                   assistant_needs_output: bool = True) -> None:
    p = f"{prefix}[{i}]"
    if not isinstance(msg, dict):
        out.append(("message_not_object", p, f"{p} is {_kind(msg)}; each message must be an object."))
        return
    role = msg.get("role")
    if role is None:
        out.append(("missing_role", p + ".role", f"{p} has no \"role\"; use system, user, assistant or tool."))
        return
    if not isinstance(role, str) or role not in _ALLOWED_KEYS:
        hint = " (fine-tuning data uses \"system\")" if role == "developer" else ""
        out.append(("invalid_role", p + ".role",
                    f"{p}.role is {role!r}{hint}; use one of system, user, assistant, tool, function."))
        return
    extra = msg.keys() - _ALLOWED_KEYS[role]
    if extra:
        if "weight" in extra:
            out.append(("invalid_weight", p + ".weight",
                        f"{p} is a {role} message with a \"weight\"; weights are allowed on assistant messages only."))
            extra = extra - {"weight"}
        if extra:
            out.append(("unknown_key", p, f"{p} ({role}) has unknown key(s) {sorted(extra)}; allowed: "
                                          f"{', '.join(sorted(_ALLOWED_KEYS[role]))}."))
    if role == "system":
        state.has_system = True
    elif role == "user":
        state.has_user = True
    name = msg.get("name")
    if name is not None and not isinstance(name, str):
        out.append(("invalid_name", p + ".name", f"{p}.name must be a string, not {_kind(name)}."))
    elif role == "function" and name is None:
        out.append(("invalid_name", p + ".name", f"{p} is a function message without the \"name\" it requires."))

    has_calls = False
    if role == "assistant":
        state.assistants += 1
        state.last_assistant = i
        if "tool_calls" in msg and msg["tool_calls"] is not None:
            has_calls = _check_tool_calls(msg["tool_calls"], p + ".tool_calls", state, out)
        if "function_call" in msg and msg["function_call"] is not None:
            has_calls = _check_function_call(msg["function_call"], p + ".function_call", state, out) or has_calls
        refusal = msg.get("refusal")
        if refusal is not None and not isinstance(refusal, str):
            out.append(("invalid_refusal", p + ".refusal", f"{p}.refusal must be a string or null."))
        if "weight" in msg:
            w = msg["weight"]
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w not in (0, 1):
                out.append(("invalid_weight", p + ".weight", f"{p}.weight is {w!r}; use 0 (skip) or 1 (train)."))
            elif w == 1:
                state.trainable += 1
        else:
            state.trainable += 1
    elif role == "tool":
        tcid = msg.get("tool_call_id")
        if not isinstance(tcid, str) or not tcid:
            out.append(("missing_tool_call_id", p + ".tool_call_id",
                        f"{p} is a tool message without a string \"tool_call_id\"."))
        elif tcid not in state.call_ids:
            out.append(("unmatched_tool_call_id", p + ".tool_call_id",
                        f"{p}.tool_call_id {tcid!r} matches no earlier assistant tool call."))

    content = msg.get("content")
    cpath = p + ".content"
    if content is None:
        if role == "assistant" and (has_calls or msg.get("refusal") or not assistant_needs_output):
            return
        if role == "function" and "content" in msg:
            return
        what = "and no tool_calls" if role == "assistant" else ""
        out.append(("missing_content", cpath, f"{p} ({role}) has no content {what}".rstrip() + "."))
    elif isinstance(content, str):
        if not content and not has_calls:
            out.append(("empty_content", cpath, f"{cpath} is an empty string."))
        elif content:
            _special(content, cpath, out)
    elif isinstance(content, list):
        _check_parts(content, role, cpath, state, out, images_ok)
    else:
        out.append(("invalid_content", cpath, f"{cpath} is {_kind(content)}; use a string or a list of content parts."))


def _check_tools(example: dict, prefix: str, state: _ChatState, out: Issues) -> None:
    if "tools" in example and example["tools"] is not None:
        tools = example["tools"]
        p = prefix + "tools"
        if not isinstance(tools, list):
            out.append(("invalid_tools", p, f"{p} must be a list, not {_kind(tools)}."))
        else:
            names: set[str] = set()
            for j, tool in enumerate(tools):
                tp = f"{p}[{j}]"
                fn = tool.get("function") if isinstance(tool, dict) else None
                if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
                    out.append(("invalid_tools", tp,
                                f"{tp} must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}."))
                    continue
                name = fn.get("name")
                if not isinstance(name, str) or not _TOOL_NAME.match(name):
                    out.append(("invalid_tools", tp + ".function.name",
                                f"{tp}.function.name must match ^[a-zA-Z0-9_-]{{1,64}}$, not {name!r}."))
                else:
                    names.add(name)
                params = fn.get("parameters")
                if params is not None and not isinstance(params, dict):
                    out.append(("invalid_tools", tp + ".function.parameters",
                                f"{tp}.function.parameters must be a JSON Schema object, not {_kind(params)}."))
                desc = fn.get("description")
                if desc is not None and not isinstance(desc, str):
                    out.append(("invalid_tools", tp + ".function.description",
                                f"{tp}.function.description must be a string."))
            state.tool_names = names
    if "functions" in example and example["functions"] is not None:
        fns = example["functions"]
        p = prefix + "functions"
        if not isinstance(fns, list) or not 1 <= len(fns) <= 128:
            out.append(("invalid_functions", p, f"{p} must be a list of 1 to 128 function definitions."))
        else:
            names = state.tool_names or set()
            for j, fn in enumerate(fns):
                fp = f"{p}[{j}]"
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not _TOOL_NAME.match(fn["name"]):
                    out.append(("invalid_functions", fp, f"{fp} must be an object whose \"name\" matches "
                                                         f"^[a-zA-Z0-9_-]{{1,64}}$."))
                    continue
                if fn.get("parameters") is not None and not isinstance(fn.get("parameters"), dict):
                    out.append(("invalid_functions", fp + ".parameters", f"{fp}.parameters must be an object."))
                names.add(fn["name"])
            state.tool_names = names
    if "parallel_tool_calls" in example and not isinstance(example["parallel_tool_calls"], bool):
        p = prefix + "parallel_tool_calls"
        out.append(("invalid_parallel_tool_calls", p,
                    f"{p} must be true or false, not {_kind(example['parallel_tool_calls'])}."))


def _check_calls_defined(state: _ChatState, out: Issues) -> None:
    for name, path in state.called:
        if state.tool_names is None:
            out.append(("undefined_tool", path, f"{path} calls {name!r} but the example defines no tools."))
        elif name not in state.tool_names:
            out.append(("undefined_tool", path,
                        f"{path} calls {name!r}, which is not among the example's tools "
                        f"({', '.join(sorted(state.tool_names)) or 'none'})."))


def _check_messages(messages: Any, path: str, state: _ChatState, out: Issues, *, images_ok: bool,
                    assistant_needs_output: bool = True) -> bool:
    if not isinstance(messages, list) or not messages:
        got = "missing" if messages is None else f"{_kind(messages)}" + (" (empty)" if messages == [] else "")
        out.append(("missing_messages", path, f"{path} must be a non-empty list of messages; it is {got}."))
        return False
    for i, msg in enumerate(messages):
        _check_message(msg, i, path, state, out, images_ok=images_ok, assistant_needs_output=assistant_needs_output)
    state.count = len(messages)
    return True


def _check_chat(ex: dict, ctx: Context, out: Issues) -> int:
    state = _ChatState()
    rft = ctx.method == "reinforcement"
    _check_tools(ex, "", state, out)
    if not _check_messages(ex.get("messages"), "messages", state, out, images_ok=True):
        return state.images
    _check_calls_defined(state, out)
    if not rft:
        extra = ex.keys() - _CHAT_TOP
        if extra:
            out.append(("unknown_top_level_key", "", f"Top-level key(s) {sorted(extra)} are not part of the chat "
                                                     f"format and are ignored."))
        if state.trainable == 0:
            why = (f"none of its {state.assistants} assistant message(s) has weight 1 (or no weight)"
                   if state.assistants else "it has no assistant message")
            out.append(("no_trainable_assistant", "messages", f"Nothing to train on: {why}."))
        elif state.last_assistant < state.count - 1:
            out.append(("messages_after_last_assistant", f"messages[{state.last_assistant + 1}]",
                        f"{state.count - 1 - state.last_assistant} message(s) follow the last assistant message "
                        f"and are not trained on."))
    else:
        last = ex["messages"][-1]
        if not (isinstance(last, dict) and last.get("role") == "user"):
            out.append(("rft_last_message_not_user", f"messages[{len(ex['messages']) - 1}]",
                        "The last message should be a user message: its answer is what gets graded."))
    if not state.has_system:
        out.append(("missing_system_message", "messages", "No system message."))
    if not state.has_user:
        out.append(("missing_user_message", "messages", "No user message."))
    if state.images > MAX_IMAGES_PER_EXAMPLE:
        out.append(("too_many_images", "messages",
                    f"The example has {state.images} images; at most {MAX_IMAGES_PER_EXAMPLE} are allowed."))
    return state.images


def _output_text(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        return value[0].get("content")
    return None


def _check_preference(ex: dict, ctx: Context, out: Issues) -> int:
    if "preferred_completion" in ex or "non_preferred_completion" in ex:
        out.append(("legacy_preference_keys", "preferred_completion",
                    "preferred_completion / non_preferred_completion are the old names; rename them to "
                    "preferred_output / non_preferred_output."))
    extra = ex.keys() - _PREF_TOP - {"preferred_completion", "non_preferred_completion"}
    if extra:
        out.append(("unknown_top_level_key", "", f"Top-level key(s) {sorted(extra)} are not part of the preference "
                                                 f"format and are ignored."))
    inp = ex.get("input")
    state = _ChatState()
    if not isinstance(inp, dict):
        out.append(("missing_input", "input", f"\"input\" must be an object with \"messages\", not {_kind(inp)}."))
    else:
        bad = inp.keys() - _PREF_INPUT
        if bad:
            out.append(("unknown_key", "input", f"input has unknown key(s) {sorted(bad)}."))
        _check_tools(inp, "input.", state, out)
        if _check_messages(inp.get("messages"), "input.messages", state, out, images_ok=False):
            last = inp["messages"][-1]
            if not (isinstance(last, dict) and last.get("role") == "user"):
                out.append(("preference_input_not_user_last", f"input.messages[{len(inp['messages']) - 1}]",
                            "The input should end with the user message that the outputs answer."))
    for key, missing_code in (("preferred_output", "missing_preferred_output"),
                              ("non_preferred_output", "missing_non_preferred_output")):
        if key not in ex:
            if not ("preferred_completion" in ex or "non_preferred_completion" in ex):
                out.append((missing_code, key, f"\"{key}\" is missing; give [{{\"role\": \"assistant\", "
                                               f"\"content\": \"...\"}}]."))
            continue
        value = ex[key]
        if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict) \
                or value[0].get("role") != "assistant":
            out.append(("invalid_preference_output", key,
                        f"{key} must be a list holding exactly one assistant message."))
            continue
        out_state = _ChatState()
        out_state.call_ids = set(state.call_ids)
        _check_message(value[0], 0, key, out_state, out, images_ok=False)
        content = value[0].get("content")
        if not isinstance(content, str) and not value[0].get("tool_calls"):
            out.append(("invalid_preference_output", key + "[0].content",
                        f"{key}[0].content must be a string: preference data is text-only."))
    a, b = _output_text(ex.get("preferred_output")), _output_text(ex.get("non_preferred_output"))
    if isinstance(a, str) and a == b and "preferred_output" in ex and "non_preferred_output" in ex \
            and ex["preferred_output"] == ex["non_preferred_output"]:
        out.append(("identical_preference_outputs", "non_preferred_output",
                    "preferred_output and non_preferred_output are identical."))
    if not state.has_system:
        out.append(("missing_system_message", "input.messages", "No system message."))
    return 0


def _check_completion(ex: dict, ctx: Context, out: Issues) -> int:
    for key, code in (("prompt", "invalid_prompt"), ("completion", "invalid_completion")):
        v = ex.get(key)
        if not isinstance(v, str):
            state = "missing" if key not in ex else _kind(v)
            out.append((code, key, f"\"{key}\" must be a string; it is {state}."))
        else:
            _special(v, key, out)
    if isinstance(ex.get("completion"), str) and not ex["completion"]:
        out.append(("empty_content", "completion", "\"completion\" is empty; there is nothing to learn."))
    extra = ex.keys() - _COMPLETION_TOP
    if extra:
        out.append(("unknown_top_level_key", "", f"Top-level key(s) {sorted(extra)} are not part of the "
                                                 f"prompt/completion format and are ignored."))
    return 0


_CHECKERS: dict[str, Callable[[dict, Context, Issues], int]] = {
    "chat": _check_chat,
    "preference": _check_preference,
    "completion": _check_completion,
}


def check_example(example: dict, fmt: str, ctx: Context, out: Issues) -> int:
    """Check one example of format ``fmt``; append issues to ``out``; return its image count."""
    images = _CHECKERS[fmt](example, ctx, out)
    _check_service_rules(example, ctx.rules, out)
    return images


def _check_service_rules(example: dict, rules: DatasetRules, out: Issues) -> None:
    """What only some services reject: images at all or by URL, repeated roles, a late system message."""
    if not rules.images or rules.image_data_urls_only:
        parts = image_parts(example)
        if parts and not rules.images:
            more = f" (the example has {len(parts)} image parts)" if len(parts) > 1 else ""
            out.append(("images_not_supported_by_model", parts[0],
                        f"{parts[0]} is an image{more}, and {rules.label} trains text-only models: it would "
                        f"have to drop the image. Remove the image parts (or the example), or fine-tune a "
                        f"vision model on a hosted provider (e.g. OpenAI's gpt-4o)."))
        elif parts:
            for path in parts:
                url = _image_url(example, path)
                if isinstance(url, str) and not url.startswith("data:"):
                    out.append(("invalid_image_url", path + ".image_url.url",
                                f"{path} is an image by URL; {rules.label} takes images only inline, as "
                                f"data:image/jpeg|png|webp;base64,... URLs."))
    if not (rules.alternating_roles or rules.system_first):
        return
    for keys in _MESSAGE_LISTS[:2]:  # the conversation: chat messages, or a preference input
        messages: Any = example
        for key in keys:
            messages = messages.get(key) if isinstance(messages, dict) else None
        if not isinstance(messages, list):
            continue
        path = ".".join(keys)
        roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
        for i, role in enumerate(roles):
            if rules.alternating_roles and i and role is not None and role == roles[i - 1]:
                out.append(("repeated_role", f"{path}[{i}].role",
                            f"{path}[{i}] is a {role} message right after another {role} message; "
                            f"{rules.label} requires the roles to alternate."))
            if rules.system_first and i and role == "system":
                out.append(("system_message_not_first", f"{path}[{i}]",
                            f"{path}[{i}] is a system message after other messages; {rules.label} takes a "
                            f"system message only first."))


def _image_url(example: Any, path: str) -> Any:
    """The url of the image part at ``path`` (as image_parts writes it: a.b[1].content[0])."""
    node: Any = example
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if token.startswith("["):
            index = int(token[1:-1])
            node = node[index] if isinstance(node, list) and index < len(node) else None
        else:
            node = node.get(token) if isinstance(node, dict) else None
    image = node.get("image_url") if isinstance(node, dict) else None
    return image.get("url") if isinstance(image, dict) else None


_MESSAGE_LISTS = (("messages",), ("input", "messages"), ("preferred_output",), ("non_preferred_output",))


def image_parts(example: Any) -> list[str]:
    """The JSON path of every image content part (``{"type": "image_url", ...}``) of an example.

    Looks wherever a format keeps messages — chat ``messages``, preference ``input.messages``
    and outputs — whatever else is wrong with the example; never raises on any JSON value.
    """
    found: list[str] = []
    for keys in _MESSAGE_LISTS:
        messages: Any = example
        for key in keys:
            messages = messages.get(key) if isinstance(messages, dict) else None
        if not isinstance(messages, list):
            continue
        for i, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list):
                continue
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "image_url":
                    found.append(f"{'.'.join(keys)}[{i}].content[{j}]")
    return found
