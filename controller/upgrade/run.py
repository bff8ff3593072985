"""Upgrade runs: each selected pool moved to a new image, pool by pool, by one of two
methods: `move` (its bots move one at a time into a fresh pool on the new image,
controller/upgrade/moving.py) or `recreate`, described here.

For one pool (recreate in place; its bots keep their directories, ports and tokens'
slots): its old container is stopped (supervisord stops each bot) and removed, and
confirmed gone before the new one is created (principle 4: at most one running copy of a
bot); then every bot is verified through its API on the new image. A pool whose bots do
not all answer within the timeout is rolled back the same way to its old image, with the
same bot directories. While a pool is replaced the health monitor leaves it alone and its
bots' owners' changes wait (409), as during a move.

A canary run upgrades its first N pools, waits `soak` seconds, and stops (rolling back
the canary pools that turned unhealthy) unless all their bots are still well. A pool
that fails stops the run. Each step is saved in the store (controller/upgrade/state.py);
a controller that died mid-run rolls the pool it was replacing back to its old image at
its next start, before any pool is adopted (recover), and the run ends "interrupted":
run it again to go on (pools already on the new image are skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import structlog

from controller.errors import Conflict, FtpoolError, NotFound
from controller.moves.guard import MoveGuard
from controller.moves.transfer import StepFailed, Transfer
from controller.pools.manager import PoolManager
from controller.records import BotRecord
from controller.runtimes import RuntimeState
from controller.runtimes.base import ImageInfo
from controller.store.allocation import Placement
from controller.upgrade.moving import PoolMove, runs_and_connected
from controller.upgrade.plan import (
    DEFAULT_METHOD,
    FAILED,
    IN_FLIGHT,
    MOVE,
    MOVE_IN_FLIGHT,
    NOT_STARTED,
    PENDING,
    REPLACING,
    ROLLED_BACK,
    ROLLING_BACK,
    STOPPING,
    UPGRADED,
    VERIFYING,
    Plan,
    PoolView,
    Selection,
    plan_upgrade,
    pool_method,
    recovery_action,
    run_outcome,
    unhealthy_bots,
)
from controller.upgrade.state import PoolUpgrade, UpgradeRun

log = structlog.get_logger("controller.upgrade")
# A pool rolled back to the image it ran well on gets at least this long to come back.
ROLLBACK_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class UpgradeOptions:
    image: str = ""  # "" : the configured POOL_IMAGE
    selection: Selection = Selection()
    canary: int = 0
    soak: float = 0.0
    concurrency: int = 1
    pause: float = 0.0
    timeout: float = 180.0  # for a pool's bots to answer on the new image
    method: str = DEFAULT_METHOD  # "recreate" or "move" (plan.METHODS)

    def to_json(self) -> dict[str, object]:
        s = self.selection
        return {"image": self.image, "method": self.method, "pools": sorted(s.pools),
                "users": sorted(s.users), "bots": sorted(s.bots), "canary": self.canary,
                "soak": self.soak,
                "concurrency": self.concurrency, "pause": self.pause,
                "timeout": self.timeout}  # fmt: skip


class Upgrader:
    def __init__(
        self, pools: PoolManager, transfer: Transfer, guard: MoveGuard, placement: Placement,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.mover = PoolMove(pools, transfer, replace(placement, pooled=True))
        self.registry = pools.registry
        self.runtime = pools.runtime
        self.transfer = transfer
        self.guard = guard
        self.sleep = sleep
        self.runs: list[UpgradeRun] = []
        self._task: asyncio.Task[None] | None = None

    # -- start-up and shutdown ---------------------------------------------------------

    async def recover(self) -> None:
        """Load the runs; a run a crash cut short ends here: the pool it was replacing goes
        back to its old image (nothing of its new one was verified), the rest stay."""
        self.runs = [UpgradeRun.load(doc) for doc in await self.pools.store.upgrades()]
        for run in [r for r in self.runs if not r.finished]:
            for entry in run.pools:
                await self._recover_pool(entry)
            run.outcome, run.finished_at = "interrupted", time.time()
            run.reason = "the controller stopped during the run; run it again to go on"
            await self._save(run)
            log.warning("upgrade_interrupted", run=run.id)

    async def _recover_pool(self, entry: PoolUpgrade) -> None:
        if entry.step == PENDING:
            entry.step = NOT_STARTED
            return
        if entry.method == MOVE and entry.step in MOVE_IN_FLIGHT:
            # Its held bots were put back where the store has them by the moves' recovery.
            await self.mover.recover(entry)
            entry.finished_at = time.time()
            return
        pool_id = self._where(entry)
        if pool_id not in self.registry.pools:
            return
        old = ImageInfo(entry.from_ref, entry.from_id)
        now = await self.runtime.image_of(pool_id)
        if recovery_action(entry.step, now, old) == "keep":
            if entry.step == ROLLING_BACK:  # its old image runs again
                entry.step, entry.finished_at = ROLLED_BACK, time.time()
            elif entry.step in IN_FLIGHT:  # its old container is still there
                entry.step, entry.reason = NOT_STARTED, "interrupted before it was replaced"
            return
        try:
            await self._replace(pool_id, await self._old_ref(old))
        except FtpoolError as exc:
            entry.step, entry.reason = FAILED, f"not rolled back after a restart: {exc}"
            log.error("upgrade_recovery_failed", pool=pool_id, error=str(exc))
            return
        entry.step, entry.finished_at = ROLLED_BACK, time.time()
        entry.reason = f"the controller stopped mid-upgrade; back on {old.ref}"
        log.warning("upgrade_pool_recovered", pool=pool_id, image=old.ref)

    async def shutdown(self) -> None:
        """Stop a run in flight; the next start rolls back the pool it was replacing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- planning ---------------------------------------------------------------------

    def current(self) -> UpgradeRun | None:
        return next((r for r in reversed(self.runs) if not r.finished), None)

    async def target(self, image: str = "") -> ImageInfo:
        if not self.runtime.has_images:
            raise Conflict(f"the {self.runtime.name} runtime runs no images; nothing to upgrade")
        found = await self.runtime.resolve_image(image)
        if found is None:
            raise NotFound(f"no image {image or 'POOL_IMAGE'} on the Docker host; pull it first")
        return found

    async def plan(self, options: UpgradeOptions) -> Plan:
        target = await self.target(options.image)
        views = []
        for pool in sorted(self.registry.pools.values(), key=lambda p: p.num):
            bots = self.registry.bots_in(pool.id)
            busy = ""
            if pool.draining or any(b.held for b in bots):
                busy = "a move has its bots; upgrade it when the move is done"
            views.append(PoolView(pool.id, await self.runtime.image_of(pool.id),
                                  frozenset(b.id for b in bots),
                                  frozenset(b.user_id for b in bots), busy))  # fmt: skip
        return plan_upgrade(views, target, options.selection, options.canary)

    # -- running ------------------------------------------------------------------------

    async def start(self, options: UpgradeOptions) -> UpgradeRun:
        """Plan and start a run in the background; its progress is in `runs`."""
        if self.current() is not None:
            raise Conflict("an upgrade is running; see GET /api/pool/upgrade")
        plan = await self.plan(options)
        run = UpgradeRun(
            id=f"upgrade-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}",
            to_ref=plan.target.ref, to_id=plan.target.id, options=options.to_json(),
            pools=[PoolUpgrade(p.id, p.image.ref, p.image.id, len(p.bots), n < plan.canary,
                               method=pool_method(options.method, self._legacy(p.id)))
                   for n, p in enumerate(plan.pools) if p.image is not None],
        )  # fmt: skip
        self.runs.append(run)
        await self._save(run)  # saved before anything changes
        self._task = asyncio.create_task(self._execute(run, options), name="upgrade")
        return run

    @staticmethod
    def _where(entry: PoolUpgrade) -> str:
        """The pool the entry's bots are in once upgraded: a moved pool's fresh one."""
        return entry.to_pool if entry.method == MOVE and entry.to_pool else entry.pool

    def _legacy(self, pool_id: str) -> bool:
        return self.registry.pools[pool_id].legacy_of is not None

    async def _execute(self, run: UpgradeRun, options: UpgradeOptions) -> None:
        log.info("upgrade_started", run=run.id, image=run.to_ref, pools=len(run.pools))
        canary_failed = False
        try:
            canary = [p for p in run.pools if p.canary]
            rest = [p for p in run.pools if not p.canary]
            ok = await self._batches(run, canary, options)
            if ok and canary and options.soak > 0:
                ok = await self._soak(run, canary, options)
            canary_failed = not ok and bool(canary)
            if ok:
                await self._batches(run, rest, options)
        except Exception as exc:  # recorded, then the run ends: the pools say where they are
            log.exception("upgrade_failed", run=run.id)
            run.reason = f"unexpected error: {exc}"
        for entry in run.pools:
            if entry.step == PENDING:
                entry.step = NOT_STARTED
        run.outcome = run_outcome((p.step for p in run.pools), canary_failed)
        if run.reason.startswith("unexpected"):
            run.outcome = "failed"
        run.finished_at = time.time()
        await self._save(run)
        self.pools.events.emit("upgrade_finished", reason=run.outcome, run=run.id,
                               image=run.to_ref)  # fmt: skip
        log.info("upgrade_finished", run=run.id, outcome=run.outcome, reason=run.reason)

    async def _batches(
        self, run: UpgradeRun, entries: list[PoolUpgrade], options: UpgradeOptions
    ) -> bool:
        """Upgrade `entries`, `concurrency` pools at a time, pausing between batches; False
        (and the run stops) once a pool failed."""
        size = max(1, options.concurrency)
        for n in range(0, len(entries), size):
            if n and options.pause > 0:
                await self.sleep(options.pause)
            batch = [e for e in entries[n : n + size] if e.pool in self.registry.pools]
            # Never beside an evacuation or a migration, which move bots between pools.
            async with self.guard.lock:
                with contextlib.ExitStack() as stack:
                    for entry in batch:
                        stack.enter_context(self.guard.pool_moving(entry.pool))
                    results = await asyncio.gather(*(self._pool(run, e, options) for e in batch))
            if not all(results):
                failed = [e.pool for e, ok in zip(batch, results, strict=True) if not ok]
                run.reason = f"stopped: pool(s) {', '.join(failed)} did not come up healthy"
                return False
        return True

    async def _pool(self, run: UpgradeRun, entry: PoolUpgrade, options: UpgradeOptions) -> bool:
        """Upgrade one pool; a failure rolls it back. True if it runs the new image."""
        target = ImageInfo(run.to_ref, run.to_id)
        self.pools.lifecycle.upgrading.add(entry.pool)
        try:
            entry.started_at = started = time.time()
            if entry.method == MOVE:
                return await self._move_pool(run, entry, target, options)
            try:
                await self._step(run, entry, STOPPING)
                replacing = lambda: self._step(run, entry, REPLACING)  # noqa: E731
                await self._replace(entry.pool, target.ref, replacing)
                await self._step(run, entry, VERIFYING)
                entry.bot_downtime_s = await self._verify(
                    entry.pool, target, started, options.timeout
                )
            except (FtpoolError, OSError) as exc:
                await self._rollback(run, entry, f"{exc}", options)
                return False
            entry.downtime_s = round(time.time() - started, 2)
            entry.finished_at = time.time()
            await self._step(run, entry, UPGRADED)
            self.pools.events.emit("pool_upgraded", pool=entry.pool, reason=run.id,
                                   image=target.ref, downtimeSeconds=entry.downtime_s)  # fmt: skip
            return True
        finally:
            self.pools.lifecycle.upgrading.discard(entry.pool)

    async def _move_pool(
        self, run: UpgradeRun, entry: PoolUpgrade, target: ImageInfo, options: UpgradeOptions
    ) -> bool:
        """The `move` method: the pool's bots into a fresh pool on the new image; a bot that
        does not answer there is back in the old pool, and the pool's move stops."""
        step = lambda s: self._step(run, entry, s)  # noqa: E731
        try:
            await self.mover.move_all(entry, target, options.timeout, step)
        except (FtpoolError, OSError) as exc:
            log.error("upgrade_pool_failed", pool=entry.pool, error=str(exc))
            entry.reason, entry.finished_at = str(exc), time.time()
            await self._step(run, entry, ROLLED_BACK)
            self.pools.events.emit("pool_upgrade_rolled_back", pool=entry.pool,
                                   reason=entry.reason, image=entry.from_ref)  # fmt: skip
            return False
        entry.finished_at = time.time()
        entry.downtime_s = max(entry.bot_downtime_s.values(), default=0.0)
        await self._step(run, entry, UPGRADED)
        self.pools.events.emit("pool_upgraded", pool=entry.pool, reason=run.id,
                               image=target.ref, downtimeSeconds=entry.downtime_s)  # fmt: skip
        return True

    async def _soak(
        self, run: UpgradeRun, canary: list[PoolUpgrade], options: UpgradeOptions
    ) -> bool:
        """Wait `soak` seconds; the canary pools whose bots are not all well go back."""
        await self.sleep(options.soak)
        sick: dict[str, list[str]] = {}
        for entry in canary:
            pool_id = self._where(entry)
            live = self.registry.live.get(pool_id)
            connected = live is not None and live.connected
            bad = unhealthy_bots(self.registry.bots_in(pool_id), live.bots if live else {},
                                 connected)  # fmt: skip
            if bad:
                sick[entry.pool] = bad  # keyed by the entry
        if not sick:
            return True
        async with self.guard.lock:
            for entry in canary:
                if entry.pool in sick:
                    pool_id = self._where(entry)  # a moved pool's fresh one goes back
                    self.pools.lifecycle.upgrading.add(pool_id)
                    try:
                        with self.guard.pool_moving(pool_id):
                            why = f"unhealthy after the soak: {', '.join(sick[entry.pool])}"
                            await self._rollback(run, entry, why, options)
                    finally:
                        self.pools.lifecycle.upgrading.discard(pool_id)
        run.reason = "canary unhealthy after the soak: " + "; ".join(
            f"{pool}: {', '.join(bots)}" for pool, bots in sick.items()
        )
        return False

    async def _rollback(
        self, run: UpgradeRun, entry: PoolUpgrade, why: str, options: UpgradeOptions
    ) -> None:
        """The pool (a moved one's fresh pool) goes back to its old image, recreated with its
        bots' directories as they are."""
        pool_id = self._where(entry)
        log.error("upgrade_pool_failed", pool=pool_id, error=why)
        entry.reason = why
        await self._step(run, entry, ROLLING_BACK)
        old = ImageInfo(entry.from_ref, entry.from_id)
        try:
            started = time.time()
            await self._replace(pool_id, await self._old_ref(old))
            await self._verify(pool_id, old, started, max(options.timeout, ROLLBACK_TIMEOUT))
        except (FtpoolError, OSError) as exc:
            entry.reason = f"{why}; rollback: {exc}"
            entry.finished_at = time.time()
            await self._step(run, entry, FAILED)
            self.pools.events.emit("pool_upgrade_failed", pool=entry.pool, reason=entry.reason)
            return
        entry.finished_at = time.time()
        await self._step(run, entry, ROLLED_BACK)
        self.pools.events.emit("pool_upgrade_rolled_back", pool=entry.pool, reason=why,
                               image=old.ref)  # fmt: skip

    # -- the steps ------------------------------------------------------------------------

    async def _replace(
        self, pool_id: str, image: str,
        replacing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        """The pool's container, recreated from `image` on the same directories: the old
        one stops (its bots first) and is confirmed gone before the new one is made."""
        await self.runtime.stop(pool_id)
        if replacing is not None:
            await replacing()
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
        await runs_and_connected(self.pools, pool_id, image, since, timeout)
        bots = self.registry.bots_in(pool_id)
        left = max(1.0, deadline - time.time())

        async def answered(bot: BotRecord) -> float:
            await self.transfer.verify(bot, left)
            return round(time.time() - since, 2)

        results = await asyncio.gather(*(answered(b) for b in bots), return_exceptions=True)
        failed = [f"{b.id}: {r}" for b, r in zip(bots, results, strict=True)
                  if isinstance(r, BaseException)]  # fmt: skip
        if failed:
            raise StepFailed("; ".join(failed))
        return {b.id: r for b, r in zip(bots, results, strict=True) if isinstance(r, float)}

    async def _old_ref(self, old: ImageInfo) -> str:
        """Its old tag if that still names the old image, else the image's id."""
        with contextlib.suppress(FtpoolError):
            found = await self.runtime.resolve_image(old.ref)
            if found is not None and found.id == old.id:
                return old.ref
        return old.id

    async def _step(self, run: UpgradeRun, entry: PoolUpgrade, step: str) -> None:
        entry.step = step
        log.info("upgrade_step", run=run.id, pool=entry.pool, step=step)
        await self._save(run)

    async def _save(self, run: UpgradeRun) -> None:
        await self.pools.store.save_upgrade(run.id, run.started_at, run.finished, run.dump())
