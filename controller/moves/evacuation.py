"""Evacuation: the bots of a pool that cannot be started again move to other pools.

The old pool is discarded first and confirmed not running, so no copy of a bot can run
there any more (principle 4), and it is marked draining: nothing new is placed in it.
Then each bot moves by the transfer every move takes (controller/moves/transfer.py):
held (at once: nothing of its pool runs), staged, relocated to a slot the store picks,
landed and released. A new pool is made only once its first bot's files are in it. A
controller that dies in the middle is recovered like any move (controller/moves/
recovery.py).

Where each bot starts from is `evacuation_source`: its own directory where the
controller reaches it (shared storage); with POOL_STORAGE=node its directory is on its
old node's own disk, which only that pool's agent could send, and that pool is gone: its
newest restore point then, as a failover does, or stopped without one.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import replace

import structlog

from common.states import RunState
from controller.backups.points import RestorePoint
from controller.backups.service import BackupService
from controller.errors import RuntimeFailure
from controller.moves.guard import MoveGuard
from controller.moves.restore_points import FromBackups
from controller.moves.transfer import Transfer
from controller.pools.manager import PoolManager
from controller.records import BotRecord, PoolRecord
from controller.runtimes import RuntimeState
from controller.store.allocation import Placement

log = structlog.get_logger("controller.moves")
# Where an evacuated bot starts from (evacuation_source).
FILES, BACKUP, STOPPED = "files", "backup", "stopped"
NOTHING_RUNS = frozenset((RuntimeState.EXITED, RuntimeState.MISSING))


def evacuation_source(on_node: bool, nothing_runs: bool, restore_points: bool) -> str:
    """Where a bot of a pool being evacuated starts from. `on_node`: its directory is on
    its node's own disk (POOL_STORAGE=node), which only its pool's agent can send, and
    its pool cannot start (so neither can that agent). `nothing_runs`: no task of its pool
    runs (confirmed). FILES: its own directory (a failure to move it leaves it stopped);
    BACKUP: its newest restore point; STOPPED: it moves stopped, for an operator.

    Starting a new pool on the same node with the same volume is not tried: the pool
    being evacuated was started there again and again and never came up healthy."""
    if not on_node:
        return FILES
    return BACKUP if nothing_runs and restore_points else STOPPED


class Evacuation:
    def __init__(
        self, pools: PoolManager, placement: Placement, *, guard: MoveGuard, transfer: Transfer,
        backups: BackupService | None = None, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.registry = pools.registry
        self.placement = placement
        self.guard = guard
        self.transfer = transfer
        self.restore = FromBackups(backups, transfer.staging, clock)

    async def evacuate(self, pool: PoolRecord) -> None:
        """Move every bot of a pool that cannot be started into other pools, with its files
        (or its newest restore point: evacuation_source).

        Each bot then starts in its new pool from its own directory (config, trade
        database). A bot whose directory could not be moved is not started: it is stopped,
        for an operator, rather than trading without its trade database, and its old pool
        stays (draining, so nothing new lands in it) with that directory.
        """
        # A move that holds the lock (a migration, one pool of a drain) ends first.
        async with self.guard.locked(f"pool {pool.id} is evacuated once the running move ends"):
            await self._evacuate(pool.id)

    async def _evacuate(self, pool_id: str) -> None:
        pools = self.pools
        live = self.registry.live.get(pool_id)
        heard_at = live.contact_ended if live is not None else self.restore.clock()
        # Users' changes to these bots wait (409) until they are in their new pools.
        with self.guard.pool_moving(pool_id):
            await pools.runtime.discard(pool_id)
            if await pools.runtime.inspect(pool_id) not in NOTHING_RUNS:
                raise RuntimeFailure(f"pool {pool_id} still runs; its bots stay where they are")
            # Nothing of it runs: its deleted bots are gone.
            await pools.lifecycle.finish_deletions(pool_id)
            await self.registry.apply(await pools.store.set_draining(pool_id, True))
            pool = self.registry.pools[pool_id]
            # A legacy pool's bot stays legacy, in a new pool of its own.
            placement = replace(self.placement, pooled=False) if pool.legacy_of else self.placement
            bots = self.registry.bots_in(pool_id)
            stranded = [b.id for b in bots if not await self._move(b, placement, heard_at)]
        if not stranded:
            await pools.lifecycle.remove_empty(self.registry.pools[pool_id])
        log.warning("pool_evacuated", pool=pool_id, bots=len(bots), stranded=stranded)

    async def _move(self, bot: BotRecord, placement: Placement, heard_at: float) -> bool:
        """Move one bot of the lost pool; False if it moved stopped for want of its files."""
        transfer, source = self.transfer, bot.pool_id
        transfer.check_targets(bot.id, placement)
        start, points = STOPPED, []
        try:
            bot = await transfer.hold(bot)  # at once: nothing of its pool runs
            start, points = await self._stage(bot)
            bot = await transfer.relocate(bot, placement, staged=start != STOPPED)
        except Exception:
            # Released where the store has it now, with the files this move staged, as the
            # crash recovery would; the monitor evacuates what is left again.
            bot = self.registry.bots[bot.id]
            if start == BACKUP and bot.pool_id == source:
                # Its restore point's copy is dropped (the backups keep the point): no agent
                # of the lost pool could take it, and the next round stages it anew.
                await asyncio.to_thread(shutil.rmtree, transfer.staging / bot.id, True)
                await transfer.release(bot)
            else:
                await (transfer.release(bot) if start == STOPPED else transfer.recover(bot))
            raise
        bot = await transfer.release(bot)
        kind = "bot_failed_over" if start == BACKUP else "bot_moved" if start == FILES \
            else "bot_move_failed"  # fmt: skip
        reason = "no_backup" if start == STOPPED and transfer.files is not None else "pool_lost"
        point = await self.restore.fields(points, heard_at) if start == BACKUP else {}
        self.pools.events.emit(
            kind, pool=bot.pool_id, bot=bot.id, user=bot.user_id, reason=reason,
            fromPool=source, port=bot.port, **point,
        )  # fmt: skip
        return start != STOPPED

    async def _stage(self, bot: BotRecord) -> tuple[str, list[RestorePoint]]:
        """Stage the held bot's files, or its newest restore point (evacuation_source);
        with neither it is stopped (before it moves: it never starts without its trade
        database) and moves without. Where it starts from, and the points staged."""
        on_node = self.transfer.files is not None
        if on_node and self.transfer.staged(bot.id):
            # Staged already (its pool's agent exported it, then the move was cut short):
            # newer than any backup, it moves as it is.
            return FILES, []
        # Never with a task of its pool running (checked before its bots moved too).
        nothing = on_node and await self.pools.runtime.inspect(bot.pool_id) in NOTHING_RUNS
        points = await self.restore.stage(bot) if nothing else []
        start = evacuation_source(on_node, nothing, bool(points))
        if start == FILES:
            try:
                await self.transfer.stage(bot)
                return FILES, []
            except OSError as exc:
                log.error("bot_files_not_moved", bot=bot.id, pool=bot.pool_id, error=str(exc))
                start = STOPPED
        if start == STOPPED:
            await self.registry.apply(
                await self.pools.store.update_bot(bot.id, run=RunState.STOPPED)
            )
        return start, points
