"""The one crash recovery of every move, run at start-up before any pool starts a bot.

Whatever move a crash cut short (an evacuation, a migration run, an import), a bot's
files are in exactly one of: its old pool, staging, its new pool, and while they move the
bot is held, in the pool the store has it in (controller/moves/transfer.py). So each held
bot's staged files go to that pool, and it is released there. A pool that was being
drained (an evacuation) and still has bots takes bots again: if it is still lost, the
monitor evacuates it again; an emptied one waits for cleanup like any empty pool. A pool
abandoned on a lost node (a failover) is left as it is, its bots held: the monitor takes
its failover up again, each bot staged anew from its backups. A bot the recovery cannot
release stays held, as the event `bot_move_failed` (reason `recovery_failed`) says.

It runs before the controller serves: no agent is connected yet, and each is sent its
desired state as it is after the recovery when it connects. So files are placed without
waiting for an agent to apply a hold: none applies anything meanwhile. With pools on their
node's own disk (POOL_STORAGE=node) staged files can only land through their pool's agent:
such a bot stays held (its agent runs nothing of it) until `land_later`, once the
controller serves, has landed them and released it.
"""

from __future__ import annotations

import asyncio

import structlog

from controller.errors import FtpoolError
from controller.moves.guard import MoveGuard
from controller.moves.transfer import Transfer

log = structlog.get_logger("controller.moves")


RETRY_INTERVAL = 10.0  # between two attempts to land a bot's staged files through its agent


async def recover_moves(transfer: Transfer, guard: MoveGuard) -> list[str]:
    """The held bots whose staged files wait for their pool's agent (for `land_later`)."""
    registry, store, events = transfer.registry, transfer.pools.store, transfer.pools.events
    later: list[str] = []
    async with guard.lock:
        for bot in [b for b in registry.bots.values() if b.held]:
            if registry.pools[bot.pool_id].abandoned:
                # Its pool was left on a lost node (a failover cut short): its directory is
                # that node's; the monitor's failover stages it from its backups again and
                # moves it. Nothing lands here, and it stays held until then.
                log.warning("move_recovery_left_to_failover", bot=bot.id, pool=bot.pool_id)
                continue
            if transfer.files is not None and transfer.staged(bot.id):
                later.append(bot.id)
                continue
            try:
                await transfer.place_staged(bot)
                await transfer.release(bot)
            except (FtpoolError, OSError) as exc:
                # It stays held (nothing runs it) for an operator; the rest start.
                log.error("move_recovery_failed", bot=bot.id, pool=bot.pool_id, error=str(exc))
                events.emit("bot_move_failed", pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                            reason="recovery_failed", held=True, error=str(exc))  # fmt: skip
                continue
            log.warning("move_recovered", bot=bot.id, pool=bot.pool_id)
        for pool in [p for p in registry.pools.values() if p.draining and not p.abandoned]:
            left = len(registry.bots_in(pool.id))
            if left:
                await registry.apply(await store.set_draining(pool.id, False))
                log.warning("pool_draining_ended", pool=pool.id, bots=left)
    return later


async def land_later(transfer: Transfer, guard: MoveGuard, bot_ids: list[str]) -> None:
    """Each bot's staged files land in its pool through its agent, and it is released
    there; tried again every RETRY_INTERVAL until each has (its pool starting, say)."""
    left = list(bot_ids)
    while left:
        async with guard.lock:
            for bot_id in list(left):
                bot = transfer.registry.bots.get(bot_id)
                pool = transfer.registry.pools.get(bot.pool_id) if bot is not None else None
                # A pool abandoned since (its node lost): the failover moves the bot.
                if bot is not None and bot.held and pool is not None and not pool.abandoned:
                    try:
                        await transfer.recover(bot)
                    except (FtpoolError, OSError) as exc:
                        log.error("move_recovery_failed", bot=bot_id, pool=bot.pool_id,
                                  error=str(exc), retry=RETRY_INTERVAL)  # fmt: skip
                        continue
                left.remove(bot_id)
        if left:
            await asyncio.sleep(RETRY_INTERVAL)
