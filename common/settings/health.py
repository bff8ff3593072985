"""The health monitor: how often it looks, when a bot counts as unresponsive, and how
often and how fast it restarts a bot or a pool.
"""

from __future__ import annotations

from typing import Any

from common.settings.parsing import MS, integer, setting


def health_check_interval_ms() -> Any:
    return setting(
        "HEALTH_CHECK_INTERVAL", MS, "30000", "how often the monitor evaluates pools and bots"
    )


def bot_ping_timeout_ms() -> Any:
    return setting("BOT_PING_TIMEOUT", MS, "5000", "agent's timeout for a bot's /api/v1/ping")


def max_restart_attempts() -> Any:
    return setting(
        "MAX_RESTART_ATTEMPTS", integer(0, 100), "3", "automatic restarts of a bot before cooldown"
    )


def restart_cooldown_ms() -> Any:
    return setting(
        "RESTART_COOLDOWN", MS, "60000", "pause after MAX_RESTART_ATTEMPTS before trying again"
    )


def restart_backoff_ms() -> Any:
    return setting(
        "RESTART_BACKOFF", MS, "1000", "wait before a bot's 2nd restart; doubles each attempt"
    )


def restart_cycles() -> Any:
    return setting(
        "RESTART_CYCLES", integer(1, 1000), "3", "cooldown cycles before a bot is marked failed"
    )


def restart_reset_after_ms() -> Any:
    return setting(
        "RESTART_RESET_AFTER", MS, "600000", "healthy run time that clears a bot's restarts"
    )


def pool_start_attempts() -> Any:
    return setting(
        "POOL_START_ATTEMPTS", integer(1, 100), "3",
        "starts of a lost pool before its bots are moved to other pools",
    )  # fmt: skip


def bot_unresponsive_ms() -> Any:
    return setting(
        "BOT_UNRESPONSIVE_TIMEOUT", MS, "60000", "failing pings for this long: restart the bot"
    )
