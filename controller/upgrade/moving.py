"""The `move` method of an upgrade: a pool's bots move into a fresh pool on the new image.

For one pool: a fresh pool is made on the new image (the old one's capacity, its own port
block: each bot gets a new port), its agent is connected and the old pool is marked
draining (nothing new is placed in it). Then each bot moves by the transfer every move
takes (controller/moves/transfer.py): held and confirmed stopped in the old pool, staged,
relocated into the fresh pool, landed, released, and verified through its API there; so a
bot is down only while it moves, and never runs twice. A bot that does not answer on the
new image is moved back the same way, and the pool's move stops (rolled_back: its other
bots stay where they are, each running). Once the old pool is empty it is removed.

A controller killed meanwhile: the moves' crash recovery puts each held bot in the pool
the store has it in and releases it (controller/moves/recovery.py), then recover() here
finishes or undoes the pool by plan.move_recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from controller.errors import FtpoolError
from controller.moves.transfer import StepFailed, Transfer
from controller.pools.manager import PoolManager
from controller.records import BotRecord, PoolRecord
from controller.runtimes.base import ImageInfo
from controller.store.allocation import Placement
from controller.upgrade.plan import CREATING, MOVING, move_order, move_recovery
from controller.upgrade.state import PoolUpgrade

log = structlog.get_logger("controller.upgrade")
AGENT_TIMEOUT = 120.0  # for a fresh pool's agent to connect
Step = Callable[[str], Awaitable[None]]
Clock = Callable[[], float]  # seconds since the epoch, as time.time (and agents' connected_at)


async def runs_and_connected(
    pools: PoolManager, pool_id: str, image: ImageInfo | None, since: float, timeout: float,
    clock: Clock = time.time,
) -> None:  # fmt: skip
    """The pool runs `image` (None: the configured one, not checked) and its agent
    connected after `since`, within `timeout` seconds of it by `clock` (StepFailed if not)."""
    now = await pools.runtime.image_of(pool_id) if image is not None else None
    if image is not None and (now is None or now.id != image.id):
        raise StepFailed(f"{pool_id} runs {now.ref if now else 'nothing'}, not {image.ref}")
    while True:
        live = pools.registry.live.get(pool_id)
        if live is not None and live.connected and live.connected_at >= since:
            return
        if clock() > since + timeout:
            raise StepFailed(f"the agent of {pool_id} did not connect within {timeout:g} s")
        await asyncio.sleep(0.25)


class PoolMove:
    def __init__(
        self, pools: PoolManager, transfer: Transfer, placement: Placement,
        clock: Clock = time.time,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.clock = clock
        self.registry = pools.registry
        self.transfer = transfer
        self.placement = placement

    async def fresh_pool(self, old: PoolRecord) -> tuple[PoolRecord, str]:
        """A new, empty pool like `old` (its owner, capacity, launch mode and market-data
        switch), draining (only this upgrade puts bots in it), and its agent's token; its
        runtime is not made yet."""
        lifecycle = self.pools.lifecycle
        token, token_hash = lifecycle.new_token()
        change = await self.pools.store.new_pool(
            self.placement, token_hash, old.owner, old.capacity, old.launch, old.market_data
        )
        await self.registry.apply(change)
        lifecycle.upgrading.add(change.pools[0].id)  # not judged nor cleaned up while it fills
        return change.pools[0], token

    async def start(self, pool: PoolRecord, token: str, image: ImageInfo | None) -> None:
        """The fresh pool's runtime, on `image` (None: the configured one, as a node's
        drain moves pools), with its agent connected."""
        since = self.clock()
        await self.pools.lifecycle.create_runtime(pool, token, image.ref if image else "")
        await runs_and_connected(self.pools, pool.id, image, since, AGENT_TIMEOUT, self.clock)

    async def move_all(
        self, entry: PoolUpgrade, image: ImageInfo | None, timeout: float, step: Step
    ) -> None:
        """Make the fresh pool, move every bot of the old one into it, remove the old one;
        StepFailed if a bot did not answer there (it is back in the old pool then)."""
        old = self.registry.pools[entry.pool]
        fresh, token = await self.fresh_pool(old)
        entry.to_pool = fresh.id
        await step(CREATING)  # saved: a restart knows the fresh pool
        try:
            await self.start(fresh, token, image)
            await self.registry.apply(await self.pools.store.set_draining(old.id, True))
            await step(MOVING)
            for bot in move_order(self.registry.bots_in(old.id)):
                entry.bot_downtime_s[bot.id] = await self.move_one(bot, fresh.id, old.id, timeout)
                await step(MOVING)  # saved: how far it got
        except (FtpoolError, OSError):
            await self.end(entry)
            raise
        await self.end(entry)

    async def move_one(self, bot: BotRecord, into: str, back: str, timeout: float) -> float:
        """Move one bot into `into` and verify it there; returns its downtime in seconds,
        from its hold to its first answer. A bot that does not answer goes back to `back`
        (StepFailed)."""
        transfer = self.transfer
        started = self.clock()
        transfer.can_hold(into)
        try:
            bot = await transfer.hold(bot)
            await transfer.stage(bot)
        except (FtpoolError, OSError):
            await transfer.recover(self.registry.bots[bot.id])  # nothing moved: it runs again
            raise
        try:
            bot = await transfer.relocate(bot, self.placement, into=into)
            bot = await transfer.release(bot)
            await transfer.verify(bot, timeout)
        except (FtpoolError, OSError) as exc:
            await self.move_back(self.registry.bots[bot.id], back)
            raise StepFailed(f"{bot.id}: {exc}; it is back in {back}") from None
        log.info("bot_upgraded", bot=bot.id, pool=into, port=bot.port)
        return round(self.clock() - started, 2)

    async def move_back(self, bot: BotRecord, back: str) -> None:
        transfer = self.transfer
        if bot.pool_id == back:  # it never left: its staged files go back, it runs again
            await transfer.recover(bot)
            return
        try:
            bot = await transfer.hold(bot)
            await transfer.stage(bot)
            bot = await transfer.relocate(bot, self.placement, into=back)
            await transfer.release(bot)
        except (FtpoolError, OSError) as exc:
            # Held where it is now (its files perhaps staged, its new pool's agent gone):
            # its recovery is tried again there until it runs (controller/moves/stranded.py).
            transfer.stranded.add(self.registry.bots[bot.id], str(exc))
            raise

    async def end(self, entry: PoolUpgrade) -> None:
        """After the bots moved (or some did): what `move_recovery` says, as after a
        restart: an emptied old pool goes, an empty fresh one too, and any pool left with
        bots takes bots again."""
        self.pools.lifecycle.upgrading.discard(entry.to_pool)
        old = self.registry.pools.get(entry.pool)
        fresh = self.registry.pools.get(entry.to_pool) if entry.to_pool else None
        action, _ = move_recovery(
            MOVING,
            len(self.registry.bots_in(entry.pool)) if old else 0,
            len(self.registry.bots_in(entry.to_pool)) if fresh else 0,
        )
        for pool in (old, fresh):
            if pool is None:
                continue
            gone = (action == "remove_old" and pool is old) or (
                action == "remove_new" and pool is fresh
            )
            if gone:
                await self.pools.lifecycle.remove_empty(pool)
            elif pool.draining:
                await self.registry.apply(await self.pools.store.set_draining(pool.id, False))

    async def recover(self, entry: PoolUpgrade) -> None:
        """A pool an interrupted run left mid-move, after the moves' crash recovery."""
        old = len(self.registry.bots_in(entry.pool)) if entry.pool in self.registry.pools else 0
        fresh = entry.to_pool in self.registry.pools
        new = len(self.registry.bots_in(entry.to_pool)) if fresh else 0
        action, entry.step = move_recovery(entry.step, old, new)
        if action == "keep":
            return
        try:
            await self.end(entry)
        except (FtpoolError, OSError) as exc:
            log.error("upgrade_move_recovery_failed", pool=entry.pool, error=str(exc))
        entry.reason = {
            "remove_old": "the controller stopped after its bots moved; old pool removed",
            "remove_new": "the controller stopped before a bot moved; fresh pool removed",
            "keep_both": f"the controller stopped mid-move: {new} bot(s) in {entry.to_pool}"
            f" on the new image, {old} left in {entry.pool}; run it again to go on",
        }[action]
