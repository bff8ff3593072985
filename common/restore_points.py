"""Restore points as files: their names, their thinning, and one written into place.

A bot's points are <dir>/<bot>/<database>/<stamp>.sqlite, whoever writes them: a pool's
agent into its directory of the backup target (BACKUP_TRANSPORT=mount, agent/backups.py)
or the controller, as an agent sends them (BACKUP_TRANSPORT=controller, controller/
backups/receive.py). Beside them the CHECKED mark: the stamp of the newest, and as its
mtime the last time the database was known to equal it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

# FreqTrade's own database names (db_url is a protected key: it is never anything else).
DB_NAMES = ("tradesv3.sqlite", "tradesv3.dryrun.sqlite")
SIDE_FILES = ("-journal", "-wal", "-shm")
# Beside a database's snapshots: the stamp of its newest, and as its mtime the last round
# that found the database unchanged since (a leading dot: never uploaded to the bucket).
CHECKED = ".checked"
STAMP = "%Y%m%dT%H%M%S"
KEEP_RECENT = 12  # the newest snapshots, always kept
KEEP_HOURLY = 24  # then the newest of each of the last 24 hours


def stamp_of(t: float) -> str:
    """A snapshot's name: its UTC time to the microsecond, sortable as text."""
    return time.strftime(STAMP, time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


def time_of(stamp: str) -> float:
    return datetime.strptime(stamp, STAMP + ".%fZ").replace(tzinfo=UTC).timestamp()


def check_intact(path: Path) -> None:
    """ValueError unless the file is a whole SQLite database (a truncated or damaged
    snapshot, from a full disk or a bucket, is never restored)."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            result = db.execute("PRAGMA quick_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ValueError(f"the restore point is not a readable database: {exc}") from None
    if result != ("ok",):
        raise ValueError("the restore point is damaged (quick_check failed)")


def to_delete(stamps: list[str], now: float, retention_days: int) -> list[str]:
    """The snapshots thinning drops: all but the newest KEEP_RECENT, the newest of each hour
    of the last KEEP_HOURLY hours, and the newest of each day within the retention."""
    keep, hours, days = set(sorted(stamps)[-KEEP_RECENT:]), set(), set()
    for stamp in sorted(stamps, reverse=True):
        age = now - time_of(stamp)
        if age < KEEP_HOURLY * 3600 and stamp[:11] not in hours:
            hours.add(stamp[:11])
            keep.add(stamp)
        elif age < retention_days * 86400 and stamp[:8] not in days:
            days.add(stamp[:8])
            keep.add(stamp)
    return sorted(s for s in stamps if s not in keep)


def write_private(path: Path, data: bytes) -> None:
    """`data` as a new private file (0600), flushed to disk; never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def newest_stamp(directory: Path) -> str:
    """The stamp the CHECKED mark names ("" if there is none)."""
    try:
        return (directory / CHECKED).read_text()[:64]
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def commit_point(
    directory: Path, tmp: Path, stamp: str, now: float, retention_days: int,
    *, exclusive: bool = False,
) -> None:  # fmt: skip
    """`tmp` (written whole and fsynced, in `directory`) becomes the point <stamp>.sqlite;
    the CHECKED mark names it, checked at its own time, if it is the newest; older points
    are thinned. `exclusive`: a point of that name already there is never replaced
    (FileExistsError; `tmp` is left to the caller)."""
    final = directory / f"{stamp}.sqlite"
    if exclusive:
        os.link(tmp, final, follow_symlinks=False)
        tmp.unlink()
    else:
        os.replace(tmp, final)
    if stamp > newest_stamp(directory):
        mark = directory / CHECKED
        with contextlib.suppress(FileNotFoundError):
            mark.unlink()  # written anew, never through whatever is there
        write_private(mark, stamp.encode())
        at = time_of(stamp)
        os.utime(mark, (at, at), follow_symlinks=False)
    stamps = [p.name[: -len(".sqlite")] for p in directory.glob("*.sqlite")]
    for old in to_delete(stamps, now, retention_days):
        (directory / f"{old}.sqlite").unlink(missing_ok=True)


def mark_checked(directory: Path, at: float) -> None:
    """The database still equalled its newest point at `at` (never moved back)."""
    mark = directory / CHECKED
    with contextlib.suppress(FileNotFoundError):  # none yet: an agent from before it
        if mark.lstat().st_mtime < at:
            os.utime(mark, (at, at), follow_symlinks=False)
