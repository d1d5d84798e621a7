"""Keeping secrets out of messages, reprs, logs and pickles.

Every secret the SDK is handed (API keys, tokens) is registered here the moment it is
read, and every message we produce passes through :func:`scrub`. Pattern-based
redaction catches secrets we were never told about (a key pasted into a URL, a bearer
header echoed by a proxy).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_MIN_SECRET_LENGTH = 6
_lock = threading.Lock()
_known: set[str] = set()

_PATTERNS = [
    # OpenAI-style keys.
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-***"),
    # Authorization headers and bearer tokens wherever they appear.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{6,}"), r"\1 ***"),
    # api-key / api_key / apikey = value, in headers, query strings or reprs.
    (re.compile(r"(?i)\b(api[-_]?key|access[-_]?token|client[-_]?secret|password)(['\"]?\s*[:=]\s*['\"]?)[^\s'\"&,}]{4,}"),
     r"\1\2***"),
    # Hugging Face tokens.
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), "hf_***"),
]

REDACTED = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is scrubbed from everything we print."""
    if value and isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _known.add(value)


def scrub(text: Any) -> str:
    """Return ``text`` as a string with every known or recognisable secret replaced."""
    s = text if isinstance(text, str) else str(text)
    if _known:
        with _lock:
            secrets = sorted(_known, key=len, reverse=True)
        for secret in secrets:
            if secret in s:
                s = s.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        s = pattern.sub(replacement, s)
    return s


def scrub_obj(value: Any) -> Any:
    """Scrub strings inside simple containers (for error attributes and payloads)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_obj(v) for v in value)
    return value


class ScrubbingFilter(logging.Filter):
    """A logging filter that renders the record and scrubs secrets from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the log line
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        return True


def install_log_filter(logger: logging.Logger) -> None:
    if not any(isinstance(f, ScrubbingFilter) for f in logger.filters):
        logger.addFilter(ScrubbingFilter())


#: Third-party loggers that may print request details; their records get scrubbed too.
THIRD_PARTY_LOGGERS = ("openai", "openai._base_client", "httpx", "httpcore", "httpcore.http11", "httpcore.connection",
                       "azure", "azure.core.pipeline.policies.http_logging_policy", "azure.identity", "uvicorn.error",
                       "uvicorn.access", "huggingface_hub")


def scrub_third_party_logs() -> None:
    for name in THIRD_PARTY_LOGGERS:
        install_log_filter(logging.getLogger(name))


def get_logger(name: str) -> logging.Logger:
    """The SDK's loggers: every one carries the scrubbing filter.

    (A filter on a parent logger does not see records of its children, so each
    logger gets its own.)
    """
    logger = logging.getLogger(name)
    install_log_filter(logger)
    return logger
