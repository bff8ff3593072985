"""Restore points that pools' agents send (BACKUP_TRANSPORT=controller), into BACKUP_DIR.

Where pools are on their node's own disk nothing of BACKUP_DIR is shared with the nodes:
each agent sends every new point of its bots over the network (agent/backup_targets.py)
and the controller writes it where an agent with a mount would have (<BACKUP_DIR>/pools/
<pool>/<bot>/<database>/<stamp>.sqlite, common/restore_points.py), so listing, thinning,
the offsite copy, restores and failover read them as ever.

An agent is untrusted input. It authenticates with its pool's token (the one its hello
gives; replaced when a pool is abandoned on a lost node, so a pool back from a partition
writes nothing more), may write only points of bots the store has in its pool, named as
points are (a database name, a stamp no older than MAX_AGE nor later than MAX_AHEAD than
the controller's clock), up to MAX_POINT_BYTES, whose sha256 is the one it said and that
are whole SQLite databases. A point is never replaced: sent again (its answer was lost)
with the same bytes it is taken as there, with others refused. A mark ("unchanged until")
moves only forward, never past the controller's own time, and only for the newest point.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog

from common.bot_archive import LIMITS, sha256_of
from common.protocol import ProtocolError, check_restore_point
from common.restore_points import (
    check_intact,
    commit_point,
    mark_checked,
    newest_stamp,
    time_of,
)
from controller.errors import BadRequest, Conflict, NotFound, Unauthorized
from controller.pools.live import token_matches
from controller.pools.registry import PoolRegistry
from controller.uploads import write_upload

log = structlog.get_logger("controller.backups")
MAX_POINT_BYTES = LIMITS.max_bytes  # a database is never larger than a bot's directory
MAX_AGE = 3600.0  # a point is sent as soon as it is taken
MAX_AHEAD = 300.0  # the nodes' clocks may run ahead of the controller's by this much


def parse_point(point_id: str, now: float, *, new: bool = True) -> tuple[str, str]:
    """A point's id as sent, <database>@<stamp>, checked (BadRequest); a `new` one (sent
    to be written, not marked) must be of about the controller's time."""
    db, _, stamp = point_id.partition("@")
    try:
        check_restore_point(db, stamp)
        at = time_of(stamp)
    except (ProtocolError, ValueError):
        raise BadRequest("the point must be <database>@<stamp>, as restore points are") from None
    if new and not now - MAX_AGE <= at <= now + MAX_AHEAD:
        raise BadRequest("the point's time is too far from the controller's")
    return db, stamp


def parse_checked(body: object, stamp: str, now: float) -> float:
    """Until when the database equalled the point: the agent's time, at most now."""
    at = body.get("at") if isinstance(body, dict) and set(body) == {"at"} else None
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise BadRequest('body must be {"at": <unix time>}')
    return max(time_of(stamp), min(float(at), now))


class PointReceiver:
    def __init__(
        self, root: Path, registry: PoolRegistry, retention_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.root = root  # BACKUP_DIR
        self.registry = registry
        self.retention_days = retention_days
        self.clock = clock
        self.received = 0  # points written (for the logs and tests)

    def admit(self, pool_id: str, authorization: str, bot_id: str) -> Path:
        """The bot's directory of points in the pool's, if the token is the pool's and the
        bot is in it (Unauthorized, NotFound)."""
        pool = self.registry.pools.get(pool_id)
        scheme, _, token = authorization.partition(" ")
        if (
            pool is None or scheme != "Bearer"
            or not token_matches(token.strip(), pool.token_hash)
        ):  # fmt: skip
            raise Unauthorized("the pool's token is required")
        bot = self.registry.bots.get(bot_id)
        if bot is None or bot.pool_id != pool_id:
            raise NotFound(f"no bot {bot_id} in pool {pool_id}")
        return self.root / "pools" / pool_id / bot_id

    async def receive(
        self, bot_dir: Path, point_id: str, chunks: AsyncIterator[bytes], digest: str
    ) -> bool:
        """The point written, whole and checked; False if it was there already (the same)."""
        db, stamp = parse_point(point_id, self.clock())
        directory = bot_dir / db
        await asyncio.to_thread(_make_dirs, self.root, directory)
        tmp = directory / f".{stamp}.{secrets.token_hex(4)}.upload"
        try:
            await write_upload(tmp, chunks, digest, limit=MAX_POINT_BYTES, what="the point",
                               bounded_as="a database", exclusive=True, sync=True)  # fmt: skip
            return await asyncio.to_thread(self._commit, directory, tmp, stamp, digest)
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(self, directory: Path, tmp: Path, stamp: str, digest: str) -> bool:
        try:
            check_intact(tmp)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        try:
            commit_point(directory, tmp, stamp, self.clock(), self.retention_days,
                         exclusive=True)  # fmt: skip
        except FileExistsError:
            if sha256_of(directory / f"{stamp}.sqlite") != digest:
                raise Conflict("a different point of that name is there; never replaced") from None
            return False
        self.received += 1
        return True

    async def checked(self, bot_dir: Path, point_id: str, body: object) -> None:
        """The database still equalled its newest point (Conflict: that is not the newest
        here, NotFound: there is none; the agent then sends a new point)."""
        now = self.clock()
        db, stamp = parse_point(point_id, now, new=False)  # a database unchanged for days
        at = parse_checked(body, stamp, now)
        directory = bot_dir / db
        newest = await asyncio.to_thread(newest_stamp, directory)
        if not newest:
            raise NotFound("no point of that database here")
        if newest != stamp:
            raise Conflict("that point is not the database's newest here")
        await asyncio.to_thread(mark_checked, directory, at)


def _make_dirs(root: Path, directory: Path) -> None:
    """Each directory from the target down to `directory`, private to the controller."""
    path = root
    path.mkdir(mode=0o700, exist_ok=True)
    for part in directory.relative_to(root).parts:
        path = path / part
        path.mkdir(mode=0o700, exist_ok=True)
