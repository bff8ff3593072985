"""Upgrade runs: each selected pool moved to a new image, pool by pool, by one of two
methods: `move` (its bots move one at a time into a fresh pool on the new image,
controller/upgrade/moving.py) or `recreate` (its container recreated in place); one
pool's part, by either method, and its rollback: controller/upgrade/pool.py.

A canary run upgrades its first N pools, waits `soak` seconds, and stops (rolling back
the canary pools that turned unhealthy) unless all their bots are still well. A pool
that fails stops the run. Each step is saved in the store (controller/upgrade/state.py);
a controller that died mid-run rolls the pool it was replacing back to its old image at
its next start, before any pool is adopted (recover: controller/upgrade/recovery.py),
and the run ends "interrupted": run it again to go on (pools already on the new image
are skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import structlog

from controller.errors import Conflict, NotFound
from controller.moves.guard import MoveGuard
from controller.moves.transfer import Transfer
from controller.pools.manager import PoolManager
from controller.runtimes.base import ImageInfo
from controller.store.allocation import Placement
from controller.upgrade.moving import Clock, PoolMove
from controller.upgrade.plan import (
    DEFAULT_METHOD,
    NOT_STARTED,
    PENDING,
    Plan,
    PoolView,
    Selection,
    plan_upgrade,
    pool_method,
    run_outcome,
    unhealthy_bots,
)
from controller.upgrade.pool import PoolUpgrader, where
from controller.upgrade.recovery import recover_runs
from controller.upgrade.state import PoolUpgrade, UpgradeRun

log = structlog.get_logger("controller.upgrade")


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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, clock: Clock = time.time,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.clock = clock
        self.mover = PoolMove(pools, transfer, replace(placement, pooled=True), clock)
        self.pool_upgrader = PoolUpgrader(pools, transfer, self.mover)
        self.registry = pools.registry
        self.runtime = pools.runtime
        self.transfer = transfer
        self.guard = guard
        self.sleep = sleep
        self.runs: list[UpgradeRun] = []
        self._task: asyncio.Task[None] | None = None

    # -- start-up and shutdown ---------------------------------------------------------

    async def recover(self) -> None:
        """Load the runs; a run a crash cut short ends here (controller/upgrade/recovery.py)."""
        self.runs = await recover_runs(self.pool_upgrader)

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
            where = "swarm's manager (every node needs it too)" if self.runtime.name == "swarm" \
                else "Docker host"  # fmt: skip
            raise NotFound(f"no image {image or 'POOL_IMAGE'} on the {where}; pull it first")
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
        now = self.clock()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        run = UpgradeRun(
            id=f"upgrade-{stamp}-{secrets.token_hex(2)}", started_at=now,
            to_ref=plan.target.ref, to_id=plan.target.id, options=options.to_json(),
            pools=[PoolUpgrade(p.id, p.image.ref, p.image.id, len(p.bots), n < plan.canary,
                               method=pool_method(options.method, self._legacy(p.id)))
                   for n, p in enumerate(plan.pools) if p.image is not None],
        )  # fmt: skip
        self.runs.append(run)
        await self.pool_upgrader.save(run)  # saved before anything changes
        self._task = asyncio.create_task(self._execute(run, options), name="upgrade")
        return run

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
        run.finished_at = self.clock()
        await self.pool_upgrader.save(run)
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
                    upgrade, timeout = self.pool_upgrader.upgrade, options.timeout
                    results = await asyncio.gather(*(upgrade(run, e, timeout) for e in batch))
            if not all(results):
                failed = [e.pool for e, ok in zip(batch, results, strict=True) if not ok]
                run.reason = f"stopped: pool(s) {', '.join(failed)} did not come up healthy"
                return False
        return True

    async def _soak(
        self, run: UpgradeRun, canary: list[PoolUpgrade], options: UpgradeOptions
    ) -> bool:
        """Wait `soak` seconds; the canary pools whose bots are not all well go back."""
        await self.sleep(options.soak)
        sick: dict[str, list[str]] = {}
        for entry in canary:
            pool_id = where(entry)
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
                    pool_id = where(entry)  # a moved pool's fresh one goes back
                    self.pools.lifecycle.upgrading.add(pool_id)
                    try:
                        with self.guard.pool_moving(pool_id):
                            why = f"unhealthy after the soak: {', '.join(sick[entry.pool])}"
                            await self.pool_upgrader.rollback(run, entry, why, options.timeout)
                    finally:
                        self.pools.lifecycle.upgrading.discard(pool_id)
        run.reason = "canary unhealthy after the soak: " + "; ".join(
            f"{pool}: {', '.join(bots)}" for pool, bots in sick.items()
        )
        return False
