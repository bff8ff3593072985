"""A bot's restore points, as its pools' agents wrote them to the backup target, and the
choice of one (pure: from a listing and a request body).

The target holds <root>/pools/<pool>/<bot>/<database>/<stamp>.sqlite (agent/backups.py):
a bot that moved between pools has points under each pool it lived in. Each pool's agent
(root in its container) may write anything in its own pool's directory, so a point is the
bot's only if the pool it was found under is one the bot lived in and it was made while
the bot lived there (`accepted`: the store's pool history, controller/store/history.py).
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.ids import is_valid_id
from common.protocol import ProtocolError, check_restore_point
from common.restore_points import CHECKED, DB_NAMES, time_of
from controller.errors import BadRequest, NotFound
from controller.records import Stay


@dataclass(frozen=True, slots=True)
class RestorePoint:
    db: str  # FreqTrade's database file name
    stamp: str  # the snapshot's UTC time, as its file is named
    pool_id: str  # the pool whose agent wrote it
    path: Path
    size: int
    trades: int | None = None  # None: the snapshot cannot be read
    open_trades: int | None = None
    key: str | None = None  # its key in the backup bucket, if it is there
    local: bool = True  # False: only in the bucket (`path` is where it would be)

    @property
    def id(self) -> str:
        return f"{self.db}@{self.stamp}"

    @property
    def time(self) -> float:
        return time_of(self.stamp)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "database": self.db,
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(),
            "bytes": self.size, "trades": self.trades, "openTrades": self.open_trades,
            "poolId": self.pool_id,
            "stored": ["local"] * self.local + ["bucket"] * (self.key is not None),
        }  # fmt: skip


# A snapshot is the bot owner's file: its `trades` could be a view that never ends. Its
# count stops after this many SQLite VM steps (about 0.1 s) and then reads as unknown.
COUNT_STEPS = 5_000_000


def _counts(path: Path) -> tuple[int | None, int | None]:
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"
    with contextlib.suppress(sqlite3.Error, TypeError, ValueError):
        db = sqlite3.connect(uri, uri=True)
        try:
            steps = iter(range(COUNT_STEPS // 1000))
            db.set_progress_handler(lambda: next(steps, None) is None, 1000)
            kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'trades'").fetchone()
            if kind != ("table",):
                return None, None
            trades, still_open = db.execute(
                "SELECT count(*), coalesce(sum(is_open), 0) FROM trades"
            ).fetchone()
            return int(trades), int(still_open)
        finally:
            db.close()
    return None, None


def bot_dirs(root: Path, bot_id: str) -> list[Path]:
    """The bot's directories in the target, one per pool it was backed up in."""
    if not is_valid_id(bot_id):
        return []
    return sorted(p for p in (root / "pools").glob(f"*/{bot_id}") if p.is_dir())


def list_points(root: Path, bot_id: str) -> list[RestorePoint]:
    """Every restore point of the bot, oldest first (blocking: call it in a thread)."""
    points = []
    for bot_dir in bot_dirs(root, bot_id):
        for db in DB_NAMES:
            for path in (bot_dir / db).glob("*.sqlite"):
                stamp = path.name[: -len(".sqlite")]
                try:
                    check_restore_point(db, stamp)
                    size = path.stat().st_size
                except (ProtocolError, OSError):
                    continue  # not a snapshot, or gone since the listing
                points.append(
                    RestorePoint(db, stamp, bot_dir.parent.name, path, size, *_counts(path))
                )
    return sorted(points, key=lambda p: (p.stamp, p.db))


# How far a point's time may lie outside the bot's stay in its pool: the pool's node's
# clock may run ahead of the controller's, or behind it (as receive.py's MAX_AHEAD). The
# moves need no more: a bot's directory leaves its old pool before the store moves it, and
# reaches its new one after (controller/moves/transfer.py).
STAY_SLACK = 300.0


def accepted(
    points: list[RestorePoint], stays: list[Stay], created_at: float,
    pools_made: Mapping[str, float], slack: float = STAY_SLACK,
) -> list[RestorePoint]:  # fmt: skip
    """The bot's own points of a listing (local, the bucket's, both): each made no earlier
    than the bot (older ones are a deleted bot's with the same id, maybe another user's),
    under a pool it lived in, while it lived there (give or take `slack`). A point another
    pool's agent put under its own directory for this bot, or one its pool made before the
    bot came or after it left, is not the bot's; nor is any point of a stay in a pool whose
    id a later pool took (`pools_made`: when each pool there is now was made), whose agent
    has the directory since and could have written or changed what lies there."""

    def within(point: RestorePoint, stay: Stay) -> bool:
        if stay.pool_id != point.pool_id or point.time < stay.since - slack:
            return False
        if stay.until is None:
            return True  # it lives there now: that pool is the one it came to
        made = pools_made.get(stay.pool_id)
        return point.time <= stay.until + slack and (made is None or made <= stay.until)

    return [p for p in points if p.time >= created_at and any(within(p, stay) for stay in stays)]


def checked_at(point: RestorePoint) -> float:
    """Until when the bot's database is known to have equalled this point: the last
    backup round that found it unchanged, if the point is still its newest (agent/backups.py
    CHECKED), else the point's own time. Blocking."""
    if not point.local:
        return point.time
    try:
        mark = point.path.parent / CHECKED
        if mark.read_text() != point.stamp:
            return point.time
        return max(point.time, mark.stat().st_mtime)
    except (OSError, UnicodeDecodeError):
        return point.time


def with_bucket(
    local: list[RestorePoint], remote: list[tuple[str, str, str, str, int]], root: Path
) -> list[RestorePoint]:
    """The local points and the bucket's (pool, bot, database, stamp, size), each once: a
    point in both is local, marked as in the bucket too; the trades of a point only in the
    bucket are not known (None) until it is restored."""
    in_bucket = {(pool, db, stamp): (bot, size) for pool, bot, db, stamp, size in remote}
    merged = []
    for p in local:
        found = in_bucket.pop((p.pool_id, p.db, p.stamp), None)
        merged.append(replace(p, key=p.path.relative_to(root).as_posix()) if found else p)
    for (pool, db, stamp), (bot, size) in in_bucket.items():
        path = root / "pools" / pool / bot / db / f"{stamp}.sqlite"
        key = path.relative_to(root).as_posix()
        merged.append(RestorePoint(db, stamp, pool, path, size, key=key, local=False))
    return sorted(merged, key=lambda p: (p.stamp, p.db))


def latest(points: list[RestorePoint]) -> list[RestorePoint]:
    """The newest point of each database the bot has (one, unless it switched between dry
    run and live), from a listing sorted oldest first; a local copy wins over the bucket's."""
    newest: dict[str, RestorePoint] = {}
    for point in points:
        kept = newest.get(point.db)
        if kept is None or point.stamp > kept.stamp or (point.stamp == kept.stamp
                                                         and point.local):  # fmt: skip
            newest[point.db] = point
    return sorted(newest.values(), key=lambda p: (p.stamp, p.db))


def parse_choice(body: object) -> tuple[str | None, float | None]:
    """A restore request's body: {"restorePoint": id} or {"time": ISO 8601}, one of them."""
    if not isinstance(body, dict) or set(body) - {"restorePoint", "time"} or len(body) != 1:
        raise BadRequest('body must be {"restorePoint": "<id>"} or {"time": "<ISO 8601>"}')
    if "restorePoint" in body:
        point = body["restorePoint"]
        db, _, stamp = point.partition("@") if isinstance(point, str) else ("", "", "")
        try:
            check_restore_point(db, stamp)
        except ProtocolError:
            raise BadRequest("restorePoint must be an id from GET .../backups") from None
        return point, None
    raw = body["time"]
    try:
        when = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        when = None
    if when is None:
        raise BadRequest("time must be an ISO 8601 date and time")
    return None, (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def choose(
    points: list[RestorePoint], point_id: str | None, at: float | None, current_pool: str
) -> RestorePoint:
    """The point asked for by id, or the newest at or before a time (NotFound if none); one
    written in the bot's current pool wins over a copy of the same point elsewhere."""
    if point_id is not None:
        found = [p for p in points if p.id == point_id]
    else:
        assert at is not None
        before = [p for p in points if p.time <= at]
        found = [p for p in before if p.stamp == before[-1].stamp] if before else []
    if not found:
        raise NotFound("no such restore point")
    return next((p for p in found if p.pool_id == current_pool), found[-1])
