"""Every stable issue code of the dataset validator, plus the file-wide behaviour around it.

The central table ``CASES`` holds, for every code in ``finetune_sdk.data.records.CODES``, a
minimal file that triggers it: the offending line(s) are inserted at a known 1-based line
among valid padding examples (so ``too_few_examples`` and friends stay quiet), and the
test checks the severity, the line, the JSON path and the message of the issue, and that
no other code comes along except those the row explicitly tolerates.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from finetune_sdk.data.estimate import auto_epochs
from finetune_sdk.data.records import CODES
from finetune_sdk.data.rules import RULES, DatasetRules
from finetune_sdk.data.tokens import load_encoding
from finetune_sdk.data.validate import validate
from finetune_sdk.types import DatasetReport, Issue

HOSTED_MODEL = "gpt-4o-mini-2024-07-18"

# --------------------------------------------------------------------------- building files


def sys_(text: str = "You are a helpful assistant.") -> dict:
    return {"role": "system", "content": text}


def user(text: str = "What is the capital of France?") -> dict:
    return {"role": "user", "content": text}


def asst(text: str = "Paris.") -> dict:
    return {"role": "assistant", "content": text}


def chat(*messages: dict, **top: Any) -> dict:
    return {"messages": list(messages), **top}


def pref(i: int = 0, **over: Any) -> dict:
    ex = {
        "input": {"messages": [sys_(), user(f"Preference question {i}?")]},
        "preferred_output": [asst(f"Good answer {i}.")],
        "non_preferred_output": [asst(f"Bad answer {i}.")],
    }
    ex.update(over)
    return ex


def completion(i: int = 0, **over: Any) -> dict:
    ex = {"prompt": f"Prompt number {i} ->", "completion": f" completion {i}"}
    ex.update(over)
    return ex


def _pad(kind: str | None, n: int = 12) -> list[dict]:
    if kind is None:
        return []
    if kind == "chat":
        return [chat(sys_(), user(f"Padding question {i}?"), asst(f"Padding answer {i}.")) for i in range(n)]
    if kind == "pref":
        return [pref(i) for i in range(n)]
    if kind == "completion":
        return [completion(i) for i in range(n)]
    if kind == "rft":  # reinforcement examples end with the user message that gets graded
        return [chat(sys_(), user(f"RFT question {i}?")) for i in range(n)]
    raise AssertionError(kind)


Line = Any  # dict (dumped as JSON), str (written as is) or bytes (written as is)


def _encode(line: Line) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode("utf-8")
    return json.dumps(line, ensure_ascii=False).encode("utf-8")


def write_jsonl(path: Path, lines: list[Line], newline: bytes = b"\n") -> Path:
    path.write_bytes(b"".join(_encode(line) + newline for line in lines))
    return path


def issues_of(report: DatasetReport, code: str) -> list[Issue]:
    return [i for i in report.errors + report.warnings if i.code == code]


def codes_of(report: DatasetReport) -> set[str]:
    return set(report.error_counts) | set(report.warning_counts)


# --------------------------------------------------------------------------- the table

IMG = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}]


def call(cid: str = "call_1", name: str = "get_weather", args: str = '{"city": "Paris"}') -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def tool_msg(cid: str = "call_1", content: str = '{"temp": 21}') -> dict:
    return {"role": "tool", "tool_call_id": cid, "content": content}


def _many_image_examples() -> list[Line]:
    return [chat(sys_(), {"role": "user", "content": [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": f"https://example.com/{i}.png"}}]}, asst("A cat."))
        for i in range(50_001)]


def _huge_image() -> list[Line]:
    data = "A" * (10 * 1024 * 1024 * 4 // 3 + 64)  # base64 of a bit more than 10 MB
    return [chat(sys_(), {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}}]}, asst("A picture."))]


@dataclass
class Case:
    code: str
    bad: list[Line] | Callable[[], list[Line]]  # the offending line(s), inserted at line `at`
    line: int | None  # expected 1-based line of the issue (None: a file-wide issue)
    path: str  # expected JSON path
    pad: str | None = "chat"  # padding examples around the bad line(s)
    at: int = 3
    kwargs: dict = field(default_factory=dict)
    severity: str | None = None  # defaults to CODES[code].severity
    also: frozenset = frozenset()  # other codes that unavoidably come along
    validation: list[Line] | None = None  # lines of a validation file; the issue is in report.validation
    message_has: str = ""  # a substring the message must contain


def _table() -> list[Case]:
    S, U, A = sys_(), user(), asst()
    return [
        # -- lines and files
        Case("invalid_utf8", [b'{"messages": "caf\xe9"}'], 3, ""),
        Case("invalid_json", ['{"messages": [}'], 3, ""),
        Case("not_an_object", ["[1, 2, 3]"], 3, "", message_has="array"),
        Case("blank_line", [""], 3, ""),
        Case("unknown_format", [{"text": "hello"}], 3, ""),
        Case("mixed_formats", [completion(99)], 3, "", message_has="completion"),
        Case("method_format_mismatch", [], None, "", kwargs={"method": "dpo"}),
        Case("format_not_supported_by_model", [], None, "", kwargs={"model": "babbage-002"}),
        Case("method_not_supported_by_model", [], None, "", pad="pref", kwargs={"model": "gpt-3.5-turbo-0125"}),
        Case("empty_file", [], None, "", pad=None),
        Case("too_few_examples", [chat(S, U, A)], None, "", pad=None, kwargs={"model": HOSTED_MODEL}),
        Case("too_many_examples", [], None, "", kwargs={"rules": DatasetRules("capped", max_examples=5)},
             message_has="at most 5"),
        Case("format_not_supported_by_provider", [], None, "", pad="completion",
             kwargs={"rules": RULES["fireworks"]}, message_has="Fireworks AI"),
        Case("too_many_image_examples", _many_image_examples, None, "", pad=None, kwargs={"workers": 1},
             also=frozenset({"duplicate_example"})),
        Case("duplicate_example", [chat(S, user("Padding question 0?"), asst("Padding answer 0."))], 3, "",
             message_has="Duplicate of line 1"),
        Case("train_validation_overlap", [], 2, "",
             validation=[chat(S, user("Held out?"), asst("Yes.")),
                         chat(S, user("Padding question 5?"), asst("Padding answer 5."))]),
        Case("example_too_long", [chat(S, user("word " * 5000), A)], 3, "",
             kwargs={"model": "gpt-3.5-turbo-0613"}, message_has="4,096"),
        # -- messages
        Case("missing_messages", [{"messages": []}], 3, "messages"),
        Case("message_not_object", [chat(S, "hello", U, A)], 3, "messages[1]"),
        Case("missing_role", [chat(S, {"content": "hi"}, U, A)], 3, "messages[1].role"),
        Case("invalid_role", [chat({"role": "developer", "content": "x"}, U, A)], 3, "messages[0].role",
             also=frozenset({"missing_system_message"}), message_has="developer"),
        Case("unknown_key", [chat(S, {**U, "foo": 1}, A)], 3, "messages[1]", message_has="foo"),
        Case("unknown_top_level_key", [chat(S, U, A, metadata={"id": 1})], 3, "", message_has="metadata"),
        Case("missing_content", [chat(S, {"role": "user"}, A)], 3, "messages[1].content"),
        Case("empty_content", [chat(S, user(""), A)], 3, "messages[1].content"),
        Case("invalid_content", [chat(S, {"role": "user", "content": 42}, A)], 3, "messages[1].content"),
        Case("invalid_content_part", [chat(S, {"role": "user", "content": [{"type": "audio", "audio": "x"}]}, A)],
             3, "messages[1].content[0].type", message_has="audio"),
        Case("image_in_assistant_message", [chat(S, U, {"role": "assistant", "content": [IMG]})], 3,
             "messages[2].content[0]"),
        Case("images_not_supported",
             [pref(99, input={"messages": [S, {"role": "user", "content": [{"type": "text", "text": "Look"}, IMG]}]})],
             3, "input.messages[1].content[1]", pad="pref"),
        Case("invalid_image_url",
             [chat(S, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}, A)],
             3, "messages[1].content[0].image_url.url"),
        Case("image_too_large", _huge_image, 1, "messages[1].content[0].image_url.url", at=1,
             kwargs={"workers": 1}),
        Case("too_many_images", [chat(S, {"role": "user", "content": [IMG] * 11}, A)], 3, "messages",
             message_has="11"),
        Case("images_not_supported_by_model",
             [chat(S, {"role": "user", "content": [{"type": "text", "text": "Who is this?"}, IMG]}, A)], 3,
             "messages[1].content[1]", kwargs={"images": False}, message_has="text-only"),
        Case("invalid_weight", [chat(S, U, {**A, "weight": 2}, user("More"), A)], 3, "messages[2].weight"),
        Case("no_trainable_assistant", [chat(S, U, {**A, "weight": 0})], 3, "messages"),
        Case("invalid_name", [chat(S, {**U, "name": 5}, A)], 3, "messages[1].name"),
        Case("invalid_refusal", [chat(S, U, {**A, "refusal": 5})], 3, "messages[2].refusal"),
        Case("invalid_tool_calls", [chat(S, U, {**A, "tool_calls": "get_weather"}, tools=TOOLS)], 3,
             "messages[2].tool_calls"),
        Case("tool_arguments_not_json",
             [chat(S, U, {"role": "assistant", "tool_calls": [call(args="city=Paris")]}, tool_msg(), A, tools=TOOLS)],
             3, "messages[2].tool_calls[0].function.arguments"),
        Case("undefined_tool",
             [chat(S, U, {"role": "assistant", "tool_calls": [call(name="get_time")]}, tool_msg(), A, tools=TOOLS)],
             3, "messages[2].tool_calls[0].function.name", message_has="get_time"),
        Case("missing_tool_call_id",
             [chat(S, U, {"role": "assistant", "tool_calls": [call()]}, {"role": "tool", "content": "21"}, A,
                   tools=TOOLS)],
             3, "messages[3].tool_call_id"),
        Case("unmatched_tool_call_id",
             [chat(S, U, {"role": "assistant", "tool_calls": [call()]}, tool_msg("call_9"), A, tools=TOOLS)],
             3, "messages[3].tool_call_id", message_has="call_9"),
        Case("invalid_function_call", [chat(S, U, {**A, "function_call": "get_weather"})], 3,
             "messages[2].function_call"),
        Case("invalid_tools", [chat(S, U, A, tools="get_weather")], 3, "tools"),
        Case("invalid_functions", [chat(S, U, A, functions=[])], 3, "functions"),
        Case("invalid_parallel_tool_calls", [chat(S, U, A, tools=TOOLS, parallel_tool_calls="yes")], 3,
             "parallel_tool_calls"),
        Case("special_token_in_content", [chat(S, user("Say <|endoftext|> now"), A)], 3, "messages[1].content",
             kwargs={"model": HOSTED_MODEL}, message_has="<|endoftext|>"),
        Case("repeated_role", [chat(S, U, user("And Spain?"), A)], 3, "messages[2].role",
             kwargs={"rules": RULES["together"]}, message_has="Together AI"),
        Case("system_message_not_first", [chat(U, S, A)], 3, "messages[1]", kwargs={"rules": RULES["fireworks"]},
             message_has="Fireworks AI"),
        Case("missing_system_message", [chat(U, A)], 3, "messages"),
        Case("missing_user_message", [chat(S, A)], 3, "messages"),
        Case("messages_after_last_assistant", [chat(S, U, A, user("Thanks!"))], 3, "messages[3]"),
        # -- preference
        Case("missing_input", [{"preferred_output": [A], "non_preferred_output": [asst("No.")]}], 3, "input",
             pad="pref", also=frozenset({"missing_system_message"})),
        Case("missing_preferred_output", [{"input": {"messages": [S, U]}, "non_preferred_output": [A]}], 3,
             "preferred_output", pad="pref"),
        Case("missing_non_preferred_output", [{"input": {"messages": [S, U]}, "preferred_output": [A]}], 3,
             "non_preferred_output", pad="pref"),
        Case("invalid_preference_output", [pref(99, preferred_output=A)], 3, "preferred_output", pad="pref"),
        Case("legacy_preference_keys",
             [{"input": {"messages": [S, U]}, "preferred_completion": [A], "non_preferred_completion": [asst("No")]}],
             3, "preferred_completion", pad="pref"),
        Case("identical_preference_outputs", [pref(99, non_preferred_output=[asst("Good answer 99.")])], 3,
             "non_preferred_output", pad="pref"),
        Case("preference_input_not_user_last", [pref(99, input={"messages": [S, U, asst("Hmm.")]})], 3,
             "input.messages[2]", pad="pref"),
        # -- completion
        Case("invalid_prompt", [{"prompt": 5, "completion": " x"}], 3, "prompt", pad="completion"),
        Case("invalid_completion", [{"prompt": "p ->"}], 3, "completion", pad="completion"),
        # -- reinforcement
        Case("rft_last_message_not_user", [chat(S, U, A)], 3, "messages[2]", pad="rft",
             kwargs={"method": "reinforcement"}),
    ]


CASES = _table()


def test_table_covers_every_code() -> None:
    covered = [c.code for c in CASES]
    assert len(covered) == len(set(covered)), "a code appears twice in the table"
    missing = set(CODES) - set(covered)
    unknown = set(covered) - set(CODES)
    assert not missing, f"codes without a test in CASES: {sorted(missing)}"
    assert not unknown, f"codes in CASES that CODES does not define: {sorted(unknown)}"


def _build(case: Case, tmp_path: Path) -> tuple[Path, dict]:
    bad = case.bad() if callable(case.bad) else case.bad
    pad = _pad(case.pad)
    lines = pad[: case.at - 1] + list(bad) + pad[case.at - 1:]
    path = write_jsonl(tmp_path / "train.jsonl", lines)
    kwargs = dict(case.kwargs)
    if case.validation is not None:
        kwargs["validation_file"] = write_jsonl(tmp_path / "valid.jsonl", case.validation)
    return path, kwargs


@pytest.mark.parametrize("case", CASES, ids=[c.code for c in CASES])
def test_code(case: Case, tmp_path: Path) -> None:
    path, kwargs = _build(case, tmp_path)
    report = validate(path, **kwargs)
    if case.validation is not None:
        assert report.validation is not None
        assert report.ok is (CODES[case.code].severity != "error") and not report.errors
        report = report.validation
    severity = case.severity or CODES[case.code].severity
    found = issues_of(report, case.code)
    assert found, f"{case.code} not reported; got {[str(i) for i in report.errors + report.warnings]}"
    issue = found[0]
    assert issue.severity == severity
    assert issue in (report.errors if severity == "error" else report.warnings)
    assert issue.line == case.line
    assert issue.path == case.path
    assert issue.message.strip()
    assert case.message_has in issue.message
    counts = report.error_counts if severity == "error" else report.warning_counts
    assert counts.get(case.code, 0) >= 1
    assert report.valid is (severity != "error" and not report.error_counts)
    extra = codes_of(report) - {case.code} - case.also
    assert not extra, f"unexpected extra codes {extra}: {[str(i) for i in report.errors + report.warnings]}"


def test_images_false_reports_every_line_with_an_image(tmp_path: Path) -> None:
    """The local trainer's setting: one error per example with images, on its line, in any format."""
    S, U, A = sys_(), user(), asst()
    looks = {"role": "user", "content": [{"type": "text", "text": "Look"}, IMG]}
    lines = _pad("chat", 6)
    lines[1] = chat(S, looks, A)
    lines[4] = chat(S, {"role": "user", "content": [IMG, IMG]}, A)
    path = write_jsonl(tmp_path / "train.jsonl", lines)
    valid = write_jsonl(tmp_path / "valid.jsonl", [chat(S, U, A), chat(S, looks, A)])
    assert not issues_of(validate(path, validation_file=valid), "images_not_supported_by_model")  # the default

    report = validate(path, validation_file=valid, images=False)
    found = issues_of(report, "images_not_supported_by_model")
    assert [(i.line, i.path) for i in found] == [(2, "messages[1].content[1]"), (5, "messages[1].content[0]")]
    assert "2 image parts" in found[1].message and "hosted provider" in found[1].message
    assert report.error_counts["images_not_supported_by_model"] == 2 and not report.ok
    assert report.validation is not None
    assert [i.line for i in issues_of(report.validation, "images_not_supported_by_model")] == [2]

    prefs = [pref(i) for i in range(4)]
    prefs[2] = pref(2, input={"messages": [S, looks]})
    report = validate(write_jsonl(tmp_path / "pref.jsonl", prefs), images=False)
    found = issues_of(report, "images_not_supported_by_model")
    assert [(i.line, i.path) for i in found] == [(3, "input.messages[1].content[1]")]


def test_a_services_rules_change_what_is_an_error(tmp_path: Path) -> None:
    """Together rejects extra top-level keys and images by URL; OpenAI ignores the key and takes
    the URL; the local trainer refuses any image. Each as its rules say, on the right line."""
    S, U, A = sys_(), user(), asst()
    by_url = {"role": "user", "content": [{"type": "text", "text": "Look"}, IMG]}
    inline = {"role": "user", "content": [{"type": "text", "text": "Look"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
    lines = _pad("chat", 12)
    lines[2] = chat(S, U, A, id="row-3")
    lines[5] = chat(S, by_url, A)
    lines[7] = chat(S, inline, A)
    path = write_jsonl(tmp_path / "train.jsonl", lines)

    together = validate(path, rules=RULES["together"])
    assert [(i.line, i.code) for i in together.errors] == [(3, "unknown_top_level_key"),
                                                           (6, "invalid_image_url")]
    assert "Together AI takes images only inline" in together.errors[1].message
    openai = validate(path, rules=RULES["openai"])
    assert openai.ok and [(i.line, i.code) for i in openai.warnings] == [(3, "unknown_top_level_key")]
    local = validate(path, rules=RULES["local"])
    assert [(i.line, i.code) for i in local.errors] == [(6, "images_not_supported_by_model"),
                                                        (8, "images_not_supported_by_model")]
    few = write_jsonl(tmp_path / "few.jsonl", [chat(S, U, A), chat(S, user("Why?"), asst("Because."))])
    assert [i.code for i in validate(few, rules=RULES["fireworks"]).errors] == ["too_few_examples"]
    assert "Fireworks AI requires at least 3" in validate(few, rules=RULES["fireworks"]).errors[0].message
    assert validate(few, rules=RULES["together"]).ok


# --------------------------------------------------------------------------- good files

GOOD_CHAT = [
    chat(sys_(), user("Hi"), asst("Hello! How can I help?")),
    chat(sys_(), {"role": "user", "content": "Weather in Paris?", "name": "alice"},
         {"role": "assistant", "content": None,
          "tool_calls": [call("call_a"), call("call_b", args='{"city": "Rome"}')]},
         tool_msg("call_a", "21C"), tool_msg("call_b", "25C"),
         asst("Paris is 21C and Rome is 25C."), tools=TOOLS, parallel_tool_calls=True),
    chat(sys_(), user("Count to two."), {**asst("One, three."), "weight": 0}, user("Again, correctly."),
         {**asst("One, two."), "weight": 1}),
    chat(sys_(), {"role": "user", "content": [{"type": "text", "text": "What is in this picture?"}, IMG,
                                               {"type": "image_url", "image_url": {
                                                   "url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]},
         asst("A cat and a tiny PNG.")),
    chat(sys_(), user("Refuse this."), {"role": "assistant", "content": None, "refusal": "I can't help with that."}),
    chat(sys_(), user("Use a function"), {"role": "assistant", "content": None,
                                          "function_call": {"name": "lookup", "arguments": '{"q": "x"}'}},
         {"role": "function", "name": "lookup", "content": "result"}, asst("Done."),
         functions=[{"name": "lookup", "parameters": {"type": "object", "properties": {}}}]),
    chat(sys_(), {"role": "user", "content": [{"type": "text", "text": "Parts only"}]},
         {"role": "assistant", "content": [{"type": "text", "text": "Parts back"}]}),
] + [chat(sys_(), user(f"Question {i}?"), asst(f"Answer {i}.")) for i in range(10)]


def test_good_chat_file_has_no_issues(tmp_path: Path) -> None:
    report = validate(write_jsonl(tmp_path / "good.jsonl", GOOD_CHAT), model=HOSTED_MODEL)
    assert report.errors == [] and report.error_counts == {}
    assert report.warnings == [], [str(w) for w in report.warnings]
    assert report.valid and report.ok
    assert report.format == "chat"
    assert report.examples == len(GOOD_CHAT) == report.lines
    assert report.tokens is not None and report.tokens.exact and report.tokens.encoding == "o200k_base"


def test_good_preference_file_with_dpo(tmp_path: Path) -> None:
    lines = [pref(i) for i in range(12)]
    for kwargs in ({"method": "dpo"}, {"method": "dpo", "model": HOSTED_MODEL}, {"model": HOSTED_MODEL}):
        report = validate(write_jsonl(tmp_path / "pref.jsonl", lines), **kwargs)
        assert report.errors == [], (kwargs, [str(i) for i in report.errors])
        assert report.warnings == []
        assert report.format == "preference" and report.examples == 12


def test_good_completion_file_for_babbage(tmp_path: Path) -> None:
    report = validate(write_jsonl(tmp_path / "comp.jsonl", [completion(i) for i in range(12)]),
                      model="babbage-002")
    assert report.errors == [] and report.warnings == []
    assert report.format == "completion" and report.valid
    assert report.tokens is not None and report.tokens.encoding == "cl100k_base"


def test_completion_file_rejected_for_chat_model(tmp_path: Path) -> None:
    report = validate(write_jsonl(tmp_path / "comp.jsonl", [completion(i) for i in range(12)]), model=HOSTED_MODEL)
    assert [i.code for i in report.errors] == ["format_not_supported_by_model"]


# --------------------------------------------------------------------------- target-dependent severities

def _three(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "few.jsonl", [chat(sys_(), user(f"Q{i}"), asst(f"A{i}")) for i in range(3)])


def test_too_few_examples_is_an_error_for_hosted_models(tmp_path: Path) -> None:
    report = validate(_three(tmp_path), model=HOSTED_MODEL)
    assert [(i.code, i.line, i.severity) for i in report.errors] == [("too_few_examples", None, "error")]
    assert not report.valid
    assert "3 example" in report.errors[0].message


@pytest.mark.parametrize("kwargs", [{"hosted": False}, {"model": HOSTED_MODEL, "hosted": False}, {}])
def test_too_few_examples_is_a_warning_otherwise(tmp_path: Path, kwargs: dict) -> None:
    report = validate(_three(tmp_path), **kwargs)
    assert report.errors == []
    assert [(i.code, i.line, i.severity) for i in report.warnings] == [("too_few_examples", None, "warning")]
    assert report.valid


def test_exactly_ten_examples_is_enough(tmp_path: Path) -> None:
    lines = [chat(sys_(), user(f"Q{i}"), asst(f"A{i}")) for i in range(10)]
    report = validate(write_jsonl(tmp_path / "ten.jsonl", lines), model=HOSTED_MODEL)
    assert report.errors == [] and report.warnings == []


@pytest.mark.parametrize("hosted, severity", [(True, "error"), (False, "warning")])
def test_special_token_severity_depends_on_target(tmp_path: Path, hosted: bool, severity: str) -> None:
    lines = _pad("chat")
    lines[4] = chat(sys_(), user("Hello"), asst("Bye<|im_end|>"))
    report = validate(write_jsonl(tmp_path / "t.jsonl", lines), model=HOSTED_MODEL, hosted=hosted)
    found = issues_of(report, "special_token_in_content")
    assert [(i.line, i.path, i.severity) for i in found] == [(5, "messages[2].content", severity)]
    assert report.valid is (severity == "warning")


def test_special_token_in_text_part_and_completion(tmp_path: Path) -> None:
    lines = _pad("chat")
    lines[1] = chat(sys_(), {"role": "user", "content": [{"type": "text", "text": "x <|fim_prefix|>"}]}, asst())
    report = validate(write_jsonl(tmp_path / "t.jsonl", lines), hosted=True)
    assert [(i.line, i.path) for i in issues_of(report, "special_token_in_content")] == [
        (2, "messages[1].content[0].text")]
    comp = [completion(i) for i in range(12)]
    comp[0] = completion(0, completion=" <|endoftext|>")
    report = validate(write_jsonl(tmp_path / "c.jsonl", comp), model="babbage-002")
    assert [(i.line, i.path, i.severity) for i in issues_of(report, "special_token_in_content")] == [
        (1, "completion", "error")]


# --------------------------------------------------------------------------- file-wide checks

def test_validation_file_overlap(tmp_path: Path) -> None:
    train = _pad("chat")
    valid = [chat(sys_(), user("Held out 1?"), asst("Yes 1.")), train[7], chat(sys_(), user("Held out 2?"), asst("2")),
             train[0]]
    report = validate(write_jsonl(tmp_path / "train.jsonl", train),
                      validation_file=write_jsonl(tmp_path / "valid.jsonl", valid))
    assert report.validation is not None
    assert report.errors == [] and report.warnings == []
    v = report.validation
    overlaps = issues_of(v, "train_validation_overlap")
    assert [(i.line, i.severity) for i in overlaps] == [(2, "warning"), (4, "warning")]
    assert v.warning_counts["train_validation_overlap"] == 2
    assert v.estimate is None, "validation tokens are not billed"
    assert report.estimate is not None
    assert v.examples == 4
    # the 10-example minimum applies to the training file only
    assert v.warning_counts == {"train_validation_overlap": 2} and v.errors == []
    hosted = validate(tmp_path / "train.jsonl", model=HOSTED_MODEL, validation_file=tmp_path / "valid.jsonl")
    assert hosted.ok and "too_few_examples" not in hosted.validation.error_counts


def test_missing_validation_file_raises(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", _pad("chat"))
    with pytest.raises(FileNotFoundError):
        validate(train, validation_file=tmp_path / "nope.jsonl")


def test_duplicates_name_the_first_line(tmp_path: Path) -> None:
    a = chat(sys_(), user("Same"), asst("Same"))
    b = chat(sys_(), user("Other"), asst("Other"))
    lines = _pad("chat")[:10] + [a, b, a, b, a]
    report = validate(write_jsonl(tmp_path / "d.jsonl", lines))
    dups = [(i.line, i.message) for i in issues_of(report, "duplicate_example")]
    assert dups == [(13, "Duplicate of line 11."), (14, "Duplicate of line 12."), (15, "Duplicate of line 11.")]
    assert report.warning_counts == {"duplicate_example": 3}
    assert report.errors == []


def test_duplicates_ignore_surrounding_whitespace(tmp_path: Path) -> None:
    a = json.dumps(chat(sys_(), user("Same"), asst("Same")))
    lines = [json.dumps(x) for x in _pad("chat")] + [a, "  " + a + "\t"]
    report = validate(write_jsonl(tmp_path / "d.jsonl", lines))
    assert [(i.line, i.message) for i in issues_of(report, "duplicate_example")] == [(14, "Duplicate of line 13.")]


def test_bom_at_file_start_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(_encode(x) + b"\n" for x in _pad("chat")))
    report = validate(path, model=HOSTED_MODEL)
    assert report.errors == [] and report.warnings == []
    assert report.examples == 12 and report.lines == 12


def test_bom_later_in_the_file_is_an_error(tmp_path: Path) -> None:
    lines = [_encode(x) for x in _pad("chat")]
    lines[3] = b"\xef\xbb\xbf" + lines[3]
    report = validate(write_jsonl(tmp_path / "bom.jsonl", lines))
    assert [(i.line, i.code) for i in report.errors] == [(4, "invalid_json")]


def test_crlf_line_endings_are_accepted(tmp_path: Path) -> None:
    report = validate(write_jsonl(tmp_path / "crlf.jsonl", _pad("chat"), newline=b"\r\n"), model=HOSTED_MODEL)
    assert report.errors == [] and report.warnings == []
    assert report.examples == 12 and report.lines == 12


def test_no_trailing_newline_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "nonl.jsonl"
    path.write_bytes(b"\n".join(_encode(x) for x in _pad("chat")))
    report = validate(path, model=HOSTED_MODEL)
    assert report.errors == [] and report.warnings == [] and report.examples == 12


def test_only_bad_lines_is_an_empty_file(tmp_path: Path) -> None:
    report = validate(write_jsonl(tmp_path / "bad.jsonl", ["nope", "[]", ""]))
    assert {(i.line, i.code) for i in report.errors} == {(1, "invalid_json"), (2, "not_an_object"),
                                                         (None, "empty_file")}
    assert report.examples == 0 and report.lines == 3
    assert report.tokens is None and report.estimate is None


def test_max_issues_truncates_listing_but_counts_everything(tmp_path: Path) -> None:
    lines = _pad("chat") + ["not json"] * 7
    report = validate(write_jsonl(tmp_path / "m.jsonl", lines), max_issues=3)
    assert [i.line for i in report.errors] == [13, 14, 15]
    assert report.error_counts == {"invalid_json": 7}
    assert report.truncated


# --------------------------------------------------------------------------- tokens and estimates

def _cookbook(messages: list[dict]) -> int:
    enc = load_encoding("o200k_base")
    n = 0
    for m in messages:
        n += 3
        for key, value in m.items():
            n += len(enc.encode_ordinary(value))
            if key == "name":
                n += 1
    return n + 3


COOKBOOK_EXAMPLES = [
    [sys_("You are terse."), user("Hello there, how are you today?"), asst("Fine.")],
    [sys_(), {"role": "user", "name": "bob", "content": "Ünïcödé — ✓ 日本語 🙂"}, asst("Noted.")],
    [user("one"), asst("two"), user("three"), asst("four " * 50)],
]


def test_token_counts_match_the_cookbook_formula(tmp_path: Path) -> None:
    lines = [chat(*msgs) for msgs in COOKBOOK_EXAMPLES]
    expected = [_cookbook(msgs) for msgs in COOKBOOK_EXAMPLES]
    for i, msgs in enumerate(COOKBOOK_EXAMPLES):  # one example per file: the total is that example's count
        report = validate(write_jsonl(tmp_path / f"t{i}.jsonl", [chat(*msgs)]), hosted=False)
        assert report.tokens is not None
        assert report.tokens.total_tokens == expected[i]
        assert report.tokens.encoding == "o200k_base" and report.tokens.exact
    report = validate(write_jsonl(tmp_path / "all.jsonl", lines), model=HOSTED_MODEL, hosted=False)
    assert report.tokens.total_tokens == sum(expected)
    assert report.tokens.per_example.min == min(expected) and report.tokens.per_example.max == max(expected)
    assert report.tokens.examples_counted == 3
    enc = load_encoding("o200k_base")
    assistant = sum(len(enc.encode_ordinary(m["content"])) for msgs in COOKBOOK_EXAMPLES for m in msgs
                    if m["role"] == "assistant")
    assert report.tokens.assistant_tokens == assistant


@pytest.mark.parametrize("n, epochs", [(1, 25), (3, 25), (4, 25), (5, 20), (10, 10), (33, 3), (34, 3), (100, 3),
                                       (8333, 3), (8334, 2), (12_500, 2), (12_501, 1), (30_000, 1)])
def test_auto_epochs_heuristic(n: int, epochs: int) -> None:
    def reference(n: int) -> int:
        if n * 3 < 100:
            return min(25, 100 // n)
        if n * 3 > 25000:
            return max(1, 25000 // n)
        return 3
    assert reference(n) == epochs
    assert auto_epochs(n) == epochs


@pytest.mark.parametrize("n", [10, 40])
def test_estimate_numbers_for_gpt_4o_mini(tmp_path: Path, n: int) -> None:
    lines = [chat(sys_(), user(f"Question {i}?"), asst(f"Answer {i}.")) for i in range(n)]
    report = validate(write_jsonl(tmp_path / "e.jsonl", lines), model=HOSTED_MODEL)
    expected_tokens = sum(_cookbook(x["messages"]) for x in lines)
    est = report.estimate
    assert est is not None and report.tokens.total_tokens == expected_tokens
    epochs = min(25, 100 // n) if n * 3 < 100 else 3
    assert est.epochs_source == "auto" and est.n_epochs == epochs
    assert est.tokens_per_epoch == expected_tokens
    assert est.billed_tokens == expected_tokens * epochs
    assert est.price_per_million_tokens == 3.00 and est.currency == "USD"
    assert est.cost == pytest.approx(round(expected_tokens * epochs * 3.00 / 1_000_000, 4))
    # given epochs
    report = validate(write_jsonl(tmp_path / "e.jsonl", lines), model=HOSTED_MODEL, n_epochs=2)
    assert report.estimate.n_epochs == 2 and report.estimate.epochs_source == "given"
    assert report.estimate.billed_tokens == expected_tokens * 2
    assert report.estimate.cost == pytest.approx(round(expected_tokens * 2 * 3.00 / 1_000_000, 4))


def test_billed_tokens_are_capped_at_the_context_limit(tmp_path: Path) -> None:
    # gpt-3.5-turbo-0613: 4,096-token training limit, no known price.
    long = chat(sys_(), user("word " * 5000), asst("ok"))
    lines = [long] + [chat(sys_(), user(f"Question {i}?"), asst(f"Answer {i}.")) for i in range(11)]
    report = validate(write_jsonl(tmp_path / "l.jsonl", lines), model="gpt-3.5-turbo-0613", n_epochs=3)
    enc = load_encoding("cl100k_base")

    def cookbook(msgs: list[dict]) -> int:
        return sum(3 + sum(len(enc.encode_ordinary(v)) for v in m.values()) for m in msgs) + 3
    per = [cookbook(x["messages"]) for x in lines]
    assert per[0] > 4096
    assert report.tokens.total_tokens == sum(per)
    assert report.tokens.over_limit == 1 and report.tokens.context_limit == 4096
    assert report.estimate.tokens_per_epoch == sum(min(4096, t) for t in per)
    assert report.estimate.billed_tokens == 3 * sum(min(4096, t) for t in per)
    assert report.estimate.cost is None
    assert [(i.line, i.code) for i in report.warnings] == [(1, "example_too_long")]


@pytest.mark.parametrize("model", ["gpt-4.1-2025-04-14", "my-local-model", None])
def test_cost_is_none_without_a_price(tmp_path: Path, model: str | None) -> None:
    lines = [chat(sys_(), user(f"Question {i}?"), asst(f"Answer {i}.")) for i in range(12)]
    report = validate(write_jsonl(tmp_path / "e.jsonl", lines), model=model)
    assert report.estimate is not None
    assert report.estimate.cost is None and report.estimate.price_per_million_tokens is None
    assert report.estimate.n_epochs == 8  # auto: 12 * 3 < 100 -> 100 // 12
    assert report.estimate.billed_tokens == report.tokens.total_tokens * 8
    assert report.estimate.notes


# --------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("kwargs, exc", [
    ({"method": "sft"}, ValueError),
    ({"method": "DPO"}, ValueError),
    ({"max_issues": 0}, ValueError),
    ({"max_issues": -5}, ValueError),
    ({"workers": 0}, ValueError),
])
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict, exc: type) -> None:
    path = write_jsonl(tmp_path / "ok.jsonl", _pad("chat"))
    with pytest.raises(exc):
        validate(path, **kwargs)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        validate(tmp_path / "does-not-exist.jsonl")
    with pytest.raises(FileNotFoundError):
        validate(tmp_path)  # a directory is not a dataset


def test_empty_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    report = validate(path)
    assert [(i.code, i.line) for i in report.errors] == [("empty_file", None)]
    assert report.lines == 0 and report.examples == 0


@pytest.mark.parametrize("n_epochs", [0, -1, True, 2.5])
def test_bad_n_epochs_raise(tmp_path: Path, n_epochs: Any) -> None:
    with pytest.raises(ValueError):
        validate(write_jsonl(tmp_path / "ok.jsonl", _pad("chat")), n_epochs=n_epochs)


def test_bad_n_epochs_raise_even_without_examples(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with pytest.raises(ValueError):
        validate(path, n_epochs=0)


# --------------------------------------------------------------------------- positions in messages

def test_invalid_utf8_byte_position_counts_leading_whitespace(tmp_path: Path) -> None:
    lines = _pad("chat")
    lines[2] = b'   {"messages": "caf\xe9"}'  # \xe9 is byte 21 of the line
    report = validate(write_jsonl(tmp_path / "u.jsonl", lines))
    issue = issues_of(report, "invalid_utf8")[0]
    assert issue.line == 3
    assert "Byte 21 " in issue.message, issue.message


def test_invalid_utf8_byte_position(tmp_path: Path) -> None:
    lines = _pad("chat")
    lines[2] = b'{"messages": "caf\xe9"}'  # \xe9 is byte 18
    report = validate(write_jsonl(tmp_path / "u.jsonl", lines))
    assert "Byte 18 " in issues_of(report, "invalid_utf8")[0].message


def test_invalid_json_column_counts_leading_whitespace(tmp_path: Path) -> None:
    lines = _pad("chat")
    lines[2] = '    {"messages": [}'  # the stray } is column 19
    report = validate(write_jsonl(tmp_path / "j.jsonl", lines))
    assert "column 19" in issues_of(report, "invalid_json")[0].message


def test_invalid_json_column(tmp_path: Path) -> None:
    lines = _pad("chat")
    lines[2] = '{"messages": [}'  # column 15
    report = validate(write_jsonl(tmp_path / "j.jsonl", lines))
    assert "column 15" in issues_of(report, "invalid_json")[0].message


def test_huge_integer_is_valid_json(tmp_path: Path) -> None:
    lines = _pad("chat")
    lines[2] = '{"messages": 1' + "0" * 5000 + "}"
    report = validate(write_jsonl(tmp_path / "big.jsonl", lines))
    assert [(i.line, i.code) for i in report.errors] == [(3, "missing_messages")]


# --------------------------------------------------------------------------- parallel mode

def _big_file(path: Path) -> Path:
    """> 8 MB of varied chat lines with a few errors, warnings and duplicates spread through."""
    system = "You are a meticulous assistant. " * 25  # repeated: tokenized once (cached)

    def regular(j: int) -> str:
        return json.dumps(chat(sys_(system), user(f"Question number {j}?"), asst(f"Answer {j % 7}.")))
    out = []
    i = 0
    size = 0
    while size < 9 * 1024 * 1024:
        i += 1
        if i % 997 == 0:
            line = '{"messages": [oops'
        elif i % 1499 == 0:
            line = json.dumps(chat(sys_(system), {"role": "user", "content": 7}, asst("x")))
        elif i % 2003 == 0:
            line = json.dumps(chat(user(f"no system {i}"), asst("ok")))
        elif i % 1201 == 0:
            line = regular(i - 600)  # an exact duplicate of an earlier line
        elif i % 3001 == 0:
            line = ""
        else:
            line = regular(i)
        out.append(line)
        size += len(line) + 1
    out.append(regular(1))  # a duplicate of line 1 in the last chunk: found across chunks
    path.write_text("\n".join(out) + "\n")
    return path


def test_parallel_scan_matches_sequential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = sys.modules["finetune_sdk.data.validate"]  # the module (the package re-exports the function)
    pools: list[int | None] = []
    real_pool = module.ProcessPoolExecutor

    def spy_pool(*args: Any, **kwargs: Any) -> Any:
        pools.append(kwargs.get("max_workers"))
        return real_pool(*args, **kwargs)
    monkeypatch.setattr(module, "ProcessPoolExecutor", spy_pool)

    path = _big_file(tmp_path / "big.jsonl")
    assert path.stat().st_size > 8 * 1024 * 1024
    started = time.perf_counter()  # the whole comparison must stay fast (< 20 s)
    seq = validate(path, workers=1, max_issues=100_000)
    assert pools == [], "workers=1 must scan in this process"
    par = validate(path, workers=2, max_issues=100_000)
    assert pools == [2], "workers=2 on a file over 8 MB must use a process pool"
    seq_small = validate(path, workers=1, max_issues=5)
    par_small = validate(path, workers=2, max_issues=5)
    elapsed = time.perf_counter() - started
    assert elapsed < 20, f"parallel/sequential comparison took {elapsed:.1f}s"

    def key(r: DatasetReport) -> tuple:
        return ([(i.line, i.code, i.path, i.message) for i in r.errors],
                [(i.line, i.code, i.path, i.message) for i in r.warnings])
    assert seq.errors, "the file should contain errors"
    assert {i.code for i in seq.errors} == {"invalid_json", "invalid_content"}
    assert {i.code for i in seq.warnings} >= {"duplicate_example", "missing_system_message", "blank_line"}
    assert key(par) == key(seq)
    assert par.error_counts == seq.error_counts and par.warning_counts == seq.warning_counts
    assert par.lines == seq.lines and par.examples == seq.examples
    assert par.tokens.total_tokens == seq.tokens.total_tokens
    assert par.tokens.assistant_tokens == seq.tokens.assistant_tokens
    assert par.tokens.per_example == seq.tokens.per_example
    assert par.estimate == seq.estimate
    # line numbers are global: the invalid JSON lines are the multiples of 997
    assert [i.line for i in par.errors if i.code == "invalid_json"] == list(range(997, seq.lines + 1, 997))
    assert (seq.lines, "duplicate_example", "Duplicate of line 1.") in [
        (i.line, i.code, i.message) for i in par.warnings]
    # with a small max_issues both list the same first issues and count all of them
    assert key(par_small) == key(seq_small)
    assert len(par_small.errors) == 5 and par_small.truncated and seq_small.truncated
    assert par_small.error_counts == seq.error_counts


# --------------------------------------------------------------------------- progress

def test_progress_parallel_is_monotonic_and_reaches_the_total(tmp_path: Path) -> None:
    path = _big_file(tmp_path / "big.jsonl")
    size = path.stat().st_size
    calls: list[tuple[int, int]] = []
    validate(path, workers=2, progress=lambda done, total: calls.append((done, total)))
    assert calls and all(total == size for _, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (size, size)


def test_progress_sequential_reaches_the_total(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "small.jsonl", _pad("chat"))
    size = path.stat().st_size
    calls: list[tuple[int, int]] = []
    validate(path, workers=1, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (size, size)
