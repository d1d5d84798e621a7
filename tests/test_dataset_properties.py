"""Property-based tests of the dataset validator (hypothesis).

(a) arbitrary bytes per line never crash it, and every non-blank line that is not a JSON
    object gets exactly one line-level issue;
(b) arbitrary JSON values per line (biased towards the dataset vocabulary) never crash it;
(c) generated VALID chat examples are reported without errors;
(d) mutations of valid examples never crash it and the mutated line gets an error.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from finetune_sdk.data.validate import validate
from finetune_sdk.types import DatasetReport

HOSTED_MODEL = "gpt-4o-mini-2024-07-18"
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
LINE_CODES = {"invalid_utf8", "invalid_json", "not_an_object"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("props")


def _write(workdir: Path, lines: list[bytes], name: str = "data.jsonl") -> Path:
    path = workdir / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _all_issues(report: DatasetReport) -> list:
    return report.errors + report.warnings


# --------------------------------------------------------------------------- (a) random bytes

def _reject(name: str) -> Any:
    raise ValueError(name)


def _classify(raw: bytes, first: bool) -> str:
    """'blank', 'object' or 'bad' — what a JSONL reader should make of one line."""
    if first and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    stripped = raw.strip()
    if not stripped:
        return "blank"
    try:
        value = json.loads(stripped.decode("utf-8"), parse_constant=_reject)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "bad"
    return "object" if isinstance(value, dict) else "bad"


NASTY_LINES = [
    b"[" * 100_000, b"{" * 100_000, b'{"a":' * 50_000, b'{"messages": ' + b"[" * 100_000,
    b"\x00", b'{"messages": "\x00"}', b"9" * 5000, b"1e999999", b"-1e-999999", b"1" + b"0" * 400,
    b'"\xff"', b"\xff\xfe\x00{", b"\xed\xa0\x80", b'"\\ud800"', b'{"messages": "\\udfff"}',
    b"NaN", b"Infinity", b"-Infinity", b'{"messages": NaN}', b"\xef\xbb\xbf{}", b"{} {}", b"{}", b"{},",
    b'{"messages": []}', b"null", b"true", b'"just a string"', b"\t \r", b"\x0b\x0c", b"\x1c{}", b"\r{}\r",
    b"// comment", b"{'single': 'quotes'}", b'{"a": 1,}', b'{"messages": [{"role": "user"}]}',
    b'{"prompt": "x", "completion": "y"}', b'{"input": {}}',
]

bytes_line = st.one_of(
    st.binary(max_size=120),
    st.sampled_from(NASTY_LINES),
    st.text(max_size=60).map(lambda s: s.encode("utf-8")),
    st.text(alphabet=st.characters(codec="utf-16", exclude_characters="\n"), max_size=30)
    .map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"1", b'"messages"', b"null", b" "]),
             max_size=30).map(b"".join),
).map(lambda b: b.replace(b"\n", b""))


@settings(max_examples=200, **SETTINGS)
@given(lines=st.lists(bytes_line, min_size=1, max_size=12), hosted=st.booleans())
@example(lines=NASTY_LINES, hosted=True)
def test_random_bytes_never_raise_and_bad_lines_get_one_issue(workdir: Path, lines: list[bytes],
                                                              hosted: bool) -> None:
    report = validate(_write(workdir, lines), hosted=hosted, max_issues=10_000)
    assert report.lines == len(lines)
    by_line: dict[int, list] = {}
    for issue in _all_issues(report):
        by_line.setdefault(issue.line, []).append(issue)
    objects = 0
    for n, raw in enumerate(lines, start=1):
        kind = _classify(raw, first=n == 1)
        here = by_line.get(n, [])
        if kind == "blank":
            assert [i.code for i in here] == ["blank_line"], (n, raw[:80])
        elif kind == "bad":
            assert len(here) == 1, (n, raw[:80], [str(i) for i in here])
            assert here[0].code in LINE_CODES and here[0].severity == "error" and here[0].path == ""
            assert here[0].message
        else:
            objects += 1
            assert not {i.code for i in here} & LINE_CODES
    assert report.examples <= objects
    if objects == 0:
        assert "empty_file" in report.error_counts


# --------------------------------------------------------------------------- (b) random JSON

VOCAB = ["messages", "role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal",
         "tools", "functions", "parallel_tool_calls", "type", "text", "image_url", "url", "detail", "function",
         "arguments", "id", "parameters", "description", "input", "preferred_output", "non_preferred_output",
         "preferred_completion", "non_preferred_completion", "prompt", "completion"]
ROLES = ["system", "user", "assistant", "tool", "function", "developer", ""]
STRINGS = ROLES + ["text", "image_url", "refusal", "function", "https://e.com/a.png", "data:image/png;base64,AAAA",
                   "data:text/plain;base64,AA", "ftp://x", "{}", '{"a": 1}', "[1]", "call_1", "f", "<|endoftext|>",
                   "low", "high", "\ud800"]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12), st.sampled_from(STRINGS),
)
json_key = st.one_of(st.sampled_from(VOCAB), st.text(max_size=6))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(json_key, inner, max_size=5)), max_leaves=25)


def _near(keys: list[str], value: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(keys, value))


near_message = _near(["role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call",
                      "refusal"], st.one_of(json_value, st.sampled_from(STRINGS)))
near_chat = st.fixed_dictionaries({"messages": st.one_of(st.lists(near_message, max_size=5), json_value)},
                                  optional={"tools": json_value, "functions": json_value,
                                            "parallel_tool_calls": json_value})
near_pref = _near(["input", "preferred_output", "non_preferred_output", "preferred_completion"],
                  st.one_of(json_value, st.fixed_dictionaries({"messages": st.lists(near_message, max_size=3)}),
                            st.lists(near_message, max_size=2)))
json_line = st.one_of(json_value, st.dictionaries(json_key, json_value, max_size=6), near_chat, near_pref,
                      _near(["prompt", "completion"], json_value))

# Keys by which a line is recognised as an example of some format.
FORMAT_KEYS = {"messages", "input", "preferred_output", "non_preferred_output", "preferred_completion", "prompt",
               "completion"}
MODELS = [None, HOSTED_MODEL, "babbage-002", "gpt-3.5-turbo-0613", "o4-mini-2025-04-16", "gpt-4.1-2025-04-14",
          "some-local-model"]
METHODS = [None, "supervised", "dpo", "reinforcement"]


def _dump(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _has_unhashable_role(value: Any) -> bool:
    """Messages whose "role" is a list or an object crash the validator (regression test below)."""
    if isinstance(value, dict):
        if isinstance(value.get("role"), (list, dict)):
            return True
        return any(_has_unhashable_role(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unhashable_role(v) for v in value)
    return False


@settings(max_examples=150, **SETTINGS)
@given(values=st.lists(json_line, min_size=1, max_size=8), ascii_only=st.booleans(),
       model=st.sampled_from(MODELS), method=st.sampled_from(METHODS), hosted=st.sampled_from([None, True, False]))
def test_random_json_never_raises(workdir: Path, values: list, ascii_only: bool, model: str | None,
                                  method: str | None, hosted: bool | None) -> None:
    # Known bug, tested separately (test_unhashable_role_never_raises): keep this property green for the rest.
    assume(not _has_unhashable_role(values))
    lines = [_dump(v, ascii_only) for v in values]
    report = validate(_write(workdir, lines), model=model, method=method, hosted=hosted)
    assert report.lines == len(lines)
    expected = 0
    for value, line in zip(values, lines):
        if _classify(line, first=False) == "object" and value.keys() & FORMAT_KEYS:
            expected += 1
    assert report.examples == expected
    for issue in _all_issues(report):
        assert issue.message and issue.severity in ("error", "warning")
        assert issue.line is None or 1 <= issue.line <= len(lines)
    assert report.valid is (not report.error_counts)


UNHASHABLE_ROLE_LINES = [
    {"messages": [{"role": ["user"], "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    {"messages": [{"role": {"name": "user"}, "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    {"input": {"messages": [{"role": ["user"], "content": "Hi"}]},
     "preferred_output": [{"role": "assistant", "content": "a"}],
     "non_preferred_output": [{"role": "assistant", "content": "b"}]},
]


@pytest.mark.parametrize("value", UNHASHABLE_ROLE_LINES, ids=["list-role", "object-role", "preference-input"])
def test_unhashable_role_never_raises(workdir: Path, value: dict) -> None:
    report = validate(_write(workdir, [json.dumps(value).encode()], "unhashable.jsonl"), hosted=False)
    assert [(i.line, i.code) for i in report.errors if i.code == "invalid_role"] == [(1, "invalid_role")]


# --------------------------------------------------------------------------- (c) valid chat examples

safe_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).filter(
    lambda s: "<|" not in s)
tool_name = st.from_regex(r"\A[a-zA-Z0-9_-]{1,20}\Z")
https_url = st.builds(lambda host, p: f"https://{host}.example.com/{p}.png",
                      st.from_regex(r"\A[a-z]{1,10}\Z"), st.from_regex(r"\A[a-z0-9]{1,10}\Z"))
text_part = st.builds(lambda t: {"type": "text", "text": t}, safe_text)
image_part = st.one_of(
    st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, https_url),
    st.builds(lambda u, d: {"type": "image_url", "image_url": {"url": u, "detail": d}}, https_url,
              st.sampled_from(["low", "high", "auto"])),
)
user_content = st.one_of(safe_text, st.lists(st.one_of(text_part, image_part), min_size=1, max_size=3))
json_args = st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), safe_text, st.booleans()),
                            max_size=3).map(json.dumps)


@st.composite
def valid_chat(draw: st.DrawFn) -> dict:
    messages: list[dict] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(safe_text)})
    names = draw(st.lists(tool_name, min_size=1, max_size=3, unique=True))
    use_tools = draw(st.booleans())
    call_no = 0
    assistants: list[dict] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        msg: dict = {"role": "user", "content": draw(user_content)}
        if draw(st.integers(0, 4)) == 0:
            msg["name"] = draw(tool_name)
        messages.append(msg)
        if use_tools and draw(st.booleans()):
            calls = []
            for _ in range(draw(st.integers(min_value=1, max_value=2))):
                call_no += 1
                calls.append({"id": f"call_{call_no}", "type": "function",
                              "function": {"name": draw(st.sampled_from(names)), "arguments": draw(json_args)}})
            call_msg: dict = {"role": "assistant", "tool_calls": calls}
            shape = draw(st.sampled_from(["absent", "null", "text"]))
            if shape != "absent":
                call_msg["content"] = None if shape == "null" else draw(safe_text)
            messages.append(call_msg)
            assistants.append(call_msg)
            for c in calls:
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": draw(safe_text)})
        reply = {"role": "assistant", "content": draw(safe_text)}
        messages.append(reply)
        assistants.append(reply)
    if draw(st.booleans()):  # weights, with at least one trainable assistant message
        for a in assistants:
            a["weight"] = draw(st.sampled_from([0, 1]))
        if not any(a["weight"] == 1 for a in assistants):
            assistants[-1]["weight"] = 1
    example: dict = {"messages": messages}
    if use_tools:
        example["tools"] = [{"type": "function", "function": {
            "name": n, "description": draw(safe_text),
            "parameters": {"type": "object", "properties": {}}}} for n in names]
        if draw(st.booleans()):
            example["parallel_tool_calls"] = draw(st.booleans())
    return example


@settings(max_examples=150, **SETTINGS)
@given(examples=st.lists(valid_chat(), min_size=1, max_size=6), ascii_only=st.booleans(),
       model=st.sampled_from([None, HOSTED_MODEL]))
def test_valid_chat_examples_have_no_errors(workdir: Path, examples: list[dict], ascii_only: bool,
                                            model: str | None) -> None:
    # hosted=False: fewer than 10 examples is then a warning, so small files stay fast to generate.
    report = validate(_write(workdir, [_dump(e, ascii_only) for e in examples]), model=model, hosted=False)
    assert report.errors == [], [str(i) for i in report.errors]
    assert report.valid and report.format == "chat"
    assert report.examples == len(examples)
    allowed_warnings = {"missing_system_message", "duplicate_example", "too_few_examples"}
    assert set(report.warning_counts) <= allowed_warnings, [str(i) for i in report.warnings]
    assert report.tokens is not None and report.tokens.examples_counted == len(examples)
    assert report.tokens.total_tokens > 0


# --------------------------------------------------------------------------- (d) mutations

def _messages_with(ex: dict, pred: Any) -> list[int]:
    return [i for i, m in enumerate(ex["messages"]) if pred(m)]


def _mutate(ex: dict, kind: str, pick: int) -> dict | None:
    """Apply one mutation that must produce an error; None if it does not apply to this example."""
    ex = copy.deepcopy(ex)
    msgs = ex["messages"]
    i = pick % len(msgs)
    if kind == "drop_messages":
        del ex["messages"]
    elif kind == "empty_messages":
        ex["messages"] = []
    elif kind == "messages_not_list":
        ex["messages"] = {"role": "user", "content": "hi"}
    elif kind == "garbage_role":
        msgs[i]["role"] = "narrator"
    elif kind == "drop_role":
        del msgs[i]["role"]
    elif kind == "numeric_role":
        msgs[i]["role"] = 7
    elif kind == "content_number":
        msgs[i]["content"] = 42
    elif kind == "content_object":
        msgs[i]["content"] = {"text": "hi"}
    elif kind == "message_not_object":
        msgs[i] = "hello"
    elif kind == "unknown_message_key":
        msgs[i]["colour"] = "blue"
    elif kind == "bad_part_type":
        msgs[i]["content"] = [{"type": "video", "video": "x"}]
    elif kind == "empty_parts":
        msgs[i]["content"] = []
    elif kind == "drop_user_content":
        users = _messages_with(ex, lambda m: m["role"] == "user")
        del msgs[users[pick % len(users)]]["content"]
    elif kind == "bad_weight":
        a = _messages_with(ex, lambda m: m["role"] == "assistant")
        msgs[a[pick % len(a)]]["weight"] = 0.5
    elif kind == "weight_on_user":
        users = _messages_with(ex, lambda m: m["role"] == "user")
        msgs[users[pick % len(users)]]["weight"] = 1
    elif kind == "no_assistant":
        ex["messages"] = [m for m in msgs if m["role"] not in ("assistant", "tool")]
        if not ex["messages"]:
            return None
    elif kind == "all_weights_zero":
        for m in msgs:
            if m["role"] == "assistant":
                m["weight"] = 0
    elif kind == "bad_name":
        users = _messages_with(ex, lambda m: m["role"] == "user")
        msgs[users[pick % len(users)]]["name"] = ["bob"]
    elif kind == "image_in_assistant":
        a = _messages_with(ex, lambda m: m["role"] == "assistant")
        msgs[a[pick % len(a)]]["content"] = [{"type": "image_url", "image_url": {"url": "https://e.com/x.png"}}]
    elif kind == "bad_image_url":
        users = _messages_with(ex, lambda m: m["role"] == "user")
        msgs[users[pick % len(users)]]["content"] = [{"type": "image_url", "image_url": {"url": "file:///x.png"}}]
    elif kind == "unmatched_tool_call_id":
        tools = _messages_with(ex, lambda m: m["role"] == "tool")
        if not tools:
            return None
        msgs[tools[pick % len(tools)]]["tool_call_id"] = "call_nobody"
    elif kind == "drop_tool_call_id":
        tools = _messages_with(ex, lambda m: m["role"] == "tool")
        if not tools:
            return None
        del msgs[tools[pick % len(tools)]]["tool_call_id"]
    elif kind == "tool_calls_not_list":
        calls = _messages_with(ex, lambda m: "tool_calls" in m)
        if not calls:
            return None
        msgs[calls[pick % len(calls)]]["tool_calls"] = "get_weather"
    elif kind == "call_without_function":
        calls = _messages_with(ex, lambda m: "tool_calls" in m)
        if not calls:
            return None
        del msgs[calls[pick % len(calls)]]["tool_calls"][0]["function"]
    elif kind == "tools_not_list":
        ex["tools"] = {"name": "x"}
    elif kind == "tool_bad_name":
        ex["tools"] = [{"type": "function", "function": {"name": "has spaces!"}}]
    elif kind == "parallel_not_bool":
        ex["parallel_tool_calls"] = "yes"
    elif kind == "special_token":  # an error for a hosted target
        users = _messages_with(ex, lambda m: m["role"] == "user")
        msgs[users[pick % len(users)]]["content"] = "hi <|endoftext|>"
    else:  # pragma: no cover
        raise AssertionError(kind)
    return ex


MUTATIONS = ["drop_messages", "empty_messages", "messages_not_list", "garbage_role", "drop_role", "numeric_role",
             "content_number", "content_object", "message_not_object", "unknown_message_key", "bad_part_type",
             "empty_parts", "drop_user_content", "bad_weight", "weight_on_user", "no_assistant", "all_weights_zero",
             "bad_name", "image_in_assistant", "bad_image_url", "unmatched_tool_call_id", "drop_tool_call_id",
             "tool_calls_not_list", "call_without_function", "tools_not_list", "tool_bad_name", "parallel_not_bool",
             "special_token"]


@settings(max_examples=200, **SETTINGS)
@given(examples=st.lists(valid_chat(), min_size=1, max_size=5), kind=st.sampled_from(MUTATIONS),
       pick=st.integers(min_value=0, max_value=1000), where=st.integers(min_value=0, max_value=1000))
def test_mutated_example_is_reported_with_an_error(workdir: Path, examples: list[dict], kind: str, pick: int,
                                                   where: int) -> None:
    target = where % len(examples)
    mutated = _mutate(examples[target], kind, pick)
    assume(mutated is not None)
    assume(mutated != examples[target])
    examples = list(examples)
    examples[target] = mutated
    report = validate(_write(workdir, [_dump(e, True) for e in examples]), hosted=True)
    line = target + 1
    at_line = [i for i in report.errors if i.line == line]
    assert at_line, (kind, json.dumps(mutated)[:300], [str(i) for i in report.errors + report.warnings])
    assert not report.valid
    # the other (valid) lines stay free of line-level errors (too_few_examples is file-wide, line None)
    assert {i.line for i in report.errors} <= {line, None}
