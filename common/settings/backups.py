"""Backups of every bot's trade database, config and strategy."""

from __future__ import annotations

from typing import Any

from common.settings.parsing import integer, setting, text


def backup_dir() -> Any:
    return setting(
        "BACKUP_DIR", text, "",
        "backup target of every bot's trade database, config and strategy (default "
        "BOT_BASE_DIR/backups; best on another disk; `off`: no backups)",
    )  # fmt: skip


def backup_host_dir() -> Any:
    return setting(
        "BACKUP_HOST_DIR", text, "", "the backup target as the Docker host sees it (docker)"
    )


def backup_interval_ms() -> Any:
    return setting(
        "BACKUP_INTERVAL", integer(1000, 3_600_000), "5000",
        "how often each bot's changed trade database is copied to the backup target: the "
        "recovery point (measured by bench/backup)",
    )  # fmt: skip


def backup_retention_days() -> Any:
    return setting(
        "BACKUP_RETENTION", integer(0, 3650), "30",
        "days a deleted bot's backups are kept (and daily restore points of every bot)",
    )  # fmt: skip
