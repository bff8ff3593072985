"""One pool's part of an upgrade run, by either method, each step saved in the store.

`recreate` (in place; its bots keep their directories, ports and tokens' slots): its old
container is stopped (supervisord stops each bot) and removed, and confirmed gone before
the new one is created (principle 4: at most one running copy of a bot); then every bot
is verified through its API on the new image. A pool whose bots do not all answer within
the timeout is rolled back the same way to its old image, with the same bot directories.
`move`: its bots move one at a time into a fresh pool on the new image
(controller/upgrade/moving.py). While a pool is replaced the health monitor leaves it
alone and its bots' owners' changes wait (409), as during a move.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from controller.errors import FtpoolError
from controller.moves.transfer import StepFailed, Transfer
from controller.pools.manager import PoolManager
from controller.records import BotRecord
from controller.runtimes import RuntimeState
from controller.runtimes.base import ImageInfo
from controller.upgrade.moving import PoolMove, runs_and_connected
from controller.upgrade.plan import (
    FAILED,
    MOVE,
    REPLACING,
    ROLLED_BACK,
    ROLLING_BACK,
    STOPPING,
    UPGRADED,
    VERIFYING,
)
from controller.upgrade.state import PoolUpgrade, UpgradeRun

log = structlog.get_logger("controller.upgrade")
# A pool rolled back to the image it ran well on gets at least this long to come back.
ROLLBACK_TIMEOUT = 300.0


class PoolUpgrader:
    def __init__(self, pools: PoolManager, transfer: Transfer, mover: PoolMove) -> None:
        self.pools = pools
        self.clock = mover.clock  # one clock for the whole upgrade
        self.registry = pools.registry
        self.runtime = pools.runtime
        self.transfer = transfer
        self.mover = mover

    async def upgrade(self, run: UpgradeRun, entry: PoolUpgrade, timeout: float) -> bool:
        """Upgrade one pool; a failure rolls it back. True if it runs the new image."""
        target = ImageInfo(run.to_ref, run.to_id)
        self.pools.lifecycle.upgrading.add(entry.pool)
        try:
            entry.started_at = started = self.clock()
            if entry.method == MOVE:
                return await self._move(run, entry, target, timeout)
            try:
                await self.step(run, entry, STOPPING)
                replacing = lambda: self.step(run, entry, REPLACING)  # noqa: E731
                await self.replace(entry.pool, target.ref, replacing)
                await self.step(run, entry, VERIFYING)
                entry.bot_downtime_s = await self._verify(entry.pool, target, started, timeout)
            except (FtpoolError, OSError) as exc:
                await self.rollback(run, entry, f"{exc}", timeout)
                return False
            entry.downtime_s = round(self.clock() - started, 2)
            entry.finished_at = self.clock()
            await self.step(run, entry, UPGRADED)
            self.pools.events.emit("pool_upgraded", pool=entry.pool, reason=run.id,
                                   image=target.ref, downtimeSeconds=entry.downtime_s)  # fmt: skip
            return True
        finally:
            self.pools.lifecycle.upgrading.discard(entry.pool)

    async def _move(
        self, run: UpgradeRun, entry: PoolUpgrade, target: ImageInfo, timeout: float
    ) -> bool:
        """The `move` method: the pool's bots into a fresh pool on the new image; a bot that
        does not answer there is back in the old pool, and the pool's move stops."""
        step = lambda s: self.step(run, entry, s)  # noqa: E731
        try:
            await self.mover.move_all(entry, target, timeout, step)
        except (FtpoolError, OSError) as exc:
            log.error("upgrade_pool_failed", pool=entry.pool, error=str(exc))
            entry.reason, entry.finished_at = str(exc), self.clock()
            await self.step(run, entry, ROLLED_BACK)
            self.pools.events.emit("pool_upgrade_rolled_back", pool=entry.pool,
                                   reason=entry.reason, image=entry.from_ref)  # fmt: skip
            return False
        entry.finished_at = self.clock()
        entry.downtime_s = max(entry.bot_downtime_s.values(), default=0.0)
        await self.step(run, entry, UPGRADED)
        self.pools.events.emit("pool_upgraded", pool=entry.pool, reason=run.id,
                               image=target.ref, downtimeSeconds=entry.downtime_s)  # fmt: skip
        return True

    async def rollback(self, run: UpgradeRun, entry: PoolUpgrade, why: str, timeout: float) -> None:
        """The pool (a moved one's fresh pool) goes back to its old image, recreated with its
        bots' directories as they are."""
        pool_id = where(entry)
        log.error("upgrade_pool_failed", pool=pool_id, error=why)
        entry.reason = why
        await self.step(run, entry, ROLLING_BACK)
        old = ImageInfo(entry.from_ref, entry.from_id)
        try:
            started = self.clock()
            await self.replace(pool_id, await self.old_ref(old))
            await self._verify(pool_id, old, started, max(timeout, ROLLBACK_TIMEOUT))
        except (FtpoolError, OSError) as exc:
            entry.reason = f"{why}; rollback: {exc}"
            entry.finished_at = self.clock()
            await self.step(run, entry, FAILED)
            self.pools.events.emit("pool_upgrade_failed", pool=entry.pool, reason=entry.reason)
            return
        entry.finished_at = self.clock()
        await self.step(run, entry, ROLLED_BACK)
        self.pools.events.emit("pool_upgrade_rolled_back", pool=entry.pool, reason=why,
                               image=old.ref)  # fmt: skip

    # -- the recreate method's steps ------------------------------------------------------

    async def replace(
        self, pool_id: str, image: str,
        replacing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        """The pool's container, recreated from `image` on the same directories: the old
        one stops (its bots first) and is confirmed gone before the new one is made. (A
        swarm pool's service is updated in place instead: the same node, volume and token.)"""
        await self.runtime.stop(pool_id)
        if replacing is not None:
            await replacing()
        if await self.runtime.restart_on(pool_id, image):
            self.pools.lifecycle.runtime_changes += 1  # the images' census asks again
            return
        await self.runtime.discard(pool_id)
        state = await self.runtime.inspect(pool_id)
        if state != RuntimeState.MISSING:
            raise StepFailed(f"the old container of {pool_id} is still there ({state})")
        await self.pools.lifecycle.recreate(self.registry.pools[pool_id], image)

    async def _verify(
        self, pool_id: str, image: ImageInfo, since: float, timeout: float
    ) -> dict[str, float]:
        """The pool runs `image`, its new agent is connected, and every bot answers its API
        (a stopped bot: is stopped), within `timeout` seconds of `since`; returns when each
        bot first did, in seconds after `since`."""
        deadline = since + timeout
        await runs_and_connected(self.pools, pool_id, image, since, timeout, self.clock)
        bots = self.registry.bots_in(pool_id)
        left = max(1.0, deadline - self.clock())

        async def answered(bot: BotRecord) -> float:
            await self.transfer.verify(bot, left)
            return round(self.clock() - since, 2)

        results = await asyncio.gather(*(answered(b) for b in bots), return_exceptions=True)
        failed = [f"{b.id}: {r}" for b, r in zip(bots, results, strict=True)
                  if isinstance(r, BaseException)]  # fmt: skip
        if failed:
            raise StepFailed("; ".join(failed))
        return {b.id: r for b, r in zip(bots, results, strict=True) if isinstance(r, float)}

    async def old_ref(self, old: ImageInfo) -> str:
        """Its old tag if that still names the old image, else the image's id."""
        with contextlib.suppress(FtpoolError):
            found = await self.runtime.resolve_image(old.ref)
            if found is not None and found.id == old.id:
                return old.ref
        return old.id

    # -- the run's record -----------------------------------------------------------------

    async def step(self, run: UpgradeRun, entry: PoolUpgrade, step: str) -> None:
        entry.step = step
        log.info("upgrade_step", run=run.id, pool=entry.pool, step=step)
        await self.save(run)

    async def save(self, run: UpgradeRun) -> None:
        await self.pools.store.save_upgrade(run.id, run.started_at, run.finished, run.dump())


def where(entry: PoolUpgrade) -> str:
    """The pool the entry's bots are in once upgraded: a moved pool's fresh one."""
    return entry.to_pool if entry.method == MOVE and entry.to_pool else entry.pool
