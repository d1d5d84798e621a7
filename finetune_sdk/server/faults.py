"""Fault injection for the emulator: what real services do to clients on a bad day.

Kinds:

- ``429`` — rate limited, with ``retry-after`` (seconds) and/or ``retry-after-ms``;
- ``daily`` — the non-retryable 429 ``daily_rate_limit_exceeded``;
- ``500`` / ``502`` / ``503`` — server errors;
- ``drop`` — the connection dies before the request is handled;
- ``slow`` — the answer comes after ``delay`` seconds (past a client's timeout), but the
  request *is* handled;
- ``lost`` — the request is handled (the job exists) but the response never arrives.

A rule fires by probability (seeded, reproducible) or as a scripted sequence, per route
(``METHOD /path`` with ``*`` wildcards). Spec strings (``finetune emulator --faults``)::

    "POST /v1/fine_tuning/jobs: 429@0.3, 500@0.1; GET /v1/fine_tuning/jobs/*: drop@0.05"
    "POST /v1/fine_tuning/jobs: lost, ok, 429"      # a sequence: one step per request

or a JSON list of rule objects (``{"route", "kind", "probability", "retry_after", ...}``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, envelope

__all__ = ["FaultRule", "FaultSequence", "FaultPlan", "FaultMiddleware", "KINDS"]

KINDS = ("429", "daily", "500", "502", "503", "drop", "slow", "lost", "ok")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def _check_route(route: Any) -> None:
    if not isinstance(route, str) or not route.strip():
        raise ValueError(f"a fault needs a route like 'POST /v1/fine_tuning/jobs', not {route!r}")


def _check_number(name: str, value: Any, *, minimum: float = 0.0, maximum: float = 86400.0,
                  optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (minimum <= value <= maximum):
        raise ValueError(f"{name} must be a number between {minimum:g} and {maximum:g}, not {value!r}")


def _match(pattern: str, method: str, path: str) -> bool:
    if pattern.strip() == "*":
        return True
    want_method, _, want_path = pattern.strip().partition(" ")
    if not want_path:
        want_method, want_path = "*", want_method
    return fnmatch.fnmatchcase(method, want_method.upper()) and fnmatch.fnmatchcase(path, want_path)


@dataclass
class FaultRule:
    route: str
    kind: str
    probability: float = 1.0
    retry_after: float | None = None
    retry_after_ms: int | None = None
    delay: float = 5.0
    times: int | None = None  # fire at most this many times

    def __post_init__(self) -> None:
        _check_route(self.route)
        _check_kind(self.kind)
        _check_number("probability", self.probability, maximum=1.0, optional=False)
        _check_number("retry_after", self.retry_after)
        _check_number("retry_after_ms", self.retry_after_ms, maximum=86_400_000)
        _check_number("delay", self.delay, maximum=3600.0, optional=False)
        if self.times is not None and (isinstance(self.times, bool) or not isinstance(self.times, int)
                                       or self.times < 0):
            raise ValueError(f"times must be a non-negative integer, not {self.times!r}")


@dataclass
class FaultSequence:
    route: str
    steps: list[str]
    position: int = 0

    def __post_init__(self) -> None:
        _check_route(self.route)
        if not isinstance(self.steps, list) or not self.steps:
            raise ValueError("a fault sequence needs a non-empty list of steps")
        for step in self.steps:
            _check_kind(step)


@dataclass
class FaultPlan:
    """Which faults to inject where. Thread-safe; counts every request it sees."""

    rules: list[FaultRule] = field(default_factory=list)
    sequences: list[FaultSequence] = field(default_factory=list)
    seed: int = 0
    defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._fired: Counter[int] = Counter()
        self.requests: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()

    def decide(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            self.requests[f"{method} {path}"] += 1
            for seq in self.sequences:
                if _match(seq.route, method, path) and seq.position < len(seq.steps):
                    kind = seq.steps[seq.position]
                    seq.position += 1
                    if kind == "ok":
                        return None
                    self.injected[kind] += 1
                    return FaultRule(seq.route, kind, **self.defaults)
            for i, rule in enumerate(self.rules):
                if not _match(rule.route, method, path):
                    continue
                if rule.times is not None and self._fired[i] >= rule.times:
                    continue
                if self._rng.random() < rule.probability:
                    self._fired[i] += 1
                    if rule.kind == "ok":
                        return None
                    self.injected[rule.kind] += 1
                    return rule
        return None

    @classmethod
    def parse(cls, spec: str | Iterable[dict[str, Any]] | None, *, seed: int = 0) -> FaultPlan:
        """Build a plan from a spec string or a list of rule dicts (see the module docstring)."""
        if spec is None or spec == "":
            return cls(seed=seed)
        if isinstance(spec, str) and spec.lstrip().startswith("["):
            spec = json.loads(spec)
        if not isinstance(spec, str):
            rules, sequences = [], []
            if not isinstance(spec, (list, tuple)):
                raise ValueError("a fault spec is a string or a list of rule objects")
            for item in spec:
                if not isinstance(item, dict):
                    raise ValueError(f"each fault rule must be an object, not {item!r}")
                try:
                    if "steps" in item:
                        extra = set(item) - {"route", "steps"}
                        if extra:
                            raise ValueError(f"unknown keys {sorted(extra)} in a fault sequence")
                        sequences.append(FaultSequence(item.get("route", ""), item["steps"]))
                    else:
                        rules.append(FaultRule(**item))
                except TypeError as exc:
                    raise ValueError(f"invalid fault rule {item!r}: {exc}") from None
            return cls(rules=rules, sequences=sequences, seed=seed)
        rules, sequences = [], []
        for clause in filter(None, (c.strip() for c in spec.split(";"))):
            route, sep, body = clause.rpartition(":")
            if not sep or not route.strip():
                raise ValueError(f"fault clause {clause!r} must look like 'METHOD /path: kind@p, kind@p'")
            items = [i.strip() for i in body.split(",") if i.strip()]
            if not items:
                raise ValueError(f"fault clause {clause!r} names no fault")
            if all("@" in i for i in items):
                for item in items:
                    kind, _, prob = item.partition("@")
                    try:
                        probability = float(prob)
                    except ValueError:
                        raise ValueError(f"{prob!r} is not a probability (in {clause!r})") from None
                    rules.append(FaultRule(route.strip(), kind.strip(), probability))
            elif not any("@" in i for i in items):
                sequences.append(FaultSequence(route.strip(), items))
            else:
                raise ValueError(f"fault clause {clause!r} mixes probabilities and a sequence")
        return cls(rules=rules, sequences=sequences, seed=seed)


def _error_body(kind: str, path: str, dialect: str = "openai") -> tuple[int, dict[str, Any], dict[str, str]]:
    azure = path.startswith(("/openai", "/subscriptions"))
    own = dialect not in ("openai", "azure")  # a module dialect: its registered envelope
    if kind in ("429", "daily"):
        if kind == "daily":
            message = ("Your organization has reached the maximum of 3 fine-tuning requests per day for the model "
                       "'gpt-4o-mini-2024-07-18'. Please try again tomorrow.")
            code = "daily_rate_limit_exceeded"
        else:
            message, code = "Rate limit reached for requests. Please try again later.", "rate_limit_exceeded"
        if own:
            return 429, envelope(ApiError(429, message, code=code), dialect), {}
        if azure:
            return 429, {"error": {"code": "tooManyRequests" if kind == "429" else code, "message": message}}, {}
        return 429, {"error": {"message": message, "type": "requests", "param": None, "code": code}}, {}
    status = int(kind)
    message = "The server had an error while processing your request. Sorry about that!"
    if own:
        return status, envelope(ApiError(status, message), dialect), {}
    if azure:
        return status, {"error": {"code": "internalFailure" if status == 500 else "serviceUnavailable",
                                  "message": message}}, {}
    return status, {"error": {"message": message, "type": "server_error", "param": None, "code": None}}, {}


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client is gone; the app never needs more
        return {"type": "http.disconnect"}

    return receive


async def _send_truncated(send: Send, status: int = 200) -> None:
    """Headers promising a body that never fully arrives: the client sees a broken connection."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})


class FaultMiddleware:
    """ASGI middleware applying a :class:`FaultPlan` (looked up per request, so it can change)."""

    def __init__(self, app: Any, plan: Callable[[], FaultPlan | None],
                 dialect_of: Callable[[str], str] = lambda path: "openai") -> None:
        self.app = app
        self.plan = plan
        self.dialect_of = dialect_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.plan() if scope["type"] == "http" else None
        path = scope.get("path", "")
        fault = plan.decide(scope["method"], path) if plan is not None and not path.startswith("/_emulator") else None
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.kind in ("429", "daily", "500", "502", "503"):
            status, body, headers = _error_body(fault.kind, path, self.dialect_of(path))
            if fault.kind == "429":
                if fault.retry_after is None and fault.retry_after_ms is None:
                    headers["retry-after"] = "1"  # real rate limits say when to come back
                if fault.retry_after is not None:
                    headers["retry-after"] = str(fault.retry_after)
                if fault.retry_after_ms is not None:
                    headers["retry-after-ms"] = str(fault.retry_after_ms)
            await _send_json(send, status, body, headers)
        elif fault.kind == "drop":
            await _send_truncated(send)  # returning mid-body makes the server close the connection
        elif fault.kind == "slow":
            # Read the request first: a client that gave up must not stop it from being handled.
            request = await _read_body(receive)
            await asyncio.sleep(fault.delay)
            await self.app(scope, _replay(request), send)
        elif fault.kind == "lost":
            started: dict[str, Any] = {}

            async def swallow(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    started.update(message)

            await self.app(scope, receive, swallow)
            await _send_truncated(send, started.get("status", 200))
