"""The controller process: where it keeps its data, how it listens and authenticates,
what its HTTP API accepts, and the log level (shared with the agent).
"""

from __future__ import annotations

from typing import Any

from common.settings.parsing import (
    MS,
    absolute_path,
    boolean,
    choice,
    integer,
    secret,
    setting,
    text,
)


def bot_base_dir() -> Any:
    return setting(
        "BOT_BASE_DIR",
        absolute_path,
        "./data",
        "root of pools, archives, secrets and the default store",
    )


def controller_host() -> Any:
    return setting("CONTROLLER_HOST", text, "127.0.0.1", "address the controller listens on")


def controller_port() -> Any:
    return setting("CONTROLLER_PORT", integer(1, 65535), "5000", "port the controller listens on")


def database() -> Any:
    return setting("DATABASE", text, "", "SQLite store file (default BOT_BASE_DIR/ftpool.sqlite3)")


def admin_token() -> Any:
    return setting(
        "ADMIN_TOKEN", secret, "", "bearer token with the admin role (default: generated)"
    )


def jwt_secret() -> Any:
    return setting("JWT_SECRET", secret, "", "HS256 key for user tokens (default: generated)")


def proxy_timeout_ms() -> Any:
    return setting("PROXY_TIMEOUT", MS, "30000", "upstream read timeout of the bot proxy")


def max_body_bytes() -> Any:
    return setting(
        "MAX_BODY_BYTES", integer(1024, 1 << 30), "1048576", "largest request body accepted"
    )


def metrics_public() -> Any:
    return setting("METRICS_PUBLIC", boolean, "false", "serve /metrics without the admin token")


def events_max() -> Any:
    return setting(
        "EVENTS_MAX",
        integer(1, 10_000_000),
        "10000",
        "health and recovery events kept in the store",
    )


def log_level() -> Any:
    return setting("LOG_LEVEL", choice("debug", "info", "warning", "error"), "info", "log level")
