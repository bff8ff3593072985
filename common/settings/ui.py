"""The dashboard and FreqUI."""

from __future__ import annotations

from typing import Any

from common.settings.parsing import boolean, integer, setting, web_url


def ui_session_ttl_ms() -> Any:
    return setting(
        "UI_SESSION_TTL", integer(60_000, 7 * 24 * 3600 * 1000), "3600000",
        "lifetime of a dashboard session (its cookie), never longer than the token's",
    )  # fmt: skip


def ui_cookie_secure() -> Any:
    return setting(
        "UI_COOKIE_SECURE", boolean, "false",
        "always mark the session cookie Secure (behind a TLS-terminating proxy)",
    )  # fmt: skip


def frequi_url() -> Any:
    return setting(
        "FREQUI_URL", web_url, "",
        "where users open FreqUI; the bot proxy answers its origin's browsers (CORS)",
    )  # fmt: skip
