"""Failover: the bots of a pool on a lost node start elsewhere, each from its latest backup.

A pool whose node the runtime cannot reach (RuntimeState.UNREACHABLE: a multi-host
runtime's node down or cut off) may still run its bots there; nothing can confirm they
stopped. Its agent fences them (agent/fence.py) once cut off for its AGENT_FENCE_TIMEOUT,
so the monitor fails it over only after that plus AGENT_FENCE_MARGIN of silence
(controller/health/judge.py). Then:

- the pool is abandoned: its runtime is removed unconfirmed (Swarm never starts it again,
  and its node, once back, removes its task), and it is marked draining;
- each bot moves by the transfer every move takes (controller/moves/transfer.py), held at
  once (its agent has fenced it), but its files are not taken from its old pool (on the
  lost node's disk): its newest restore point of each database is staged instead, from the
  backup target or the bucket, which the controller reaches. An event per bot names the
  restore point and its age. A bot without any restore point is moved stopped, for an
  operator, rather than trading without its trade database (as an evacuation does);
- the old pool is left, empty and draining, for the cleanup (POOL_CLEANUP_GRACE): its
  directory is on the lost node, which the controller does not touch.
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
from controller.errors import Conflict
from controller.moves.guard import MoveGuard
from controller.moves.restore_points import FromBackups
from controller.moves.transfer import Transfer
from controller.pools.manager import PoolManager
from controller.records import BotRecord, PoolRecord
from controller.runtimes import RuntimeState
from controller.store.allocation import Placement

log = structlog.get_logger("controller.moves")


class Failover:
    def __init__(
        self, pools: PoolManager, placement: Placement, *, guard: MoveGuard, transfer: Transfer,
        backups: BackupService, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.registry = pools.registry
        self.placement = placement
        self.guard = guard
        self.transfer = transfer
        self.clock = clock
        self.backups = backups
        self.restore = FromBackups(backups, transfer.staging, clock)

    async def fail_over(self, pool: PoolRecord, heard_at: float) -> None:
        """Start every bot of a pool on a lost node elsewhere from its latest backup;
        `heard_at`: when its agent last spoke (its fence has stopped the bots since)."""
        # Another move (one pool of a drain, a migration) ends first: waited for, not a
        # failed recovery every few seconds while the lost node's bots stay down.
        async with self.guard.locked(f"pool {pool.id} fails over once the running move ends"):
            await self._fail_over(pool.id, heard_at)

    async def _fail_over(self, pool_id: str, heard_at: float) -> None:
        pools, registry = self.pools, self.registry
        with self.guard.pool_moving(pool_id):
            live = registry.live.get(pool_id)
            if live is not None and (live.connected or live.contact_ended > heard_at):
                # Back (a short partition): its bots may run again; judged afresh.
                raise Conflict(f"the agent of {pool_id} is back; its pool is judged again")
            await self._abandon(pool_id)
            # Missing from now on (its record says abandoned), it is still lost: failed
            # over again after a cut or a restart, never recreated.
            await pools.runtime.abandon(pool_id)
            await pools.lifecycle.finish_deletions(pool_id)
            pool = registry.pools[pool_id]
            placement = replace(self.placement, pooled=False) if pool.legacy_of else self.placement
            bots = registry.bots_in(pool_id)
            away = await self._away()
            for bot in bots:
                await self._move(bot, placement, heard_at, away)
        log.warning("pool_failed_over", pool=pool_id, bots=len(bots))

    async def _abandon(self, pool_id: str) -> None:
        """In one write every bot of the pool is held (its desired state runs none: bots are
        moved one at a time), it is marked abandoned and draining, and its agent's token is
        replaced, so an agent that comes back (its node up again before Swarm removes its
        task) is refused and stays fenced. One that got in meanwhile applies the hold
        before its connection is closed."""
        _, token_hash = self.pools.lifecycle.new_token()
        await self.registry.apply(await self.pools.store.abandon_pool(pool_id, token_hash))
        live = self.registry.live.get(pool_id)
        if live is None or live.ws is None:
            return
        try:
            if live.connected:
                await self.transfer.wait_applied(pool_id, lambda seen: not seen.bots)
        finally:
            await live.ws.close(code=4403, message=b"pool abandoned on a lost node")

    async def _move(
        self, bot: BotRecord, placement: Placement, heard_at: float, away: set[str]
    ) -> None:
        transfer, source = self.transfer, bot.pool_id
        transfer.check_targets(bot.id, placement)
        points: list[RestorePoint] = []
        # Staged already (its old pool's agent exported it, then the move was cut short):
        # that directory is newer than any backup and moves as it is.
        staged = transfer.staged(bot.id)
        bot = await transfer.hold(bot, fenced=True)
        try:
            points = [] if staged else await self.restore.stage(bot)
            if not points and not staged:  # never trades without its trade database
                await self.registry.apply(
                    await self.pools.store.update_bot(bot.id, run=RunState.STOPPED)
                )
            bot = await transfer.relocate(bot, placement, staged=staged or bool(points),
                                          avoid=away)  # fmt: skip
        except Exception:
            bot = self.registry.bots[bot.id]
            # Still in the abandoned pool, it stays held there (nothing may run it there)
            # until the next round moves it; relocated, it is released where it is now.
            if bot.pool_id != source:
                await (transfer.recover(bot) if staged or points else transfer.release(bot))
            elif not staged:  # copies of its backups: staged afresh next round (not an export)
                await asyncio.to_thread(shutil.rmtree, transfer.staging / bot.id, True)
            raise
        bot = await transfer.release(bot)
        point = await self.restore.fields(points, heard_at)
        if staged:  # its own directory, as its old pool's agent sent it: nothing lost
            point = {"restorePoint": None, "staged": True, "lostSeconds": 0}
        moved = bool(points) or staged
        self.pools.events.emit(
            "bot_failed_over" if moved else "bot_move_failed", pool=bot.pool_id, bot=bot.id,
            user=bot.user_id, reason="node_lost" if moved else "no_backup", fromPool=source,
            port=bot.port, **point,
        )  # fmt: skip
        log.warning("bot_failed_over", bot=bot.id, source=source, target=bot.pool_id, **point)

    async def _away(self) -> set[str]:
        """Pools no bot of a lost pool may go to, perhaps on the lost node too (placement
        does not know nodes): every pool with a free slot that is suspect (its agent gone,
        silent, or not connected since the controller started) or that the runtime does
        not say runs. Decided before the first bot moves: a pool this failover makes goes
        to a ready node, and takes the next bots whether its agent is there yet or not."""
        away: set[str] = set()
        for pool in list(self.registry.pools.values()):
            if pool.draining or pool.removing or pool.used >= pool.capacity:
                continue  # no target anyway
            suspect = self.pools.sessions.is_suspect(pool.id)
            if suspect or await self.pools.runtime.inspect(pool.id) != RuntimeState.RUNNING:
                away.add(pool.id)
        return away
