"""Log redaction: values of secret-looking keys never reach the log output."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog

from common.logging import setup_logging


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("debug", json=True)
    try:
        yield stream
    finally:
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_secret_keys_are_logged_as_stars(log_output: io.StringIO) -> None:
    log = structlog.get_logger("unit")
    log.info(
        "bot_event",
        password="hunter2-password",
        token="tok-123456",
        pool_token="pool-tok-abc",
        jwt_secret="jwt-xyz",
        api_key="key-789",
        Authorization="Bearer abc.def",
        bot="b1",
        port=9000,
    )
    [entry] = lines(log_output)
    assert entry["event"] == "bot_event"
    for key in ("password", "token", "pool_token", "jwt_secret", "api_key", "Authorization"):
        assert entry[key] == "***", key
    assert entry["bot"] == "b1"
    assert entry["port"] == 9000
    assert entry["level"] == "info"
    raw = log_output.getvalue()
    for secret in ("hunter2", "tok-123456", "pool-tok-abc", "jwt-xyz", "key-789", "abc.def"):
        assert secret not in raw


def test_bound_context_is_redacted_too(log_output: io.StringIO) -> None:
    log = structlog.get_logger("unit").bind(password="bound-secret", user="alice")
    log.warning("login")
    [entry] = lines(log_output)
    assert entry["password"] == "***"
    assert entry["user"] == "alice"
    assert "bound-secret" not in log_output.getvalue()


def test_level_filtering(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("warning", json=True)
    try:
        log = structlog.get_logger("unit")
        log.info("hidden")
        log.error("shown", token="t-secret")
    finally:
        structlog.reset_defaults()
    [entry] = lines(stream)
    assert entry["event"] == "shown"
    assert entry["token"] == "***"
