"""Migration runs: moving bots from legacy containers into pools, and back, one at a time.

Three kinds of legacy bot take part:
- a legacy pool: a bot ftpool runs in a container of its own (`freqtrade-<id>`);
- a discovered legacy container (controller/runtimes/legacy.py), which is imported;
- for a rollback, any pooled bot, which goes to a legacy pool of its own.

A managed bot moves by the transfer of controller/moves/transfer.py (held, so at no
moment do two copies run: the old copy is confirmed stopped before the new one is
released, and a failed verification stops the new copy, again confirmed, before the old
one starts). Each run is recorded step by step in the migration log. A held bot found by
a re-run is brought to a consistent state first; at start-up the moves' one crash
recovery (controller/moves/recovery.py) has done so already.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from common.ids import check_id
from common.states import RunState
from controller.bots.manager import BotManager
from controller.errors import Conflict, NotFound
from controller.migration.legacy_import import (
    _copy_trade_dbs,
    check_legacy_spec,
    read_legacy_bot,
    stage_copy,
)
from controller.migration.log import MigrationLog, Run, Step
from controller.migration.plan import MigrationPlanner
from controller.moves.guard import MoveGuard
from controller.moves.transfer import StepFailed, Transfer
from controller.records import BotRecord
from controller.runtimes.legacy import LegacyBot, LegacyContainers
from controller.store.allocation import NewBot, Placement

log = structlog.get_logger("controller.migration")


class Migrator:
    def __init__(
        self, bots: BotManager, *, legacy: LegacyContainers | None, base_dir: Path,
        placement: Placement, guard: MoveGuard, transfer: Transfer,
    ) -> None:  # fmt: skip
        self.bots = bots
        self.pools = bots.pools
        self.registry = bots.pools.registry
        self.legacy = legacy
        self.to_pools = replace(placement, pooled=True)
        self.to_legacy = replace(placement, pooled=False)
        self.log = MigrationLog(base_dir / ".migration-log.json")
        self.backups = base_dir / "migration-backups"
        self.transfer = transfer
        self.staging = transfer.staging  # an import's copy waits there, as moves' files do
        self.planner = MigrationPlanner(self.pools, legacy, self.log, self.to_pools)
        # One bot at a time, and never beside an evacuation: both move bots between pools.
        self.guard = guard

    async def startup(self) -> None:
        """Load the log (bots held by an interrupted run were recovered before)."""
        await asyncio.to_thread(self.log.load)

    # -- migration ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _running(self, bot_id: str) -> AsyncIterator[None]:
        """One run of one bot: under the lock, its owner's changes refused (409) throughout,
        and a run that ends by an unexpected error is recorded as failed."""
        async with self.guard.lock:
            with self.guard.bot_moving(bot_id):
                try:
                    yield
                except Exception as exc:
                    run = self.log.latest(bot_id)
                    if run is not None and run.outcome == "in_progress":
                        await self.log.end_run(run, "failed", f"unexpected error: {exc}")
                    raise

    def _check_live(self, bot: BotRecord) -> None:
        if bot.deleting:
            raise Conflict(f"bot {bot.id} is being deleted")

    async def migrate(self, bot_id: str, verify_timeout: float) -> Run:
        check_id(bot_id, "instanceId")
        async with self._running(bot_id):
            bot = self.registry.bots.get(bot_id)
            if bot is not None and bot.held:
                bot = await self.transfer.recover(bot)
            if bot is not None:
                self._check_live(bot)
                pool = self.registry.pools[bot.pool_id]
                if pool.legacy_of == bot.id:
                    return await self._migrate_pooled(bot, verify_timeout)
                return await self._finish_interrupted(bot, verify_timeout)
            found = (await self.planner.discovered()).get(bot_id)
            if found is None:
                raise NotFound(f"no legacy bot {bot_id}")
            return await self._import(found, verify_timeout)

    async def rollback(self, bot_id: str, verify_timeout: float) -> Run:
        """A pooled bot goes back to a legacy container of its own, with its files."""
        check_id(bot_id, "instanceId")
        async with self._running(bot_id):
            bot = self.registry.bots.get(bot_id)
            if bot is None:
                raise NotFound(f"bot {bot_id} is not managed by ftpool")
            self._check_live(bot)
            if bot.held:
                bot = await self.transfer.recover(bot)
            if self.registry.pools[bot.pool_id].legacy_of == bot.id:
                raise Conflict(f"bot {bot_id} is in its legacy container already")
            run = await self._begin(bot.id, bot.user_id, "rollback", "pool", from_pool=bot.pool_id)
            try:
                moved = await self._move(run, bot, self.to_legacy, verify_timeout)
            except StepFailed as exc:
                return await self.log.end_run(run, "failed", str(exc))
            run.source_container = self.registry.pools[moved.pool_id].container_name
            self._emit("bot_rolled_back", moved, run)
            return await self.log.end_run(run, "rolled_back")

    async def _migrate_pooled(self, bot: BotRecord, verify_timeout: float) -> Run:
        legacy_pool = self.registry.pools[bot.pool_id]
        run = await self._begin(
            bot.id,
            bot.user_id,
            "migrate",
            "legacy-pool",
            from_pool=legacy_pool.id,
            source_container=legacy_pool.container_name,
        )
        try:
            moved = await self._move(run, bot, self.to_pools, verify_timeout)
        except StepFailed as exc:
            return await self.log.end_run(run, _undone(run), str(exc))
        self._emit("bot_migrated", moved, run)
        try:  # verified: from here on the bot stays in its pool, whatever happens
            async with self.log.step(run, "cleanup"):
                await self._remove_pool(legacy_pool.id)
        except StepFailed as exc:
            return await self.log.end_run(run, "migrated", f"legacy copy not removed: {exc}")
        return await self.log.end_run(run, "migrated")

    async def _finish_interrupted(self, bot: BotRecord, verify_timeout: float) -> Run:
        """A pooled bot: done already, unless a run stopped before removing its legacy copy
        (an empty legacy pool of it, or its stopped legacy container)."""
        pool = next((p for p in self.registry.pools.values() if p.legacy_of == bot.id), None)
        leftover = await self.planner.leftover_container(bot.id)
        run = await self._begin(bot.id, bot.user_id, "migrate", "pool", from_pool=bot.pool_id,
                          source_container=leftover or "")  # fmt: skip
        run.to_pool, run.port = bot.pool_id, bot.port
        if pool is None and leftover is None:
            return await self.log.end_run(run, "skipped", f"already in pool {bot.pool_id}")
        try:
            async with self.log.step(run, "verify"):
                await self.transfer.verify(bot, verify_timeout)
            async with self.log.step(run, "cleanup"):
                if pool is not None:
                    await self._remove_pool(pool.id)
                if leftover is not None and self.legacy is not None:
                    await self.legacy.remove(leftover)
        except StepFailed as exc:
            return await self.log.end_run(run, "failed", str(exc))
        return await self.log.end_run(run, "migrated", "resumed an interrupted run")

    # -- moving a managed bot ---------------------------------------------------------------

    async def _move(
        self, run: Run, bot: BotRecord, placement: Placement, verify_timeout: float
    ) -> BotRecord:
        """Hold, back up, move and release the bot, and verify it; a failure after the move
        brings it back where it was (raising StepFailed either way)."""
        source = bot.pool_id
        back = self.to_legacy if self.registry.pools[source].legacy_of == bot.id else self.to_pools
        try:
            async with self.log.step(run, "stop"):
                self.transfer.check_targets(bot.id, placement)
                bot = await self.transfer.hold(bot)
            async with self.log.step(run, "backup"):
                # Staged first: on the controller's disk, whatever disk its pool is on.
                await self.transfer.stage(bot)
                staged = self.staging / bot.id
                run.backup = await asyncio.to_thread(self._backup, staged, run, None)
        except StepFailed:
            # Nothing moved: its files (staged or not) back in its pool, and it runs there.
            await self.transfer.recover(self.registry.bots[bot.id])
            raise
        try:
            async with self.log.step(run, "allocate") as step:
                bot = await self.transfer.relocate(bot, placement)
                self._arrived(run, step, bot)
            bot = await self._start_and_verify(run, bot, verify_timeout)
        except StepFailed as exc:
            bot = self.registry.bots[bot.id]
            if bot.pool_id == source:  # it never left: its files go back, and it runs again
                await self.transfer.recover(bot)
                raise
            async with self.log.step(run, "rollback"):
                bot = await self.transfer.hold(bot)
                bot = await self.transfer.move(bot, back)
                bot = await self.transfer.release(bot)
            run.to_pool, run.port = None, None
            raise StepFailed(f"{exc}; the bot is back in {bot.pool_id}") from None
        return bot

    @staticmethod
    def _arrived(run: Run, step: Step, bot: BotRecord) -> None:
        run.to_pool, run.port = bot.pool_id, bot.port
        step.detail = f"{bot.pool_id}:{bot.port}"

    async def _start_and_verify(self, run: Run, bot: BotRecord, timeout: float) -> BotRecord:
        """Release the bot where it arrived, and see that it answers there."""
        async with self.log.step(run, "start"):
            bot = await self.transfer.release(bot)
        async with self.log.step(run, "verify"):
            await self.transfer.verify(bot, timeout)
        return bot

    async def _remove_pool(self, pool_id: str) -> None:
        pool = self.registry.pools.get(pool_id)
        if pool is not None and not await self.pools.lifecycle.remove_empty(pool):
            raise StepFailed(f"pool {pool_id} is not empty; it is left in place")

    # -- importing a discovered container ------------------------------------------------------

    async def _import(self, found: LegacyBot, verify_timeout: float) -> Run:
        assert self.legacy is not None
        previous = self.log.latest(found.id)
        # A run cut short after stopping the container knew whether it had been running.
        was_running = found.state == "running" or bool(
            previous and previous.outcome == "in_progress" and previous.was_running
        )
        run = await self._begin(found.id, found.user_id, "migrate", "legacy-container",
                          source_container=found.container, was_running=was_running)  # fmt: skip
        bot: BotRecord | None = None
        spec: dict[str, Any] = {}
        try:
            async with self.log.step(run, "stop"):
                spec = await self.legacy.spec(found.container)
                check_legacy_spec(spec, found)  # before anything changes
                self.transfer.check_targets(found.id, self.to_pools)
                await self.legacy.stop(found.container)
                if await self.legacy.state(found.container) == "running":
                    raise StepFailed(f"container {found.container} is still running")
            async with self.log.step(run, "backup"):
                run.backup = await asyncio.to_thread(self._backup, found.directory, run, spec)
            async with self.log.step(run, "allocate") as step:
                new = await asyncio.to_thread(read_legacy_bot, found)
                await asyncio.to_thread(stage_copy, self.staging, found.directory, found.id)
                run_state = RunState.RUNNING if was_running else RunState.STOPPED
                bot = await self._allocate(new, run_state)
                self._arrived(run, step, bot)
            bot = await self._start_and_verify(run, bot, verify_timeout)
        except StepFailed as exc:
            reason = str(exc)
            if bot is None:  # not imported: the legacy container is as it was
                await asyncio.to_thread(shutil.rmtree, self.staging / found.id, True)
                reason = await self._restart_legacy(found, spec, was_running, reason)
                return await self.log.end_run(run, "failed", reason)
            async with self.log.step(run, "rollback"):
                await self._unimport(bot, run, found)
                run.to_pool, run.port = None, None
                reason = await self._restart_legacy(found, spec, was_running, reason)
            return await self.log.end_run(run, "rolled_back", reason)
        self._emit("bot_migrated", bot, run)
        try:  # verified: from here on the bot stays in its pool, whatever happens
            async with self.log.step(run, "cleanup"):
                await self.legacy.remove(found.container)
                await asyncio.to_thread(shutil.rmtree, found.directory)
        except StepFailed as exc:
            return await self.log.end_run(run, "migrated", f"legacy copy not removed: {exc}")
        return await self.log.end_run(run, "migrated")

    async def _restart_legacy(
        self, found: LegacyBot, spec: dict[str, Any], was_running: bool, reason: str
    ) -> str:
        """The legacy container as it was: its restart policy back, and running if it ran."""
        assert self.legacy is not None
        policy = (spec.get("HostConfig") or {}).get("RestartPolicy")
        if await self.legacy.state(found.container) == "running":
            return reason
        await self.legacy.restore(found.container, policy, start=was_running)
        if was_running:
            return f"{reason}; legacy container {found.container} started again"
        return reason

    async def _allocate(self, new: NewBot, run: RunState) -> BotRecord:
        pools = self.pools
        token, token_hash = pools.lifecycle.new_token()
        change = await pools.store.allocate(new, self.to_pools, token_hash, held=True, run=run)
        await pools.registry.apply(change)
        bot = change.bot(new.id)
        try:
            await self.transfer.land(bot, bot.pool_id in change.created, token)
        except Exception:
            await self.bots.undo(bot)
            raise
        return bot

    async def _unimport(self, bot: BotRecord, run: Run, found: LegacyBot) -> None:
        """Undo an import: the pooled copy stops, its directory leaves its pool for staging
        (through its agent, on a node's own disk), its trade database (as it is now) goes
        back to the legacy directory, the bot leaves the store, and the rest of the staged
        directory is kept with the run's backup."""
        bot = await self.transfer.hold(bot)
        await self.transfer.stage(bot)
        staged = self.staging / bot.id
        if staged.is_dir():  # else never written: its pool died before its agent made it
            await asyncio.to_thread(_copy_trade_dbs, staged, found.directory)
        await self.registry.apply(await self.pools.store.remove_bot(bot.id))
        if staged.is_dir():
            await asyncio.to_thread(_keep_pooled_copy, staged, run)

    # -- checks and records -------------------------------------------------------------------

    def _backup(self, directory: Path, run: Run, spec: dict[str, Any] | None) -> str:
        """Copy the bot's whole directory (config, strategies, trade database, user data)
        and, for a legacy container, Docker's description of it."""
        target = self.backups / f"{run.id}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        self.backups.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.mkdir(mode=0o700)
        if directory.is_dir():
            shutil.copytree(directory, target / "files", symlinks=True)
        if spec is not None:
            (target / "container.json").write_text(json.dumps(spec, indent=1, default=str))
        return str(target)

    async def _begin(self, bot_id: str, user_id: str, kind: str, source: str, **fields: Any) -> Run:
        run = Run(id=f"{kind}-{bot_id}-{secrets.token_hex(3)}", bot=bot_id, user=user_id,
                  kind=kind, source=source, **fields)  # fmt: skip
        return await self.log.start_run(run)

    def _emit(self, kind: str, bot: BotRecord, run: Run) -> None:
        self.pools.events.emit(kind, pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                               reason=run.id, port=bot.port)  # fmt: skip


def _keep_pooled_copy(staged: Path, run: Run) -> None:
    """What the pooled copy of an undone import left, kept beside the run's backup (taken
    before the import)."""
    assert run.backup
    shutil.move(staged, Path(run.backup) / "pooled")


def _undone(run: Run) -> str:
    """A failed run's outcome: rolled back if it brought the bot back, else failed."""
    undone = any(s.name == "rollback" and s.ok for s in run.steps)
    return "rolled_back" if undone else "failed"
