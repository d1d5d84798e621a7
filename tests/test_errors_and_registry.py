"""The error tree, secret scrubbing everywhere, and the entry-point provider registry."""

from __future__ import annotations

import logging
import pickle
import sys
from pathlib import Path

import pytest

from finetune_sdk import errors
from finetune_sdk._secrets import get_logger, register_secret, scrub
from finetune_sdk.providers import (Capability, Provider, available_providers, get_provider_class, register_provider,
                                    unregister_provider)
from finetune_sdk.types import JobStatus

CANARY_KEY = "sk-canary-key-0a1b2c3d4e5f"
CANARY_TOKEN = "eyJcanaryTOKENvalue.abc.def"


def test_terminal_set() -> None:
    assert {s for s in JobStatus if s.is_terminal} == {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    assert not JobStatus.UNKNOWN.is_terminal


@pytest.mark.parametrize("status, cls", [(400, errors.BadRequestError), (401, errors.AuthenticationError),
                                         (403, errors.PermissionDeniedError), (404, errors.NotFoundError),
                                         (409, errors.ConflictError), (422, errors.BadRequestError),
                                         (429, errors.RateLimitError), (500, errors.ServerError),
                                         (503, errors.ServerError), (None, errors.ProviderConnectionError)])
def test_error_for_status(status: int | None, cls: type) -> None:
    assert errors.error_for_status(status) is cls
    assert issubclass(cls, errors.ProviderError) and issubclass(cls, errors.FineTuneError)


def test_retryable_flags() -> None:
    assert errors.ServerError("x").retryable
    assert not errors.BadRequestError("x").retryable
    assert errors.RateLimitError("x").retryable
    assert not errors.RateLimitError("daily", retryable=False).retryable


def test_canaries_never_leak_through_errors_logs_or_pickles(caplog: pytest.LogCaptureFixture) -> None:
    register_secret(CANARY_KEY)
    register_secret(CANARY_TOKEN)
    exc = errors.RateLimitError(f"Bearer {CANARY_TOKEN} rejected; key={CANARY_KEY}", provider="openai",
                                status_code=429, body={"headers": {"api-key": CANARY_KEY}})
    blob = pickle.dumps(exc)
    restored = pickle.loads(blob)
    for text in (str(exc), repr(exc), str(exc.body), blob.decode("latin-1"), str(restored), str(restored.body)):
        assert CANARY_KEY not in text and CANARY_TOKEN not in text
    assert restored.status_code == 429 and restored.provider == "openai"
    log = get_logger("finetune_sdk.test.canary")
    with caplog.at_level(logging.INFO, logger="finetune_sdk.test.canary"):
        log.info("calling with %s and %s", CANARY_KEY, CANARY_TOKEN)
    assert caplog.records and CANARY_KEY not in caplog.text and CANARY_TOKEN not in caplog.text


def test_unregistered_secrets_are_caught_by_pattern() -> None:
    assert "sk-abcdefghijkl" not in scrub("the key sk-abcdefghijkl leaked")
    assert "zzzzzzzzzz" not in scrub("Authorization: Bearer zzzzzzzzzz")
    assert "hunter22" not in scrub("https://h/?api-key=hunter22&x=1")


class FakeProvider(Provider):
    name = "fake"
    capabilities = frozenset({Capability.UPLOAD})


def test_runtime_registration_and_unsupported_operation() -> None:
    register_provider("fake-test", FakeProvider)
    try:
        assert "fake-test" in available_providers()
        cls = get_provider_class("fake-test")
        p = cls()
        with pytest.raises(errors.UnsupportedOperation) as exc:
            p.pause_job("ftjob-1")
        assert exc.value.capability == "pause" and "fake" in str(exc.value)
        with pytest.raises(errors.UnsupportedOperation):
            p.require(Capability.DEPLOY)
    finally:
        unregister_provider("fake-test")


def test_unknown_provider_lists_registered() -> None:
    register_provider("fake-one", FakeProvider)
    try:
        with pytest.raises(errors.ConfigurationError) as exc:
            get_provider_class("nope")
        assert "fake-one" in str(exc.value) and "finetune_sdk.providers" in str(exc.value)
    finally:
        unregister_provider("fake-one")


def test_bad_registrations() -> None:
    with pytest.raises(ValueError):
        register_provider("", FakeProvider)
    register_provider("broken", "no_such_module_xyz:Thing")
    register_provider("notaprovider", "pathlib:Path")
    try:
        with pytest.raises(errors.ConfigurationError, match="could not be loaded"):
            get_provider_class("broken")
        with pytest.raises(errors.ConfigurationError, match="subclass"):
            get_provider_class("notaprovider")
    finally:
        unregister_provider("broken")
        unregister_provider("notaprovider")


def test_entry_point_plugin_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party plugin installed as a distribution with an entry point (real discovery)."""
    pkg = tmp_path / "myplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from finetune_sdk.providers import Provider\n"
        "class MyProvider(Provider):\n    name = 'mine'\n")
    dist = tmp_path / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[finetune_sdk.providers]\nmine = myplugin:MyProvider\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "mine" in available_providers()
    cls = get_provider_class("mine")
    assert cls.__name__ == "MyProvider" and cls.name == "mine"
    sys.modules.pop("myplugin", None)
