"""An upgrade run a crash cut short, at the controller's next start (before any pool is
adopted): the pool it was replacing goes back to its old image (nothing of its new one
was verified), a pool it was moving is finished or undone (controller/upgrade/moving.py),
the rest stay, and the run ends "interrupted": run it again to go on (pools already on
the new image are skipped)."""

from __future__ import annotations

import structlog

from controller.errors import FtpoolError
from controller.runtimes.base import ImageInfo
from controller.upgrade.plan import (
    FAILED,
    IN_FLIGHT,
    MOVE,
    MOVE_IN_FLIGHT,
    NOT_STARTED,
    PENDING,
    ROLLED_BACK,
    ROLLING_BACK,
    recovery_action,
)
from controller.upgrade.pool import PoolUpgrader, where
from controller.upgrade.state import PoolUpgrade, UpgradeRun

log = structlog.get_logger("controller.upgrade")


async def recover_runs(upgrader: PoolUpgrader) -> list[UpgradeRun]:
    """The runs the store keeps, each one a crash cut short ended "interrupted"."""
    runs = [UpgradeRun.load(doc) for doc in await upgrader.pools.store.upgrades()]
    for run in [r for r in runs if not r.finished]:
        for entry in run.pools:
            await recover_pool(upgrader, entry)
        run.outcome, run.finished_at = "interrupted", upgrader.clock()
        run.reason = "the controller stopped during the run; run it again to go on"
        await upgrader.save(run)
        log.warning("upgrade_interrupted", run=run.id)
    return runs


async def recover_pool(upgrader: PoolUpgrader, entry: PoolUpgrade) -> None:
    if entry.step == PENDING:
        entry.step = NOT_STARTED
        return
    if entry.method == MOVE and entry.step in MOVE_IN_FLIGHT:
        # Its held bots were put back where the store has them by the moves' recovery.
        await upgrader.mover.recover(entry)
        entry.finished_at = upgrader.clock()
        return
    pool_id = where(entry)
    if pool_id not in upgrader.registry.pools:
        return
    old = ImageInfo(entry.from_ref, entry.from_id)
    now = await upgrader.runtime.image_of(pool_id)
    if recovery_action(entry.step, now, old) == "keep":
        if entry.step == ROLLING_BACK:  # its old image runs again
            entry.step, entry.finished_at = ROLLED_BACK, upgrader.clock()
        elif entry.step in IN_FLIGHT:  # its old container is still there
            entry.step, entry.reason = NOT_STARTED, "interrupted before it was replaced"
        return
    try:
        await upgrader.replace(pool_id, await upgrader.old_ref(old))
    except FtpoolError as exc:
        entry.step, entry.reason = FAILED, f"not rolled back after a restart: {exc}"
        log.error("upgrade_recovery_failed", pool=pool_id, error=str(exc))
        return
    entry.step, entry.finished_at = ROLLED_BACK, upgrader.clock()
    entry.reason = f"the controller stopped mid-upgrade; back on {old.ref}"
    log.warning("upgrade_pool_recovered", pool=pool_id, image=old.ref)
