"""Base versus tuned: answer held-out examples with both models, through the same API, and score them.

Each example is a chat line; its last assistant message is the expected answer and the
messages before it are the prompt. Two scores per answer: ``exact`` (the text equals the
expected text, whitespace trimmed) and ``json`` (both parse as JSON and are equal — the
right values, in any formatting). Requests are sent concurrently so a local server can
batch them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..client import FineTuneClient
    from ..types import Deployment, Job

__all__ = ["Comparison", "Answer", "compare", "load_examples", "score"]


@dataclass
class Answer:
    prompt: str
    expected: str
    base: str
    tuned: str
    base_exact: bool
    tuned_exact: bool
    base_json: bool
    tuned_json: bool


@dataclass
class Comparison:
    answers: list[Answer] = field(default_factory=list)

    def _rate(self, attr: str) -> float:
        return sum(getattr(a, attr) for a in self.answers) / len(self.answers) if self.answers else 0.0

    @property
    def base_exact(self) -> float:
        return self._rate("base_exact")

    @property
    def tuned_exact(self) -> float:
        return self._rate("tuned_exact")

    @property
    def base_json(self) -> float:
        return self._rate("base_json")

    @property
    def tuned_json(self) -> float:
        return self._rate("tuned_json")

    def summary(self) -> str:
        return (f"exact match: base {self.base_exact:.0%} -> tuned {self.tuned_exact:.0%}; "
                f"correct JSON values: base {self.base_json:.0%} -> tuned {self.tuned_json:.0%} "
                f"({len(self.answers)} held-out examples)")

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><td>{html.escape(a.prompt)}</td><td><code>{html.escape(a.base)}</code></td>"
                       f"<td><code>{html.escape(a.tuned)}</code></td></tr>" for a in self.answers[:20])
        return (f"<p>{html.escape(self.summary())}</p><table><tr><th>prompt</th><th>base</th><th>tuned</th></tr>"
                f"{rows}</table>")


def _json(text: str) -> Any:
    try:
        return json.loads(text.strip())
    except ValueError:
        return ValueError


def score(answer: str, expected: str) -> tuple[bool, bool]:
    """(exact match, same JSON value)."""
    exact = answer.strip() == expected.strip()
    parsed = _json(answer)
    return exact, parsed is not ValueError and parsed == _json(expected)


def load_examples(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if limit is not None and len(out) >= limit:
                    break
    return out


def _split(example: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    messages = list(example["messages"])
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("each example must end with the expected assistant answer")
    return messages[:-1], str(messages[-1].get("content") or "")


def compare(client: FineTuneClient, examples: Iterable[dict[str, Any]], *, tuned: Deployment | Job | str,
            base: Deployment | str, max_tokens: int = 64, concurrency: int = 16) -> Comparison:
    """Answer every example with ``base`` and ``tuned`` (greedy decoding) and score both."""
    items = [_split(e) for e in examples]

    def ask(target: Any, messages: list[dict[str, Any]]) -> str:
        reply = client.chat(target, messages, temperature=0, max_tokens=max_tokens)
        return (reply.content or "").strip()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        base_answers = list(pool.map(lambda it: ask(base, it[0]), items))
        tuned_answers = list(pool.map(lambda it: ask(tuned, it[0]), items))
    result = Comparison()
    for (messages, expected), b, t in zip(items, base_answers, tuned_answers):
        prompt = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        be, bj = score(b, expected)
        te, tj = score(t, expected)
        result.answers.append(Answer(prompt, expected, b, t, be, te, bj, tj))
    return result
