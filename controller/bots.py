"""Bot lifecycle: provision, start, stop, restart, delete, as writes of desired state.

Each operation is one store transaction that bumps the pool's generation,
followed by a push to the pool's agent. Nothing here talks to a process: the
agent converges, and a lost push is repeated on the agent's next connect.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from common.ids import check_id, check_strategy_name
from common.states import ProcessState, RunState
from controller.auth import Principal
from controller.botconfig import load_strategy, new_secrets, validate_overrides
from controller.errors import BadRequest, Conflict, NotFound, RuntimeFailure
from controller.metrics import Metrics
from controller.models import BotRecord, PoolRecord
from controller.pools import PoolManager
from controller.restarts import RestartRecord
from controller.runtimes import RuntimeState
from controller.store import NewBot, Placement

log = structlog.get_logger("controller.bots")
DELETE_WAIT = 15.0


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    instance_id: str | None
    strategy: str | None
    config: dict[str, Any]

    @classmethod
    def from_json(cls, body: object) -> ProvisionRequest:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        unknown = set(body) - {"instanceId", "strategy", "config"}
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
        instance_id = body.get("instanceId")
        if instance_id is not None:
            check_id(instance_id, "instanceId")
        strategy = body.get("strategy")
        if strategy is not None:
            check_strategy_name(strategy)
        return cls(instance_id, strategy, validate_overrides(body.get("config")))


async def _no_ids() -> set[str]:
    return set()


class BotManager:
    def __init__(
        self,
        pools: PoolManager,
        placement: Placement,
        strategies_dir: Path,
        default_strategy: str,
        metrics: Metrics,
    ) -> None:
        self.pools = pools
        self.placement = placement
        self.strategies_dir = strategies_dir
        self.default_strategy = default_strategy
        self.metrics = metrics
        self._moving: set[str] = set()  # pools whose bots are being moved elsewhere
        self.migrating: set[str] = set()  # bots in a migration run (controller/migration.py)
        # Ids of legacy bots ftpool does not manage yet (set by the app to the migrator's
        # discovery): taking one would hide that bot from its owner and from migration.
        self.legacy_ids: Callable[[], Awaitable[set[str]]] = _no_ids
        # Evacuation and migration both move bots between pools: one at a time.
        self.moves = asyncio.Lock()

    def get(self, principal: Principal, instance_id: str) -> BotRecord:
        check_id(instance_id, "instanceId")
        bot = self.pools.bots.get(instance_id)
        if bot is None:
            raise NotFound(f"bot {instance_id} not found")
        principal.require_owner(bot.user_id)
        return bot

    def visible(self, principal: Principal) -> list[BotRecord]:
        bots = self.pools.bots.values()
        if principal.is_admin:
            return sorted(bots, key=lambda b: b.port)
        return sorted((b for b in bots if b.user_id == principal.user_id), key=lambda b: b.port)

    async def provision(self, principal: Principal, req: ProvisionRequest) -> BotRecord:
        with self.metrics.allocation_seconds.time():
            return await self._provision(principal, req)

    async def _provision(self, principal: Principal, req: ProvisionRequest) -> BotRecord:
        instance_id = req.instance_id or f"{principal.user_id[:40]}-bot-{secrets.token_hex(4)}"
        if instance_id in self.pools.bots or instance_id in await self.legacy_ids():
            raise Conflict(f"bot {instance_id} already exists")
        strategy = req.strategy or self.default_strategy
        source = load_strategy(self.strategies_dir, strategy)
        token, token_hash = self.pools.new_token()
        new = NewBot(instance_id, principal.user_id, strategy, source, req.config, new_secrets())
        bot, pool, created = await self.pools.store.allocate(new, self.placement, token_hash)
        self.pools.set_pool(pool)
        self.pools.set_bot(bot)
        if created:
            try:
                await self.pools.create_runtime(pool, token)
            except Exception as exc:
                await self.undo(bot)
                raise RuntimeFailure(f"could not start pool {pool.id}: {exc}") from exc
        else:
            await self.pools.wait_created(pool.id)
        await self.pools.push(pool.id)
        log.info("bot_provisioned", bot=bot.id, user=bot.user_id, pool=pool.id, port=bot.port)
        return bot

    async def undo(self, bot: BotRecord) -> None:
        """Forget a bot whose pool could not be made, and the pool if it is empty."""
        pool = await self.pools.store.remove_bot(bot.id)
        self.pools.forget_bot(bot.id)
        if await self.pools.store.remove_pool(pool.id):
            self.pools.forget_pool(pool.id)
        else:
            self.pools.set_pool(pool)

    async def _change(
        self, bot: BotRecord, restarts: RestartRecord | None = None, **changes: Any
    ) -> BotRecord:
        updated, gen = await self.pools.store.update_bot(bot.id, restarts, **changes)
        self.pools.set_bot(updated)
        self.pools.set_generation(updated.pool_id, gen)
        await self.pools.push(updated.pool_id)
        return updated

    def _live(self, bot: BotRecord) -> None:
        if bot.deleting:
            raise Conflict(f"bot {bot.id} is being deleted")
        if bot.held or bot.id in self.migrating:
            raise Conflict(f"bot {bot.id} is being migrated; try again when it is done")
        if bot.pool_id in self._moving:
            raise Conflict(f"bot {bot.id} is being moved to another pool; try again shortly")

    async def start(self, bot: BotRecord) -> BotRecord:
        """Run the bot; a bot that should run already but does not (it exited, or the
        monitor gave up on it) is started afresh, with a clean restart record."""
        self._live(bot)
        status = self.pools.status_of(bot)
        down = bot.run == RunState.RUNNING and (
            status is None or status.state != ProcessState.RUNNING
        )
        nonce = bot.nonce + 1 if down else bot.nonce
        return await self._change(bot, RestartRecord(), run=RunState.RUNNING, nonce=nonce)

    async def stop(self, bot: BotRecord) -> BotRecord:
        self._live(bot)
        return await self._change(bot, run=RunState.STOPPED)

    async def restart(self, bot: BotRecord) -> BotRecord:
        """Restart the process (start it if stopped): a new nonce makes the agent restart it."""
        self._live(bot)
        return await self._change(bot, RestartRecord(), run=RunState.RUNNING, nonce=bot.nonce + 1)

    async def auto_restart(self, bot: BotRecord, restarts: RestartRecord) -> BotRecord:
        """The monitor's restart: the desired run state stays as the user left it."""
        return await self._change(bot, restarts, nonce=bot.nonce + 1)

    async def set_restarts(self, bot: BotRecord, restarts: RestartRecord) -> BotRecord:
        return await self._change(bot, restarts)

    async def set_held(self, bot: BotRecord, held: bool) -> BotRecord:
        """Hold the bot for a move (its agent stops it and keeps out of its directory), or
        release it (controller/migration.py)."""
        return await self._change(bot, held=int(held))

    async def evacuate(self, pool: PoolRecord) -> None:
        """Move every bot of a pool that cannot be started into other pools, with its files.

        The old pool is discarded first, so no copy of a bot can run there any more; each
        bot then starts in its new pool from its own directory (config, trade database). A
        bot whose directory could not be moved is not started: it is stopped, for an
        operator, rather than trading without its trade database.
        """
        if self.moves.locked():
            # A migration is moving a bot, perhaps of this pool: the monitor tries again.
            raise Conflict(f"pool {pool.id} is evacuated once the running migration ends")
        async with self.moves:
            await self._evacuate(pool)

    async def _evacuate(self, pool: PoolRecord) -> None:
        pools = self.pools
        # Users' changes to these bots wait (409) until they are in their new pools.
        self._moving.add(pool.id)
        try:
            await pools.runtime.discard(pool.id)
            if await pools.runtime.inspect(pool.id) == RuntimeState.RUNNING:
                raise RuntimeFailure(f"pool {pool.id} still runs; its bots stay where they are")
            await pools.finalize_deletions(pool.id)  # nothing of it runs: deleted bots are gone
            _token, token_hash = pools.new_token()
            moved, old = await pools.store.move_bots(pool.id, self.placement, token_hash)
            pools.set_pool(old)  # full, so that nothing new is placed in it
            targets = {new_pool.id for _b, new_pool, _c in moved}
            try:
                stranded = [b.id for b, new_pool, _c in moved
                            if not await self._move_files(b, pool.id, new_pool)]  # fmt: skip
                for pool_id in {p.id for _b, p, created in moved if created}:
                    # Each new pool gets a token of its own, on the record kept in memory.
                    await pools.recreate(pools.pools[pool_id])
            finally:
                for pool_id in targets:
                    await pools.push(pool_id)
        finally:
            self._moving.discard(pool.id)
        if not stranded:
            await pools.remove_empty(old)
        log.warning("pool_evacuated", pool=pool.id, bots=len(moved), stranded=stranded)

    async def _move_files(self, bot: BotRecord, from_pool: str, new_pool: PoolRecord) -> bool:
        pools = self.pools
        try:
            await pools.runtime.move_bot_files(bot.id, from_pool, new_pool.id)
            moved = True
        except OSError as exc:
            moved = False
            log.error("bot_files_not_moved", bot=bot.id, pool=from_pool, error=str(exc))
            bot, _gen = await pools.store.update_bot(bot.id, run=RunState.STOPPED)
        pools.forget_bot(bot.id)
        pools.set_pool(new_pool)
        pools.set_bot(bot)
        pools.events.emit(
            "bot_moved" if moved else "bot_move_failed", pool=new_pool.id, bot=bot.id,
            user=bot.user_id, reason="pool_lost", fromPool=from_pool, port=bot.port,
        )  # fmt: skip
        return moved

    async def delete(self, bot: BotRecord, purge: bool) -> bool:
        """Remove the bot from its pool; True once its agent confirmed it is gone."""
        if not bot.deleting:
            self._live(bot)
            bot = await self._change(bot, deleting=1, purge=int(purge))
            self.pools.mark_deleted(bot)
        started = time.monotonic()
        # Only a connected agent can confirm soon; otherwise answer 202 at once.
        wait = DELETE_WAIT if self.pools.live[bot.pool_id].connected else 0
        done = await self.pools.wait_until(lambda: bot.id not in self.pools.bots, wait)
        log.info("bot_delete_requested", bot=bot.id, pool=bot.pool_id, purge=purge,
                 confirmed=done, ms=round((time.monotonic() - started) * 1000))  # fmt: skip
        return done
