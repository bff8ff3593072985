"""Evacuation: the bots of a pool that cannot be started again move to other pools.

The old pool is discarded first and confirmed not running, so no copy of a bot can run
there any more (principle 4), and it is marked draining: nothing new is placed in it.
Then each bot moves by the transfer every move takes (controller/moves/transfer.py):
held (at once: nothing of its pool runs), staged, relocated to a slot the store picks,
landed and released. A new pool is made only once its first bot's files are in it. A
controller that dies in the middle is recovered like any move (controller/moves/
recovery.py).
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from common.states import RunState
from controller.errors import Conflict, RuntimeFailure
from controller.moves.guard import MoveGuard
from controller.moves.transfer import Transfer
from controller.pools.manager import PoolManager
from controller.records import BotRecord, PoolRecord
from controller.runtimes import RuntimeState
from controller.store.allocation import Placement

log = structlog.get_logger("controller.moves")


class Evacuation:
    def __init__(
        self, pools: PoolManager, placement: Placement, *, guard: MoveGuard, transfer: Transfer
    ) -> None:
        self.pools = pools
        self.registry = pools.registry
        self.placement = placement
        self.guard = guard
        self.transfer = transfer

    async def evacuate(self, pool: PoolRecord) -> None:
        """Move every bot of a pool that cannot be started into other pools, with its files.

        Each bot then starts in its new pool from its own directory (config, trade
        database). A bot whose directory could not be moved is not started: it is stopped,
        for an operator, rather than trading without its trade database, and its old pool
        stays (draining, so nothing new lands in it) with that directory.
        """
        if self.guard.lock.locked():
            # A migration is moving a bot, perhaps of this pool: the monitor tries again.
            raise Conflict(f"pool {pool.id} is evacuated once the running migration ends")
        async with self.guard.lock:
            await self._evacuate(pool.id)

    async def _evacuate(self, pool_id: str) -> None:
        pools = self.pools
        # Users' changes to these bots wait (409) until they are in their new pools.
        with self.guard.pool_moving(pool_id):
            await pools.runtime.discard(pool_id)
            if await pools.runtime.inspect(pool_id) not in (RuntimeState.EXITED,
                                                            RuntimeState.MISSING):  # fmt: skip
                raise RuntimeFailure(f"pool {pool_id} still runs; its bots stay where they are")
            # Nothing of it runs: its deleted bots are gone.
            await pools.lifecycle.finish_deletions(pool_id)
            await self.registry.apply(await pools.store.set_draining(pool_id, True))
            pool = self.registry.pools[pool_id]
            # A legacy pool's bot stays legacy, in a new pool of its own.
            placement = replace(self.placement, pooled=False) if pool.legacy_of else self.placement
            bots = self.registry.bots_in(pool_id)
            stranded = [b.id for b in bots if not await self._move(b, placement)]
        if not stranded:
            await pools.lifecycle.remove_empty(self.registry.pools[pool_id])
        log.warning("pool_evacuated", pool=pool_id, bots=len(bots), stranded=stranded)

    async def _move(self, bot: BotRecord, placement: Placement) -> bool:
        """Move one bot of the lost pool; False if its files could not leave it."""
        transfer, source = self.transfer, bot.pool_id
        transfer.check_targets(bot.id, placement)
        staged = False
        try:
            bot = await transfer.hold(bot)  # at once: nothing of its pool runs
            staged = await self._stage(bot)
            bot = await transfer.relocate(bot, placement, staged=staged)
        except Exception:
            # Released where the store has it now, with the files this move staged, as the
            # crash recovery would; the monitor evacuates what is left again.
            bot = self.registry.bots[bot.id]
            await (transfer.recover(bot) if staged else transfer.release(bot))
            raise
        bot = await transfer.release(bot)
        self.pools.events.emit(
            "bot_moved" if staged else "bot_move_failed", pool=bot.pool_id, bot=bot.id,
            user=bot.user_id, reason="pool_lost", fromPool=source, port=bot.port,
        )  # fmt: skip
        return staged

    async def _stage(self, bot: BotRecord) -> bool:
        """Stage the held bot's files; if they cannot leave its old pool, it is stopped
        (before it moves: it never starts without its trade database) and moves without."""
        try:
            await self.transfer.stage(bot)
        except OSError as exc:
            log.error("bot_files_not_moved", bot=bot.id, pool=bot.pool_id, error=str(exc))
            await self.registry.apply(
                await self.pools.store.update_bot(bot.id, run=RunState.STOPPED)
            )
            return False
        return True
