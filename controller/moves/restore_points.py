"""A bot started elsewhere from its backups because its own directory is out of reach (on
a lost node: a failover; on the own disk of a node whose pool cannot start: an evacuation
with POOL_STORAGE=node): its newest restore point of each database staged as its
directory, and what the bot's event says of them (recovery_point)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from controller.backups.points import RestorePoint, checked_at
from controller.backups.service import BackupService
from controller.errors import FtpoolError
from controller.records import BotRecord

log = structlog.get_logger("controller.moves")


def recovery_point(points: list[RestorePoint], checked: float, heard_at: float,
                   now: float) -> dict:  # fmt: skip
    """What an event says of the restore points a bot failed over from: the newest's id and
    time, its age now, and `lostSeconds`: how long before its pool was last heard from its
    database was last known to equal that point (`checked`: the last backup round that found
    it unchanged, `checked_at`); trades of those seconds, and of the time until the fence
    stopped the bot, may be lost; 0 when it was checked later, during the partition."""
    if not points:
        return {"restorePoint": None}
    newest = points[-1]
    return {
        "restorePoint": newest.id,
        "pointTime": datetime.fromtimestamp(newest.time, UTC).isoformat(),
        "ageSeconds": round(now - newest.time, 1),
        "lostSeconds": round(max(0.0, heard_at - max(newest.time, checked)), 1),
    }


class FromBackups:
    def __init__(
        self, backups: BackupService | None, staging: Path, clock: Callable[[], float]
    ) -> None:
        self.backups = backups  # None: backups are off
        self.staging = staging  # BOT_BASE_DIR/migrating
        self.clock = clock

    async def stage(self, bot: BotRecord) -> list[RestorePoint]:
        """Its latest restore points staged as its directory ([]: it has none). One that
        cannot be read or fetched now (the target's disk, the bucket timing out) raises:
        the move is tried again at the next round, rather than the bot moved stopped
        (its user's choice overwritten) for what may pass in seconds."""
        if self.backups is None:
            return []
        try:
            return await self.backups.stage_latest(bot, self.staging / bot.id)
        except (OSError, FtpoolError) as exc:
            log.error("bot_backup_not_staged", bot=bot.id, pool=bot.pool_id, error=str(exc))
            raise

    async def fields(self, points: list[RestorePoint], heard_at: float) -> dict:
        """The event's fields for a bot started from `points`; `heard_at`: when its old
        pool's agent last spoke."""
        checked = await asyncio.to_thread(checked_at, points[-1]) if points else 0.0
        return recovery_point(points, checked, heard_at, self.clock())
