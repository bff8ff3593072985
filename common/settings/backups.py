"""Backups of every bot's trade database, config and strategy."""

from __future__ import annotations

import re
from typing import Any

from common.settings.parsing import choice, integer, setting, text, web_url


def backup_dir() -> Any:
    return setting(
        "BACKUP_DIR", text, "",
        "backup target of every bot's trade database, config and strategy (default "
        "BOT_BASE_DIR/backups; best on another disk; `off`: no backups)",
    )  # fmt: skip


def backup_transport() -> Any:
    return setting(
        "BACKUP_TRANSPORT", choice("auto", "mount", "controller"), "auto",
        "how pools' snapshots reach BACKUP_DIR: mount (each pool writes its directory of it, "
        "bound at /backup), controller (each agent sends them to the controller over the "
        "network: BACKUP_DIR only on the controller's host); auto: controller on swarm with "
        "POOL_STORAGE=node, mount elsewhere",
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


def bucket_name(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value):
        raise ValueError("must be an S3 bucket name (3 to 63 of a-z, 0-9, '.', '-')")
    return value


def key_prefix(raw: str) -> str:
    """An S3 key prefix: empty, or words of [A-Za-z0-9._-] joined by '/', ending in '/'."""
    value = raw.strip().strip("/")
    if not value:
        return ""
    if not all(re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", p) for p in value.split("/")):
        raise ValueError("must be words of A-Z, a-z, 0-9, '.', '_', '-' joined by '/'")
    return value + "/"


def backup_s3_bucket() -> Any:
    return setting(
        "BACKUP_S3_BUCKET", bucket_name, "",
        "S3-compatible bucket the controller copies the backup target to (empty: none)",
    )  # fmt: skip


def backup_s3_url() -> Any:
    return setting("BACKUP_S3_URL", web_url, "", "the bucket's endpoint (empty: AWS S3's own)")


def backup_s3_prefix() -> Any:
    return setting("BACKUP_S3_PREFIX", key_prefix, "", "key prefix of the copy in the bucket")


def backup_s3_region() -> Any:
    return setting("BACKUP_S3_REGION", text, "us-east-1", "the bucket's region")


def backup_s3_access_key_id() -> Any:
    return setting("BACKUP_S3_ACCESS_KEY_ID", text, "", "access key id for the bucket")


def backup_s3_secret_access_key() -> Any:
    return setting("BACKUP_S3_SECRET_ACCESS_KEY", text, "", "secret access key for the bucket")


def backup_s3_credentials_file() -> Any:
    return setting(
        "BACKUP_S3_CREDENTIALS_FILE", text, "",
        "file holding the access key id and the secret key on two lines (read when both "
        "variables are empty; none of them: boto3's own AWS_* variables or role)",
    )  # fmt: skip
