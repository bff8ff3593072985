"""Moving bots from legacy containers into pools, and back, one bot at a time.

Three kinds of legacy bot take part:
- a legacy pool: a bot ftpool runs in a container of its own (`freqtrade-<id>`);
- a discovered legacy container (controller/legacy.py), which is imported;
- for a rollback, any pooled bot, which goes to a legacy pool of its own.

A bot's files move while it is *held*: its agents run no program for it and leave its
directory alone. So at no moment do two copies run: the old copy is confirmed stopped
before the new one is released, and a failed verification stops the new copy (again
confirmed) before the old one starts. The files travel through BOT_BASE_DIR/migrating/,
so after a crash they are in exactly one of: the old pool, staging, the new pool. A held
bot found at start-up, or by a re-run, is brought to a consistent state first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from common.ids import check_id, check_strategy_name
from common.states import STOPPED, ProcessState, RunState
from controller.botconfig import PROTECTED_KEYS, new_secrets, validate_overrides
from controller.bots import BotManager
from controller.errors import Conflict, FtpoolError, NotFound
from controller.legacy import DISCOVERY_MAX_AGE, LegacyBot, LegacyContainers
from controller.migration_log import MigrationLog, Run, Step
from controller.models import BotRecord
from controller.pools import PoolLive
from controller.runtimes import RuntimeState
from controller.runtimes.base import hand_over
from controller.store import NewBot, Placement

log = structlog.get_logger("controller.migration")
HOLD_TIMEOUT = 90.0  # supervisord gives a bot 30 s to stop; its agent reports within seconds
# FreqTrade's own database file names (db_url's defaults), relative to the bot's directory.
TRADE_DBS = ("tradesv3.sqlite", "tradesv3.dryrun.sqlite")
DEFAULT_DB_URLS = {f"sqlite:///{name}" for name in TRADE_DBS}
# FreqTrade options that put a bot's data or code outside its config.json and directory.
OUTSIDE_FLAGS = frozenset({
    "--db-url", "--userdir", "--user-data-dir", "--datadir", "--data-dir", "--strategy-path",
    "--strategy", "-s", "--recursive-strategy-search",
})  # fmt: skip


class StepFailed(FtpoolError):
    status = 409


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    user_id: str
    source: str  # legacy-pool, legacy-container, or resume (its legacy copy is left over)
    container: str
    state: str
    pool_id: str | None = None


class Migrator:
    def __init__(
        self, bots: BotManager, legacy: LegacyContainers | None, base_dir: Path,
        placement: Placement,
    ) -> None:  # fmt: skip
        self.bots = bots
        self.pools = bots.pools
        self.legacy = legacy
        self.to_pools = replace(placement, pooled=True)
        self.to_legacy = replace(placement, pooled=False)
        self.log = MigrationLog(base_dir / ".migration-log.json")
        self.staging = base_dir / "migrating"
        self.backups = base_dir / "migration-backups"
        # One bot at a time, and never beside an evacuation: both move bots between pools.
        self.lock = bots.moves

    async def startup(self) -> None:
        """Load the log; bring bots held by an interrupted run back to a running state."""
        await asyncio.to_thread(self.log.load)
        for bot in [b for b in self.pools.bots.values() if b.held]:
            async with self.lock:
                try:
                    await self._recover(bot)
                except (FtpoolError, OSError) as exc:
                    # It stays held (nothing runs it) for an operator; the rest start.
                    log.error("migration_recovery_failed", bot=bot.id, error=str(exc))

    # -- what there is to do -------------------------------------------------------------

    async def candidates(self) -> list[Candidate]:
        """Every legacy bot (ftpool's legacy pools and discovered containers), and every
        pooled bot whose legacy copy an interrupted run left behind (to resume)."""
        out = []
        found = await self.legacy.discover() if self.legacy is not None else {}
        left_pools = {p.legacy_of: p for p in self.pools.pools.values() if p.legacy_of}
        for bot in self.pools.bots.values():
            pool = self.pools.pools[bot.pool_id]
            if bot.deleting:
                continue
            if pool.legacy_of == bot.id:
                out.append(Candidate(bot.id, bot.user_id, "legacy-pool", pool.container_name,
                                     bot.run, pool.id))  # fmt: skip
                continue
            # Left over: an empty legacy pool of the bot, or (the run's own test) a legacy
            # container the bot was imported from.
            legacy = found.get(bot.id)
            left = left_pools[bot.id].container_name if bot.id in left_pools else (
                legacy.container if legacy is not None and self._imported(legacy) else None
            )  # fmt: skip
            if left is not None:
                out.append(Candidate(bot.id, bot.user_id, "resume", left, bot.run, pool.id))
        for legacy in found.values():
            if legacy.id not in self.pools.bots:
                out.append(Candidate(legacy.id, legacy.user_id, "legacy-container",
                                     legacy.container, legacy.state))  # fmt: skip
        return sorted(out, key=lambda c: (c.user_id, c.id))

    async def discovered(self, max_age: float = 0.0) -> dict[str, LegacyBot]:
        """Legacy containers ftpool does not manage (one of a bot it manages is a leftover)."""
        if self.legacy is None:
            return {}
        found = await self.legacy.discover(max_age)
        return {k: v for k, v in found.items() if k not in self.pools.bots}

    async def legacy_ids(self) -> set[str]:
        """Ids of the legacy containers found on the host (a listing up to 5 s old)."""
        try:
            return set(await self.discovered(DISCOVERY_MAX_AGE))
        except FtpoolError as exc:  # Docker away: provisioning goes on, the pool's may fail
            log.warning("legacy_discovery_failed", error=str(exc))
            return set()

    async def plan(self, bot_ids: set[str], users: set[str]) -> dict[str, Any]:
        """Which bot goes to which pool and port; changes nothing."""
        chosen = [
            c for c in await self.candidates()
            if (not bot_ids or c.id in bot_ids) and (not users or c.user_id in users)
        ]  # fmt: skip
        moving = [c for c in chosen if c.source != "resume"]
        slots = iter(await self.pools.store.plan([(c.id, c.user_id) for c in moving],
                                                 self.to_pools))  # fmt: skip
        plan = []
        for c in chosen:
            if c.source == "resume":  # it runs in its pool already; its legacy copy goes
                bot = self.pools.bots[c.id]
                pool_id, port, new = bot.pool_id, bot.port, False
            else:
                pool_id, port, new = next(slots)
            plan.append({
                "instanceId": c.id, "userId": c.user_id, "source": c.source,
                "container": c.container, "state": c.state, "fromPool": c.pool_id,
                "toPool": pool_id, "port": port, "newPool": new,
            })  # fmt: skip
        listed = {c.id for c in chosen}
        skipped = [{"instanceId": b, "reason": self._why_not(b)} for b in sorted(bot_ids - listed)]
        return {"bots": plan, "skipped": skipped}

    def _why_not(self, bot_id: str) -> str:
        bot = self.pools.bots.get(bot_id)
        if bot is None:
            return "no such legacy bot"
        return f"already in pool {bot.pool_id}"

    # -- migration ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _running(self, bot_id: str) -> AsyncIterator[None]:
        """One run of one bot: under the lock, its owner's changes refused (409) throughout,
        and a run that ends by an unexpected error is recorded as failed."""
        async with self.lock:
            self.bots.migrating.add(bot_id)
            try:
                yield
            except Exception as exc:
                run = self.log.latest(bot_id)
                if run is not None and run.outcome == "in_progress":
                    await self._finish(run, "failed", f"unexpected error: {exc}")
                raise
            finally:
                self.bots.migrating.discard(bot_id)

    def _check_live(self, bot: BotRecord) -> None:
        if bot.deleting:
            raise Conflict(f"bot {bot.id} is being deleted")

    async def migrate(self, bot_id: str, verify_timeout: float) -> Run:
        check_id(bot_id, "instanceId")
        async with self._running(bot_id):
            bot = self.pools.bots.get(bot_id)
            if bot is not None and bot.held:
                bot = await self._recover(bot)
            if bot is not None:
                self._check_live(bot)
                pool = self.pools.pools[bot.pool_id]
                if pool.legacy_of == bot.id:
                    return await self._migrate_pooled(bot, verify_timeout)
                return await self._finish_interrupted(bot, verify_timeout)
            found = (await self.discovered()).get(bot_id)
            if found is None:
                raise NotFound(f"no legacy bot {bot_id}")
            return await self._import(found, verify_timeout)

    async def rollback(self, bot_id: str, verify_timeout: float) -> Run:
        """A pooled bot goes back to a legacy container of its own, with its files."""
        check_id(bot_id, "instanceId")
        async with self._running(bot_id):
            bot = self.pools.bots.get(bot_id)
            if bot is None:
                raise NotFound(f"bot {bot_id} is not managed by ftpool")
            self._check_live(bot)
            if bot.held:
                bot = await self._recover(bot)
            if self.pools.pools[bot.pool_id].legacy_of == bot.id:
                raise Conflict(f"bot {bot_id} is in its legacy container already")
            run = await self._begin(bot.id, bot.user_id, "rollback", "pool", from_pool=bot.pool_id)
            try:
                moved = await self._move(run, bot, self.to_legacy, verify_timeout)
            except StepFailed as exc:
                return await self._finish(run, "failed", str(exc))
            run.source_container = self.pools.pools[moved.pool_id].container_name
            self._emit("bot_rolled_back", moved, run)
            return await self._finish(run, "rolled_back")

    async def _migrate_pooled(self, bot: BotRecord, verify_timeout: float) -> Run:
        legacy_pool = self.pools.pools[bot.pool_id]
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
            return await self._finish(run, _undone(run), str(exc))
        self._emit("bot_migrated", moved, run)
        try:  # verified: from here on the bot stays in its pool, whatever happens
            async with self._step(run, "cleanup"):
                await self._remove_pool(legacy_pool.id)
        except StepFailed as exc:
            return await self._finish(run, "migrated", f"legacy copy not removed: {exc}")
        return await self._finish(run, "migrated")

    async def _finish_interrupted(self, bot: BotRecord, verify_timeout: float) -> Run:
        """A pooled bot: done already, unless a run stopped before removing its legacy copy
        (an empty legacy pool of it, or its stopped legacy container)."""
        pool = next((p for p in self.pools.pools.values() if p.legacy_of == bot.id), None)
        leftover = await self._leftover_container(bot.id)
        run = await self._begin(bot.id, bot.user_id, "migrate", "pool", from_pool=bot.pool_id,
                          source_container=leftover or "")  # fmt: skip
        run.to_pool, run.port = bot.pool_id, bot.port
        if pool is None and leftover is None:
            return await self._finish(run, "skipped", f"already in pool {bot.pool_id}")
        try:
            async with self._step(run, "verify"):
                await self._verify(bot, verify_timeout)
            async with self._step(run, "cleanup"):
                if pool is not None:
                    await self._remove_pool(pool.id)
                if leftover is not None and self.legacy is not None:
                    await self.legacy.remove(leftover)
        except StepFailed as exc:
            return await self._finish(run, "failed", str(exc))
        return await self._finish(run, "migrated", "resumed an interrupted run")

    async def _leftover_container(self, bot_id: str) -> str | None:
        if self.legacy is None:
            return None
        found = (await self.legacy.discover()).get(bot_id)
        if found is None or not self._imported(found):
            return None
        if found.state == "running":
            # Two copies of one bot: which one trades is for an operator to decide.
            raise Conflict(f"{found.container} runs while the bot runs in a pool; stop one")
        return found.container

    def _imported(self, found: LegacyBot) -> bool:
        """Did a run of ours import this very container (same bot, same owner)?"""
        return any(r.bot == found.id and r.user == found.user_id and r.kind == "migrate"
                   and r.source_container == found.container and r.to_pool
                   for r in self.log.runs)  # fmt: skip

    # -- moving a managed bot ---------------------------------------------------------------

    async def _move(
        self, run: Run, bot: BotRecord, placement: Placement, verify_timeout: float
    ) -> BotRecord:
        """Hold, back up, move and release the bot, and verify it; a failure after the move
        brings it back where it was (raising StepFailed either way)."""
        source = bot.pool_id
        back = self.to_legacy if self.pools.pools[source].legacy_of == bot.id else self.to_pools
        try:
            async with self._step(run, "stop"):
                self._check_targets(bot.id, placement)
                bot = await self._hold(bot)
            async with self._step(run, "backup"):
                run.backup = await asyncio.to_thread(self._backup, self._bot_dir(bot), run, None)
        except StepFailed:
            await self.bots.set_held(self.pools.bots[bot.id], False)  # nothing moved
            raise
        try:
            async with self._step(run, "allocate") as step:
                bot = await self._relocate(bot, placement)
                self._arrived(run, step, bot)
            bot = await self._start_and_verify(run, bot, verify_timeout)
        except StepFailed as exc:
            bot = self.pools.bots[bot.id]
            if bot.pool_id == source:  # it never left: its files go back, and it runs again
                await self._recover(bot)
                raise
            async with self._step(run, "rollback"):
                bot = await self._hold(bot)
                bot = await self._relocate(bot, back)
                bot = await self.bots.set_held(bot, False)
            run.to_pool, run.port = None, None
            raise StepFailed(f"{exc}; the bot is back in {bot.pool_id}") from None
        return bot

    @staticmethod
    def _arrived(run: Run, step: Step, bot: BotRecord) -> None:
        run.to_pool, run.port = bot.pool_id, bot.port
        step.detail = f"{bot.pool_id}:{bot.port}"

    async def _start_and_verify(self, run: Run, bot: BotRecord, timeout: float) -> BotRecord:
        """Release the bot where it arrived, and see that it answers there."""
        async with self._step(run, "start"):
            bot = await self.bots.set_held(bot, False)
        async with self._step(run, "verify"):
            await self._verify(bot, timeout)
        return bot

    async def _hold(self, bot: BotRecord) -> BotRecord:
        """Hold the bot and wait until its agent has stopped it and removed its program."""
        self._can_hold(bot.pool_id)
        held = await self.bots.set_held(bot, True)
        await self._wait_applied(held.pool_id, lambda live: held.id not in live.bots)
        return held

    def _can_hold(self, pool_id: str) -> None:
        """An agent from before held bots would refuse every desired state with one."""
        live = self.pools.live.get(pool_id)
        if live is not None and live.connected and "held" not in live.features:
            raise StepFailed(
                f"the agent of {pool_id} ({live.agent_version}) cannot hold a bot; "
                "recreate that pool with the current pool image first"
            )

    def _check_targets(self, bot_id: str, placement: Placement) -> None:
        """Every pool the bot could be placed in must hold it: checked before it moves."""
        for pool in list(self.pools.pools.values()):
            if placement.pooled:
                fits = pool.legacy_of is None and pool.used < pool.capacity
            else:
                fits = pool.legacy_of == bot_id
            if fits:
                self._can_hold(pool.id)

    async def _wait_applied(
        self, pool_id: str, done: Callable[[PoolLive], bool] = lambda _live: True
    ) -> None:
        """Wait until the pool's agent has applied its current desired state (and `done`
        holds of its report), or nothing of the pool runs at all."""
        gen = self.pools.pools[pool_id].generation
        deadline = time.monotonic() + HOLD_TIMEOUT
        while True:
            live = self.pools.live.get(pool_id)
            if live is not None and live.connected:
                if live.acked_gen >= gen and done(live):
                    return
            elif await self.pools.runtime.inspect(pool_id) != RuntimeState.RUNNING:
                return  # nothing of the pool runs: nor does any bot of it
            if time.monotonic() > deadline:
                raise StepFailed(f"the agent of {pool_id} did not apply generation {gen} "
                                 f"within {HOLD_TIMEOUT:.0f} s")  # fmt: skip
            await asyncio.sleep(0.2)

    def _bot_dir(self, bot: BotRecord) -> Path:
        return self.pools.runtime.pools_dir / bot.pool_id / "bots" / bot.id

    async def _relocate(self, bot: BotRecord, placement: Placement) -> BotRecord:
        """Move a held, stopped bot to another pool: its files via staging, its record in
        one transaction. It stays held."""
        pools = self.pools
        bot = pools.bots[bot.id]  # as it is now, not as the caller last saw it
        stage = self.staging / bot.id
        source = self._bot_dir(bot)
        if source.is_dir():
            await asyncio.to_thread(hand_over, source, stage)
        token, token_hash = pools.new_token()
        moved, pool, created, old = await pools.store.relocate(
            bot.id, placement, token_hash, held=True
        )
        pools.forget_bot(bot.id)
        pools.set_pool(old)
        pools.set_pool(pool)
        pools.set_bot(moved)
        await pools.push(old.id)
        await self._land(moved, created, token)
        log.info("bot_relocated", bot=bot.id, source=old.id, target=pool.id, port=moved.port)
        return moved

    async def _land(self, bot: BotRecord, created: bool, token: str) -> None:
        """Bring a held bot's staged files into its new pool. A running agent must have
        applied the bot's hold first: an older desired state still being applied would
        take the directory for a removed bot's and archive it."""
        pool = self.pools.pools[bot.pool_id]
        if created:
            await self._place_staged(bot)  # before its agent exists
            await self.pools.create_runtime(pool, token)
            return
        await self.pools.wait_created(pool.id)
        self._can_hold(pool.id)
        await self.pools.push(pool.id)
        await self._wait_applied(pool.id)
        await self._place_staged(bot)

    async def _place_staged(self, bot: BotRecord) -> None:
        stage = self.staging / bot.id
        if stage.is_dir():
            await asyncio.to_thread(hand_over, stage, self._bot_dir(bot))

    async def _recover(self, bot: BotRecord) -> BotRecord:
        """A bot held by an interrupted run: its staged files go to the pool the store has
        it in, and it is released there."""
        await self._place_staged(bot)
        bot = await self.bots.set_held(bot, False)
        log.warning("migration_recovered", bot=bot.id, pool=bot.pool_id)
        return bot

    async def _remove_pool(self, pool_id: str) -> None:
        pool = self.pools.pools.get(pool_id)
        if pool is not None and not await self.pools.remove_empty(pool):
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
            async with self._step(run, "stop"):
                spec = await self.legacy.spec(found.container)
                check_legacy_spec(spec, found)  # before anything changes
                self._check_targets(found.id, self.to_pools)
                await self.legacy.stop(found.container)
                if await self.legacy.state(found.container) == "running":
                    raise StepFailed(f"container {found.container} is still running")
            async with self._step(run, "backup"):
                run.backup = await asyncio.to_thread(self._backup, found.directory, run, spec)
            async with self._step(run, "allocate") as step:
                new = await asyncio.to_thread(read_legacy_bot, found)
                await asyncio.to_thread(self._stage_copy, found.directory, found.id)
                run_state = RunState.RUNNING if was_running else RunState.STOPPED
                bot = await self._allocate(new, run_state)
                self._arrived(run, step, bot)
            bot = await self._start_and_verify(run, bot, verify_timeout)
        except StepFailed as exc:
            reason = str(exc)
            if bot is None:  # not imported: the legacy container is as it was
                await asyncio.to_thread(shutil.rmtree, self.staging / found.id, True)
                reason = await self._restart_legacy(found, spec, was_running, reason)
                return await self._finish(run, "failed", reason)
            async with self._step(run, "rollback"):
                await self._unimport(bot, found)
                run.to_pool, run.port = None, None
                reason = await self._restart_legacy(found, spec, was_running, reason)
            return await self._finish(run, "rolled_back", reason)
        self._emit("bot_migrated", bot, run)
        try:  # verified: from here on the bot stays in its pool, whatever happens
            async with self._step(run, "cleanup"):
                await self.legacy.remove(found.container)
                await asyncio.to_thread(shutil.rmtree, found.directory)
        except StepFailed as exc:
            return await self._finish(run, "migrated", f"legacy copy not removed: {exc}")
        return await self._finish(run, "migrated")

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
        token, token_hash = pools.new_token()
        bot, pool, created = await pools.store.allocate(
            new, self.to_pools, token_hash, held=True, run=run
        )
        pools.set_pool(pool)
        pools.set_bot(bot)
        try:
            await self._land(bot, created, token)
        except Exception:
            await self.bots.undo(bot)
            raise
        return bot

    def _stage_copy(self, directory: Path, bot_id: str) -> None:
        """Copy the legacy directory to staging (root's), whole or not at all."""
        self.staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial, stage = self.staging / f"{bot_id}.partial", self.staging / bot_id
        for stale in (partial, stage):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.copytree(directory, partial, symlinks=True)
        _private(partial)
        os.rename(partial, stage)

    async def _unimport(self, bot: BotRecord, found: LegacyBot) -> None:
        """Undo an import: the pooled copy stops, its trade database (as it is now) goes
        back to the legacy directory, and the bot leaves the store; its pool's agent
        archives what is left of its directory."""
        bot = await self._hold(bot)
        await asyncio.to_thread(_copy_trade_dbs, self._bot_dir(bot), found.directory)
        pool = await self.pools.store.remove_bot(bot.id)
        self.pools.forget_bot(bot.id)
        self.pools.set_pool(pool)
        await self.pools.push(pool.id)

    # -- checks and records -------------------------------------------------------------------

    async def _verify(self, bot: BotRecord, timeout: float) -> None:
        """The bot runs in its new pool and answers its API (a stopped bot: its agent has
        it, stopped)."""
        deadline = time.monotonic() + timeout
        state = "no report"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while True:
                current = self.pools.bots.get(bot.id, bot)
                status = self.pools.status_of(current)
                state = status.state if status else "no report"
                if current.run == RunState.STOPPED and state in STOPPED:
                    return
                # The agent's own view too: on a shared network another process could
                # answer on the bot's port.
                ours = status is not None and status.port_ok is not False and status.ping_ok
                if state == ProcessState.RUNNING and ours and await self._ping(session, current):
                    return
                if time.monotonic() >= deadline:
                    raise StepFailed(
                        f"bot did not answer /api/v1/ping within {timeout:g} s ({state})"
                    )
                await asyncio.sleep(0.25)

    async def _ping(self, session: aiohttp.ClientSession, bot: BotRecord) -> bool:
        host = self.pools.runtime.bot_host(bot.pool_id)
        try:
            async with session.get(f"http://{host}:{bot.port}/api/v1/ping") as response:
                return response.status == 200 and (await response.json()).get("status") == "pong"
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False

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
        """A new run in the log, saved before anything changes: a log that cannot be
        written stops the run here, while there is nothing to undo."""
        run = Run(id=f"{kind}-{bot_id}-{secrets.token_hex(3)}", bot=bot_id, user=user_id,
                  kind=kind, source=source, **fields)  # fmt: skip
        self.log.add(run)
        await asyncio.to_thread(self.log.write, self.log.dump())
        return run

    async def _finish(self, run: Run, outcome: str, reason: str = "") -> Run:
        self.log.conclude(run, outcome, reason)
        await self._save()
        return run

    async def _save(self) -> None:
        """Write the log in a worker thread (it fsyncs). Once a run has begun, a write that
        fails is logged and the run goes on: the log never replaces a step's failure nor
        cancels the rollback that follows it, and the next write saves it all."""
        data = self.log.dump()
        try:
            await asyncio.to_thread(self.log.write, data)
        except OSError as exc:
            log.error("migration_log_not_saved", path=str(self.log.path), error=str(exc))

    @contextlib.asynccontextmanager
    async def _step(self, run: Run, name: str) -> AsyncIterator[Step]:
        step = Step(name, time.time())
        run.steps.append(step)
        started = time.monotonic()
        try:
            yield step
        except StepFailed as exc:
            step.ok, step.detail = False, str(exc)
            raise
        except (FtpoolError, OSError, ValueError) as exc:
            step.ok, step.detail = False, f"{type(exc).__name__}: {exc}"
            raise StepFailed(f"{name} failed: {exc}") from exc
        else:
            step.ok = True
        finally:
            step.ms = round((time.monotonic() - started) * 1000, 1)
            await self._save()
            log.info("migration_step", run=run.id, bot=run.bot, step=name, ok=step.ok, ms=step.ms)

    def _emit(self, kind: str, bot: BotRecord, run: Run) -> None:
        self.pools.events.emit(kind, pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                               reason=run.id, port=bot.port)  # fmt: skip


def _undone(run: Run) -> str:
    """A failed run's outcome: rolled back if it brought the bot back, else failed."""
    undone = any(s.name == "rollback" and s.ok for s in run.steps)
    return "rolled_back" if undone else "failed"


def read_legacy_bot(found: LegacyBot) -> NewBot:
    """The bot as its legacy directory describes it: its config (without the keys ftpool
    manages), its strategy and its source. Anything ftpool cannot keep as it is stops the
    import here, before anything changed."""
    config = json.loads(_read_inside(found.directory, "config.json"))
    if not isinstance(config, dict):
        raise StepFailed("config.json is not a JSON object")
    db_url = config.get("db_url")
    if db_url is not None and db_url not in DEFAULT_DB_URLS:
        # Not echoed: a database URL may hold a password.
        raise StepFailed("its db_url is not FreqTrade's default; move that database by hand")
    strategy = check_strategy_name(config.get("strategy"))
    source = _read_inside(found.directory, f"user_data/strategies/{strategy}.py")
    overrides = validate_overrides({k: v for k, v in config.items() if k not in PROTECTED_KEYS})
    # ftpool's defaults start new bots trading; a legacy bot keeps FreqTrade's own default.
    overrides.setdefault("initial_state", "stopped")
    return NewBot(found.id, found.user_id, strategy, source, overrides, new_secrets())


def _read_inside(directory: Path, rel: str) -> bytes:
    """Read a file of the legacy directory; a link out of it is refused, not followed."""
    path = directory / rel
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(directory)):
        raise StepFailed(f"{rel} points outside the bot's directory")
    if not real.is_file():
        raise StepFailed(f"{rel} is not a regular file")
    try:
        return real.read_bytes()
    except OSError as exc:
        raise StepFailed(f"{rel} cannot be read: {exc.strerror}") from None


def check_legacy_spec(spec: dict[str, Any], found: LegacyBot) -> None:
    """Refuse a legacy container that does not run from the directory found for it, or
    whose settings live outside its config.json: ftpool would start the bot without them
    (another database, no exchange keys)."""
    # Its bind mount's source as the Docker host sees it, which may differ from the
    # controller's view of BOT_BASE_DIR above <user>/<id>.
    suffix = f"/{found.user_id}/{found.id}"
    sources = [m.get("Source", "").rstrip("/") for m in spec.get("Mounts") or []]
    if not any(source.endswith(suffix) for source in sources):
        raise StepFailed(f"the container does not mount its directory (…{suffix}); "
                         "migrate it by hand")  # fmt: skip
    config = spec.get("Config") or {}
    args = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in OUTSIDE_FLAGS:
            raise StepFailed(f"the container sets {flag} on its command line; migrate it by hand")
    if sum(a.split("=", 1)[0] in ("-c", "--config") for a in args) > 1:
        raise StepFailed("the container reads several config files; migrate it by hand")
    names = sorted(e.split("=", 1)[0] for e in config.get("Env") or [])
    outside = [n for n in names if n.startswith("FREQTRADE__")]
    if outside:
        raise StepFailed(f"the container sets {', '.join(outside)}; migrate it by hand")


def _private(root: Path) -> None:
    """Only the owner may read a bot's files in a shared pool: group and other bits (and
    set-id bits) go. Links are left as they are, never followed."""
    for path in [root, *root.rglob("*")]:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _copy_trade_dbs(source: Path, target: Path) -> None:
    """Copy the trade databases (and their WAL files) from source to target, as root but
    through descriptors that follow no link: the bot could have planted links in either
    directory. The copies belong to the owner of the target directory."""
    src_fd = os.open(source, _NOFOLLOW_DIR)
    dst_fd = os.open(target, _NOFOLLOW_DIR)
    try:
        owner = os.fstat(dst_fd)
        for name in TRADE_DBS:
            try:
                main = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(main.st_mode):
                continue
            for suffix in ("", "-wal", "-shm"):
                # The target's own WAL files belong to its old database: they must go.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{name}{suffix}", dir_fd=dst_fd)
                _copy_at(src_fd, dst_fd, f"{name}{suffix}", owner.st_uid, owner.st_gid)
    finally:
        os.close(src_fd)
        os.close(dst_fd)


def _copy_at(src_fd: int, dst_fd: int, name: str, uid: int, gid: int) -> None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src_fd)
    except OSError:
        return  # absent, or a link: nothing of ours to copy
    tmp = f".{name}.ftpool-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dst_fd)
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                      dir_fd=dst_fd)  # fmt: skip
        with os.fdopen(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
            if os.geteuid() == 0:
                os.fchown(dst.fileno(), uid, gid)
    os.rename(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
