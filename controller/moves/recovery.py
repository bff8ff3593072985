"""The one crash recovery of every move, run at start-up before any pool starts a bot.

Whatever move a crash cut short (an evacuation, a migration run, an import), a bot's
files are in exactly one of: its old pool, staging, its new pool, and while they move the
bot is held, in the pool the store has it in (controller/moves/transfer.py). So each held
bot's staged files go to that pool, and it is released there. A pool that was being
drained (an evacuation) and still has bots takes bots again: if it is still lost, the
monitor evacuates it again; an emptied one waits for cleanup like any empty pool. A pool
abandoned on a lost node (a failover) is left as it is, its bots held: the monitor takes
its failover up again, each bot staged anew from its backups. A bot the recovery cannot
release stays held, as the event `bot_move_failed` (reason `recovery_failed`) says, and
`land_later` tries again (controller/moves/stranded.py).

It runs before the controller serves: no agent is connected yet, and each is sent its
desired state as it is after the recovery when it connects. So files are placed without
waiting for an agent to apply a hold: none applies anything meanwhile. With pools on their
node's own disk (POOL_STORAGE=node) staged files can only land through their pool's agent:
such a bot stays held (its agent runs nothing of it) until `land_later`, once the
controller serves, has landed them and released it.

`land_later` runs as long as the controller: it takes up every held bot whose recovery
failed, at start-up or after any failed move (Transfer.recover), one bot at a time under
the moves' lock (a move waits for one bot's recovery at most), and only once its pool's
agent is there when the files go through it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import structlog

from controller.moves.guard import MoveGuard
from controller.moves.transfer import Transfer
from controller.records import BotRecord, PoolRecord

log = structlog.get_logger("controller.moves")


RETRY_INTERVAL = 2.0  # between two looks at the stranded bots (each has its own backoff)


async def recover_moves(transfer: Transfer, guard: MoveGuard) -> None:
    """Each held bot's staged files into its pool, and it released there; one whose files
    wait for its pool's agent, or whose recovery failed, is left to `land_later`."""
    registry, store = transfer.registry, transfer.pools.store
    async with guard.lock:
        for bot in [b for b in registry.bots.values() if b.held]:
            if registry.pools[bot.pool_id].abandoned:
                # Its pool was left on a lost node (a failover cut short): its directory is
                # that node's; the monitor's failover stages it from its backups again and
                # moves it. Nothing lands here, and it stays held until then.
                log.warning("move_recovery_left_to_failover", bot=bot.id, pool=bot.pool_id)
                continue
            if transfer.files is not None and transfer.staged(bot.id):
                transfer.stranded.add(bot, "its staged files wait for its pool's agent",
                                      failed=False)  # fmt: skip
                continue
            try:
                await transfer.place_staged(bot)
                await transfer.release(bot)
            except Exception as exc:
                # It stays held (nothing runs it); the rest start.
                transfer.stranded.add(bot, str(exc))
                continue
            log.warning("move_recovered", bot=bot.id, pool=bot.pool_id)
        for pool in [p for p in registry.pools.values() if p.draining and not p.abandoned]:
            left = len(registry.bots_in(pool.id))
            if left:
                await registry.apply(await store.set_draining(pool.id, False))
                log.warning("pool_draining_ended", pool=pool.id, bots=left)


Action = Literal["retry", "wait", "drop"]


def retry_action(bot: BotRecord | None, pool: PoolRecord | None, through_agent: bool,
                 agent_there: bool) -> Action:  # fmt: skip
    """What to do now of a stranded bot: `drop` it from the queue if it is gone, no longer
    held, or in a pool abandoned on a lost node (the failover moves it); `wait` while its
    files go through its pool's agent and that is not connected (no lock taken, no
    AGENT_TIMEOUT spent under it); else `retry` its recovery."""
    if bot is None or not bot.held or pool is None or pool.abandoned:
        return "drop"
    if through_agent and not agent_there:
        return "wait"
    return "retry"


async def land_later(transfer: Transfer, guard: MoveGuard) -> None:
    """As long as the controller runs: each stranded bot's recovery tried again when due."""
    while True:
        for bot_id in transfer.stranded.due():
            await retry(transfer, guard, bot_id)
        await asyncio.sleep(RETRY_INTERVAL)


async def retry(transfer: Transfer, guard: MoveGuard, bot_id: str) -> None:
    """One stranded bot's recovery, under the moves' lock; whatever fails is logged, and
    the bot stays in the queue."""
    try:
        if _look(transfer, bot_id)[1] == "wait":
            return  # not even the lock: its pool's agent is not there
        async with guard.lock:
            bot, action = _look(transfer, bot_id)  # again: a move may have ended meanwhile
            if action == "drop":
                transfer.stranded.done(bot_id)
            if action != "retry" or bot is None:
                return
            await transfer.recover(bot)  # kept in the queue (its backoff) if it fails
    except Exception as exc:
        log.error("move_recovery_failed", bot=bot_id, error=f"{type(exc).__name__}: {exc}")


def _look(transfer: Transfer, bot_id: str) -> tuple[BotRecord | None, Action]:
    registry = transfer.registry
    bot = registry.bots.get(bot_id)
    if bot is None:
        return None, "drop"
    live = registry.live.get(bot.pool_id)
    through_agent = transfer.files is not None and transfer.staged(bot_id)
    connected = live is not None and live.connected
    return bot, retry_action(bot, registry.pools.get(bot.pool_id), through_agent, connected)
