"""An S3-compatible bucket as the backup target's off-host copy (blocking: call its methods
in a thread). Keys mirror the backup directory: <prefix>pools/<pool>/<bot>/..., so a bot's
objects sit under a prefix of their own, as its files do locally.

Errors leave here as BucketError, whose text never holds the credentials (botocore's own
messages do not; the credentials are scrubbed from them anyway).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions

from common.settings import ControllerSettings, SettingsError

# Bounded: a dead endpoint costs seconds per call, not minutes; botocore's "standard" retry
# mode retries throttling and transient errors with exponential backoff and jitter.
_CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
    s3={"addressing_style": "path"},
)  # fmt: skip


class BucketError(Exception):
    """The bucket cannot be reached or refused a request; the text is safe to log."""


@dataclass(frozen=True, slots=True)
class BucketConfig:
    bucket: str
    endpoint: str = ""  # empty: AWS's own
    prefix: str = ""  # "" or ending in "/"
    region: str = "us-east-1"
    access_key_id: str = ""  # both empty: boto3's own chain (AWS_* variables, a role)
    secret_access_key: str = ""

    def __repr__(self) -> str:  # never the credentials, in a traceback or a log
        return f"BucketConfig(bucket={self.bucket!r}, endpoint={self.endpoint!r})"

    @classmethod
    def from_settings(cls, s: ControllerSettings) -> BucketConfig | None:
        """The bucket BACKUP_S3_* name, or None: no off-host copy (none named, or backups
        off). The credentials file is read here: SettingsError if it cannot be."""
        if not s.backup_s3_bucket or s.backups_path is None:
            return None
        key_id, secret = s.backup_s3_access_key_id, s.backup_s3_secret_access_key
        if not key_id and not secret and s.backup_s3_credentials_file:
            try:
                lines = Path(s.backup_s3_credentials_file).read_text().split()
            except OSError as exc:
                raise SettingsError(
                    f"BACKUP_S3_CREDENTIALS_FILE cannot be read: {exc.strerror}"
                ) from None
            if len(lines) != 2:
                raise SettingsError(
                    "BACKUP_S3_CREDENTIALS_FILE must hold the access key id and the secret "
                    "access key, on two lines"
                )
            key_id, secret = lines
        if bool(key_id) != bool(secret):
            raise SettingsError(
                "BACKUP_S3_ACCESS_KEY_ID and BACKUP_S3_SECRET_ACCESS_KEY go together"
            )
        return cls(s.backup_s3_bucket, s.backup_s3_url, s.backup_s3_prefix,
                   s.backup_s3_region, key_id, secret)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str  # relative to the prefix: pools/<pool>/<bot>/...
    size: int
    modified: float  # UTC seconds


class Bucket:
    def __init__(self, config: BucketConfig) -> None:
        self.config = config
        self._client = boto3.client(
            "s3", endpoint_url=config.endpoint or None, region_name=config.region,
            aws_access_key_id=config.access_key_id or None,
            aws_secret_access_key=config.secret_access_key or None, config=_CLIENT_CONFIG,
        )  # fmt: skip

    def _error(self, exc: Exception) -> BucketError:
        text = f"{type(exc).__name__}: {exc}"
        for secret in (self.config.secret_access_key, self.config.access_key_id):
            if secret:
                text = text.replace(secret, "***")
        return BucketError(text)

    def _call(self, method: str, **kwargs: object) -> dict:
        try:
            return getattr(self._client, method)(Bucket=self.config.bucket, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc) from None

    def list(self, under: str = "pools/") -> list[StoredObject]:
        """Every object whose key starts with `under` (after the prefix)."""
        found, token, cut = [], None, len(self.config.prefix)
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call("list_objects_v2", Prefix=self.config.prefix + under, **extra)
            for item in page.get("Contents", []):
                found.append(StoredObject(
                    item["Key"][cut:], item["Size"], item["LastModified"].timestamp()
                ))  # fmt: skip
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    def upload(self, key: str, path: Path) -> int:
        """The file at the key, streamed; its size. FileNotFoundError if it is gone. A link
        is never followed (a pool's root writes its part of the backup target)."""
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            self._call("put_object", Key=self.config.prefix + key, Body=f)
            return f.tell()

    def download(self, key: str, target: Path, size: int | None = None) -> None:
        """The object into `target`, whole or not at all (a private file of its own, so two
        downloads never write one file, renamed into place); `size`: what the listing said,
        a shorter or longer body is an error."""
        body = self._call("get_object", Key=self.config.prefix + key)["Body"]
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp's file is 0600
                for chunk in body.iter_chunks(1 << 20):
                    f.write(chunk)
                if size is not None and f.tell() != size:
                    raise OSError(f"{key}: {f.tell()} bytes downloaded, {size} listed")
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(target)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise self._error(exc) from None

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 at most
            batch = [{"Key": self.config.prefix + k} for k in keys[start : start + 1000]]
            self._call("delete_objects", Delete={"Objects": batch, "Quiet": True})
