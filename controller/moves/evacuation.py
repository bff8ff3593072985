"""Evacuation: the bots of a pool that cannot be started again move to other pools.

The old pool is discarded first and confirmed not running, so no copy of a bot can run
there any more (principle 4); then every bot gets a slot elsewhere in one transaction,
its directory is moved on the host (the dead pool has no agent to hand it over), and it
starts in its new pool. A controller that dies in the middle finishes the moves at its
next start, before any pool starts (`finish_interrupted`).
"""

from __future__ import annotations

import structlog

from common.states import RunState
from controller.errors import Conflict, RuntimeFailure
from controller.moves.guard import MoveGuard
from controller.pools.manager import PoolManager
from controller.records import BotRecord, PoolRecord
from controller.runtimes import RuntimeState
from controller.store.allocation import Placement

log = structlog.get_logger("controller.moves")


class Evacuation:
    def __init__(self, pools: PoolManager, placement: Placement, guard: MoveGuard) -> None:
        self.pools = pools
        self.placement = placement
        self.guard = guard

    async def evacuate(self, pool: PoolRecord) -> None:
        """Move every bot of a pool that cannot be started into other pools, with its files.

        The old pool is discarded first, so no copy of a bot can run there any more; each
        bot then starts in its new pool from its own directory (config, trade database). A
        bot whose directory could not be moved is not started: it is stopped, for an
        operator, rather than trading without its trade database.
        """
        if self.guard.lock.locked():
            # A migration is moving a bot, perhaps of this pool: the monitor tries again.
            raise Conflict(f"pool {pool.id} is evacuated once the running migration ends")
        async with self.guard.lock:
            await self._evacuate(pool)

    async def _evacuate(self, pool: PoolRecord) -> None:
        pools = self.pools
        # Users' changes to these bots wait (409) until they are in their new pools.
        with self.guard.pool_moving(pool.id):
            await pools.runtime.discard(pool.id)
            if await pools.runtime.inspect(pool.id) == RuntimeState.RUNNING:
                raise RuntimeFailure(f"pool {pool.id} still runs; its bots stay where they are")
            # Nothing of it runs: its deleted bots are gone.
            await pools.lifecycle.finish_deletions(pool.id)
            _token, token_hash = pools.lifecycle.new_token()
            change = await pools.store.move_bots(pool.id, self.placement, token_hash)
            # The old pool stays, full, so that nothing new is placed in it. The new pools
            # are told once the bots' directories are there: an agent told first would
            # make a fresh one where the bot's own must go.
            await pools.registry.apply(change, push=False)
            targets = [p.id for p in change.pools if p.id != pool.id]
            try:
                stranded = [b.id for b in change.bots
                            if not await self._move_files(b, pool.id)]  # fmt: skip
                for pool_id in change.created:
                    # Each new pool gets a token of its own.
                    await pools.lifecycle.recreate(pools.registry.pools[pool_id])
            finally:
                for pool_id in targets:
                    await pools.registry.push(pool_id)
        if not stranded:
            await pools.lifecycle.remove_empty(change.pool(pool.id))
        log.warning("pool_evacuated", pool=pool.id, bots=len(change.bots), stranded=stranded)

    async def _move_files(self, bot: BotRecord, from_pool: str) -> bool:
        pools = self.pools
        try:
            await pools.runtime.move_bot_files(bot.id, from_pool, bot.pool_id)
            moved = True
        except OSError as exc:
            moved = False
            log.error("bot_files_not_moved", bot=bot.id, pool=from_pool, error=str(exc))
            change = await pools.store.update_bot(bot.id, run=RunState.STOPPED)
            await pools.registry.apply(change, push=False)  # pushed with the others
        pools.events.emit(
            "bot_moved" if moved else "bot_move_failed", pool=bot.pool_id, bot=bot.id,
            user=bot.user_id, reason="pool_lost", fromPool=from_pool, port=bot.port,
        )  # fmt: skip
        return moved

    async def finish_interrupted(self) -> None:
        """Bring each bot's directory to its pool, where a move to another pool (a lost
        pool's evacuation) was cut short, before any pool starts the bot without it."""
        for bot_id, where in (await self.pools.runtime.bot_locations()).items():
            bot = self.pools.registry.bots.get(bot_id)
            if bot is None or bot.pool_id in where or len(where) != 1:
                continue
            if await self.pools.runtime.inspect(where[0]) == RuntimeState.RUNNING:
                log.error("bot_files_in_running_pool", bot=bot_id, pool=where[0])
                continue  # something may still run it there: never take its files away
            await self.pools.runtime.move_bot_files(bot_id, where[0], bot.pool_id)
            log.warning("bot_move_completed", bot=bot_id, pool=bot.pool_id, source=where[0])
