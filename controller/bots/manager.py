"""Bot lifecycle: provision, start, stop, restart, delete, as writes of desired state.

Each operation is one store transaction that bumps the pool's generation; the registry
takes its change and pushes it to the pool's agent. Nothing here talks to a process:
the agent converges, and a lost push is repeated on the agent's next connect.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from common.ids import check_id, check_strategy_name
from common.settings import ControllerSettings
from common.states import ProcessState, RunState
from controller.auth import Principal
from controller.botconfig import load_strategy, new_secrets, validate_overrides
from controller.bots.limits import NO_LIMITS, BotLimits, RequestedLimits, parse_limits
from controller.errors import BadRequest, Conflict, NotFound, RuntimeFailure
from controller.metrics import Metrics
from controller.moves.guard import MoveGuard
from controller.pools.manager import PoolManager
from controller.records import BotRecord, RestartRecord
from controller.runtimes.legacy import LegacyContainers
from controller.store.allocation import NewBot, Placement

log = structlog.get_logger("controller.bots")
DELETE_WAIT = 15.0


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    instance_id: str | None
    strategy: str | None
    config: dict[str, Any]
    limits: RequestedLimits = RequestedLimits()

    @classmethod
    def from_json(cls, body: object) -> ProvisionRequest:
        """A provisioning request from its body ({} when the request has none)."""
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        unknown = set(body) - {"instanceId", "strategy", "config", "limits"}
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
        instance_id = body.get("instanceId")
        if instance_id is not None:
            check_id(instance_id, "instanceId")
        strategy = body.get("strategy")
        if strategy is not None:
            check_strategy_name(strategy)
        return cls(
            instance_id, strategy, validate_overrides(body.get("config")),
            parse_limits(body.get("limits")),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class BotsConfig:
    strategies_dir: Path  # strategy X is the file X.py there
    default_strategy: str
    limits: BotLimits = NO_LIMITS

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> BotsConfig:
        return cls(settings.strategies_path, settings.default_strategy,
                   BotLimits.from_settings(settings))  # fmt: skip


class BotManager:
    def __init__(
        self, pools: PoolManager, config: BotsConfig, *, placement: Placement, metrics: Metrics,
        guard: MoveGuard, legacy: LegacyContainers | None,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.registry = pools.registry  # read, and given each store write's change
        self.store = pools.store
        self.lifecycle = pools.lifecycle
        self.placement = placement
        self.strategies_dir = config.strategies_dir
        self.default_strategy = config.default_strategy
        self.limits = config.limits
        self.metrics = metrics
        # Bots being moved between pools (controller/moves/): their users' changes wait.
        self.guard = guard
        # Legacy bots ftpool does not manage yet (None: no Docker, so none): taking one's
        # id would hide that bot from its owner and from migration.
        self.legacy = legacy

    def get(self, principal: Principal, instance_id: str) -> BotRecord:
        check_id(instance_id, "instanceId")
        bot = self.registry.bots.get(instance_id)
        if bot is None:
            raise NotFound(f"bot {instance_id} not found")
        principal.require_owner(bot.user_id)
        return bot

    def visible(self, principal: Principal) -> list[BotRecord]:
        bots = self.registry.bots.values()
        if principal.is_admin:
            return sorted(bots, key=lambda b: b.port)
        return sorted((b for b in bots if b.user_id == principal.user_id), key=lambda b: b.port)

    async def provision(self, principal: Principal, req: ProvisionRequest) -> BotRecord:
        with self.metrics.allocation_seconds.time():
            return await self._provision(principal, req)

    async def _provision(self, principal: Principal, req: ProvisionRequest) -> BotRecord:
        instance_id = req.instance_id or f"{principal.user_id[:40]}-bot-{secrets.token_hex(4)}"
        if instance_id in self.registry.bots or instance_id in await self._legacy_ids():
            raise Conflict(f"bot {instance_id} already exists")
        strategy = req.strategy or self.default_strategy
        source = load_strategy(self.strategies_dir, strategy)
        self.limits.check_request(req.limits, principal.is_admin)
        token, token_hash = self.lifecycle.new_token()
        new = NewBot(instance_id, principal.user_id, strategy, source, req.config, new_secrets(),
                     req.limits.memory, req.limits.cpu)  # fmt: skip
        # The admin's own bots are not counted against any quota.
        quota = None if principal.is_admin else self.limits.quotas
        change = await self.store.allocate(new, self.placement, token_hash, quota=quota)
        await self.registry.apply(change)  # its agent, if it has one, is told
        bot = change.bot(instance_id)
        pool = change.pool(bot.pool_id)
        if pool.id in change.created:
            try:
                await self.lifecycle.create_runtime(pool, token)
            except Exception as exc:
                await self.undo(bot)
                raise RuntimeFailure(f"could not start pool {pool.id}: {exc}") from exc
        else:
            # Being made for another bot: its agent gets its desired state when it connects.
            await self.lifecycle.wait_created(pool.id)
        log.info("bot_provisioned", bot=bot.id, user=bot.user_id, pool=pool.id, port=bot.port)
        return bot

    def memory_limit(self, bot: BotRecord) -> int:
        """The bot's memory limit in bytes: its own or the default (0: none)."""
        return self.limits.memory_of(bot)

    async def quota(self, principal: Principal, user_id: str) -> dict[str, Any]:
        """A user's quota of bots as the API shows it (to the admin and that user)."""
        check_id(user_id, "userId")
        principal.require_owner(user_id)
        default = self.limits.user_max_bots
        limit, own, count = await self.store.user_quota(user_id, default)
        budget, used = await self.store.user_memory(user_id, self.limits.memory)
        max_cpu, own_cpu, cpu = await self.store.user_cpu(
            user_id, self.limits.cpu, self.limits.user_max_cpu
        )
        return {"userId": user_id, "maxBots": limit or None, "bots": count,
                "own": own, "default": default or None, "maxMemoryBytes": budget,
                "memoryBytes": used, "maxCpu": max_cpu or None, "cpu": cpu,
                "ownCpu": own_cpu, "defaultCpu": self.limits.user_max_cpu or None}  # fmt: skip

    async def set_quota(self, principal: Principal, user_id: str, **change: float | None) -> None:
        """`change`: `max_bots` (None: the default), `max_memory` (None: no budget) and/or
        `max_cpu` (None: the default)."""
        check_id(user_id, "userId")
        principal.require_admin()
        if "max_bots" in change:
            max_bots = change["max_bots"]
            await self.store.set_user_quota(user_id, None if max_bots is None else int(max_bots))
        if "max_memory" in change:
            max_memory = change["max_memory"]
            await self.store.set_user_memory_budget(
                user_id, None if max_memory is None else int(max_memory)
            )
        if "max_cpu" in change:
            await self.store.set_user_cpu_quota(user_id, change["max_cpu"])
        log.info("user_quota_set", user=user_id, **change)

    async def _legacy_ids(self) -> set[str]:
        return await self.legacy.known_ids() if self.legacy is not None else set()

    async def undo(self, bot: BotRecord) -> None:
        """Forget a bot whose pool could not be made, and the pool if it is empty."""
        await self.registry.apply(await self.store.remove_bot(bot.id))
        await self.registry.apply(await self.store.remove_pool(bot.pool_id))

    async def _change(
        self, bot: BotRecord, restarts: RestartRecord | None = None, **changes: Any
    ) -> BotRecord:
        change = await self.store.update_bot(bot.id, restarts, **changes)
        await self.registry.apply(change)
        return change.bot(bot.id)

    def _live(self, bot: BotRecord) -> None:
        if bot.deleting:
            raise Conflict(f"bot {bot.id} is being deleted")
        self.guard.refuse_if_moving(bot)

    async def start(self, bot: BotRecord) -> BotRecord:
        """Run the bot; a bot that should run already but does not (it exited, or the
        monitor gave up on it) is started afresh, with a clean restart record."""
        self._live(bot)
        status = self.registry.status_of(bot)
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

    async def stop_failed(self, bot: BotRecord, restarts: RestartRecord) -> BotRecord:
        """The monitor gave up on a bot that still runs (over its memory limit): it is
        stopped, and stays so until someone starts it."""
        return await self._change(bot, restarts, run=RunState.STOPPED)

    async def set_restarts(self, bot: BotRecord, restarts: RestartRecord) -> BotRecord:
        return await self._change(bot, restarts)

    async def delete(self, bot: BotRecord, purge: bool) -> bool:
        """Remove the bot from its pool; True once its agent confirmed it is gone."""
        if not bot.deleting:
            self._live(bot)
            bot = await self._change(bot, deleting=1, purge=int(purge))
        started = time.monotonic()
        # Only a connected agent can confirm soon; otherwise answer 202 at once.
        wait = DELETE_WAIT if self.registry.live[bot.pool_id].connected else 0
        done = await self.pools.sessions.wait_until(lambda: bot.id not in self.registry.bots, wait)
        log.info("bot_delete_requested", bot=bot.id, pool=bot.pool_id, purge=purge,
                 confirmed=done, ms=round((time.monotonic() - started) * 1000))  # fmt: skip
        return done
