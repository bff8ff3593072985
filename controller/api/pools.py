"""/api/pool: the seed's pool endpoints (status, health-check, cleanup) and each pool's
launch mode and preloader; a bot's place is /api/pool/bot (api/pool_bot.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from common.protocol import LAUNCH_MODES, PoolStats
from common.states import PoolStatusWord
from controller.api.middleware import principal, read_json
from controller.api.spec import (
    ADMIN,
    ANY_LIST,
    BOOL,
    INT,
    LAUNCH,
    NUM,
    STR,
    TRUE,
    Operations,
    answer,
    json_body,
    nullable,
    obj,
    op,
    ref,
)  # fmt: skip
from controller.api.views import market_data_view
from controller.bots.limits import NO_LIMITS, BotLimits, limits_mode
from controller.bots.locations import BotContainerMapper
from controller.errors import BadRequest, FtpoolError
from controller.health.monitor import Monitor
from controller.health.status import fleet_health
from controller.pools.manager import PoolManager
from controller.pools.savings import PoolMemory, fleet_saving, pool_saving
from controller.records import BotRecord, PoolRecord
from controller.upgrade.census import FRESH, ImageCensus

log = structlog.get_logger("controller.api.pools")
_LAUNCH_VIEW = answer(obj({
    "success": TRUE, "poolId": STR, "launch": LAUNCH, "override": nullable(LAUNCH),
    "preloaderRestarts": INT, "generation": INT,
}))  # fmt: skip
_MARKET_DATA_VIEW = answer(obj({
    "success": TRUE, "poolId": STR, "proxy": BOOL, "override": nullable(BOOL),
    "generation": INT,
}))  # fmt: skip
OPERATIONS: Operations = {
    ("GET", "/api/pool/status"): op(
        "pools with their bots, capacity, memory, CPU, agent and health", security=ADMIN,
        tags=("pools",),
        ok={200: answer(obj({
            "success": TRUE, "poolMode": BOOL, "runtime": STR, "totalPools": INT,
            "totalBots": INT, "pools": {"type": "array", "items": ref("Pool")},
            "unknownPools": ANY_LIST, "legacyBots": ANY_LIST, "health": ref("FleetHealth"),
            "memorySaved": ref("MemorySaved"),
        }))},
    ),
    ("POST", "/api/pool/health-check"): op(
        "evaluate health now and run recovery", security=ADMIN, tags=("pools",),
        ok={200: answer(obj({
            "success": TRUE, "timestamp": STR, "pools": ANY_LIST, "bots": ANY_LIST,
            "issues": ANY_LIST, "recoveryActions": ANY_LIST, "durationMs": NUM,
        }))},
    ),
    ("POST", "/api/pool/cleanup"): op(
        "remove pools empty for POOL_CLEANUP_GRACE", security=ADMIN, tags=("pools",),
        ok={200: answer(obj({"success": TRUE, "removedPools": INT, "message": STR}))},
    ),
    ("PUT", "/api/pool/pools/{poolId}/launch"): op(
        "how this pool starts its bots (null: BOT_LAUNCH)", security=ADMIN, tags=("pools",),
        body=json_body(obj({"launch": nullable(LAUNCH)})), errors=(404,),
        ok={200: _LAUNCH_VIEW},
    ),
    ("PUT", "/api/pool/pools/{poolId}/market-data"): op(
        "turn this pool's market-data proxy on or off (null: MARKET_DATA_PROXY)",
        security=ADMIN, tags=("pools",), body=json_body(obj({"proxy": nullable(BOOL)})),
        errors=(404, 409), ok={200: _MARKET_DATA_VIEW},
    ),
    ("POST", "/api/pool/pools/{poolId}/preloader/restart"): op(
        "restart the pool's preloader once", security=ADMIN, tags=("pools",),
        errors=(404, 409), ok={200: _LAUNCH_VIEW},
    ),
}  # fmt: skip


async def _admins_switch(
    request: web.Request, key: str, valid: Callable[[Any], bool], values: str
) -> Any:
    """An admin's body `{key: value}` with a valid value: the value."""
    principal(request).require_admin()
    body = await read_json(request)
    if not isinstance(body, dict) or key not in body or not valid(body[key]):
        raise BadRequest(f'body must be {{"{key}": {values}}}')
    return body[key]


class APIPools:
    operations = OPERATIONS

    def __init__(
        self, pools: PoolManager, monitor: Monitor, mapper: BotContainerMapper, *,
        pool_mode: bool, cleanup_grace: float, limits: BotLimits = NO_LIMITS,
        census: ImageCensus | None = None, legacy_container_bytes: int = 0,
    ) -> None:  # fmt: skip
        # One bot in a container of its own: what pooling's saving is measured against.
        self.legacy_container_bytes = legacy_container_bytes
        self.census = census  # which image each pool runs (controller/upgrade/census.py)
        self.mapper = mapper
        self.limits = limits
        self.pools = pools
        self.monitor = monitor
        self.pool_mode = pool_mode
        self.cleanup_grace = cleanup_grace

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/pool/status", self.status),
            web.post("/api/pool/health-check", self.health_check),
            web.post("/api/pool/cleanup", self.cleanup),
            web.put("/api/pool/pools/{poolId}/launch", self.set_launch),
            web.post("/api/pool/pools/{poolId}/preloader/restart", self.restart_preloader),
            web.put("/api/pool/pools/{poolId}/market-data", self.set_market_data),
        ]

    async def _pool_view(self, pool_id: str) -> dict[str, Any]:
        pool = self.pools.registry.pools[pool_id]
        live = self.pools.registry.live[pool_id]
        bots = self.pools.registry.bots_in(pool_id)
        suspect = self.pools.sessions.is_suspect(pool_id)
        status = PoolStatusWord.SUSPECT if suspect else PoolStatusWord.RUNNING
        stats = live.stats
        try:
            usage = await self.pools.runtime.stats(pool_id)
        except FtpoolError as exc:
            log.warning("pool_stats_failed", pool=pool_id, error=str(exc))
            usage = None
        view: dict[str, Any] = {
            "id": pool.id,
            "containerName": pool.container_name,
            # The machine it runs on: the swarm node it is pinned to (null until known), the
            # Docker daemon's host, or this one.
            "node": await self.pools.runtime.node_of(pool_id),
            "mode": "legacy" if pool.legacy_of else "pooled",
            "status": status,
            "botsCount": len(bots),
            "capacity": pool.capacity,
            "utilizationPercent": round(100 * len(bots) / pool.capacity),
            "bots": [b.id for b in bots],
            "ports": {"start": pool.port_start, "end": pool.port_start + pool.capacity - 1},
            "owner": pool.owner,
            # Its bots are being moved out (or one's files could not be): it takes no bot.
            "draining": pool.draining,
            # The image its container runs, and the FreqTrade version its agent reports.
            "image": self.census.pool_view(pool_id) if self.census else None,
            "memory": {
                # As the agent measures it: the container's cgroup, or the pool's processes.
                "usedBytes": stats.mem_used if stats else None,
                "limitBytes": (stats.mem_limit if stats else 0) or None,
                # As the runtime accounts it: Docker's stats, or the supervisord process tree.
                "runtimeBytes": usage.memory_bytes if usage else None,
            },
            "runningBots": self._running(bots),
            "freqtrade": live.freqtrade_version or None,
            "cpuPercent": stats.cpu if stats else None,
            "limits": self._limits_view(bots, stats),
            "launch": {
                "mode": self.pools.registry.launch_mode(pool),
                "override": pool.launch,
                # supervisord's state of the preloader, as the agent last reported it.
                "preloader": live.preloader,
                "preloaderRestarts": pool.preloader_nonce,
            },
            # The pool's shared exchange cache: what its bots asked, what reached the exchange.
            "marketData": market_data_view(live.market_data),
            "lastRuntimeEvent": {"action": live.runtime_event, "at": live.runtime_event_at}
            if live.runtime_event
            else None,
            "agent": {
                "connected": live.connected,
                "version": live.agent_version or None,
                "lastHeartbeatAgoSeconds": round(time.time() - live.last_seen, 1)
                if live.last_seen
                else None,
                "generation": pool.generation,
                "appliedGeneration": live.acked_gen,
            },
        }
        memory = pool_memory(view)
        # Against its running bots in containers of their own (docs/dashboard.md).
        view["memory"]["savedBytes"] = (
            pool_saving(memory, self.legacy_container_bytes) if memory else None
        )
        return view

    def _running(self, bots: list[BotRecord]) -> int:
        return sum(1 for b in bots if (s := self.pools.registry.status_of(b)) and s.pid)

    def _limits_view(self, bots: list[BotRecord], stats: PoolStats | None) -> dict[str, Any]:
        """How the pool's bots are limited: in `measured` mode the agent measures each
        bot's own memory and the monitor restarts one over its limit; `+oom_score_adj`:
        its agent reports the kernel would kill a bot before its machinery; `cgroup-v1`,
        `cgroup-v2`: each bot has a cgroup of its own, its limits the kernel's
        (docs/limits.md)."""
        statuses = [self.pools.registry.status_of(b) for b in bots]
        own = [s.uss for s in statuses if s and s.uss]
        limits = [self.limits.memory_of(b) for b in bots]
        cpus = [self.limits.cpu_of(b) for b in bots]
        return {
            "mode": limits_mode(stats),
            "oomGuard": stats.oom_guard if stats else None,
            "botMemoryLimitsBytes": sum(limits) if all(limits) and limits else None,
            "botsOwnMemoryBytes": sum(own) if own else None,
            # The sum of its bots' CPU limits when each has one, in CPUs.
            "botCpuLimits": round(sum(cpus), 3) if all(cpus) and cpus else None,
            # What its agent does to a busy bot (None: nothing, or not known), and to whom now.
            "busyPolicy": stats.busy_policy if stats else None,
            "deprioritised": [b.id for b, s in zip(bots, statuses, strict=True)
                              if s is not None and s.pid and s.busy_since is not None],
        }  # fmt: skip

    def _launch_view(self, pool: PoolRecord) -> dict[str, Any]:
        return {
            "success": True,
            "poolId": pool.id,
            "launch": self.pools.registry.launch_mode(pool),
            "override": pool.launch,
            "preloaderRestarts": pool.preloader_nonce,
            "generation": pool.generation,
        }

    async def set_launch(self, request: web.Request) -> web.Response:
        launch = await _admins_switch(
            request, "launch", lambda v: v is None or v in LAUNCH_MODES, '"preload" | "exec" | null'
        )
        pool = await self.pools.lifecycle.set_launch(request.match_info["poolId"], launch)
        return web.json_response(self._launch_view(pool))

    async def set_market_data(self, request: web.Request) -> web.Response:
        proxy = await _admins_switch(
            request, "proxy", lambda v: v is None or isinstance(v, bool), "true | false | null"
        )
        pool = await self.pools.lifecycle.set_market_data(request.match_info["poolId"], proxy)
        default = self.pools.lifecycle.config.market_data_base_port is not None
        return web.json_response({
            "success": True, "poolId": pool.id,
            "proxy": default if pool.market_data is None else pool.market_data,
            "override": pool.market_data, "generation": pool.generation,
        })  # fmt: skip

    async def restart_preloader(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        pool = await self.pools.lifecycle.restart_preloader(request.match_info["poolId"])
        return web.json_response(self._launch_view(pool))

    async def status(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        if self.census is not None:
            await self.census.refresh(max_age=FRESH)
        ordered = sorted(self.pools.registry.pools.values(), key=lambda p: p.num)
        pools = await asyncio.gather(*(self._pool_view(p.id) for p in ordered))
        memories = [m for view in pools if (m := pool_memory(view))]
        try:
            discovered = await self.mapper.legacy_bots()
        except FtpoolError as exc:
            log.warning("legacy_discovery_failed", error=str(exc))
            discovered = {}
        return web.json_response(
            {
                "success": True,
                "poolMode": self.pool_mode,
                "runtime": self.pools.runtime.name,
                "totalPools": len(pools),
                "totalBots": sum(p["botsCount"] for p in pools),
                "pools": pools,
                # Pools the runtime has that the store does not know: reported, never touched.
                "unknownPools": self.pools.lifecycle.unknown_pools,
                # Legacy containers ftpool did not provision (BOT_BASE_DIR/<user>/<bot>/):
                # shown, and left alone until they are migrated.
                "legacyBots": [b.view() for b in discovered.values()],
                "health": fleet_health(self.pools),
                # What the pools save against one container per bot (an estimate).
                "memorySaved": fleet_saving(memories, self.legacy_container_bytes),
                # POOL_IMAGE, and the pools whose container runs another image.
                **(self.census.summary() if self.census else {}),
            }
        )

    async def health_check(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        report = await self.monitor.evaluate()
        return web.json_response(report.to_json())

    async def cleanup(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        removed = await self.pools.lifecycle.cleanup(self.cleanup_grace)
        return web.json_response(
            {
                "success": True,
                "removedPools": removed,
                "message": f"Cleaned up {removed} empty pool containers",
            }
        )


def pool_memory(view: dict[str, Any]) -> PoolMemory | None:
    """A pooled pool's memory for the saving (none for a legacy container): as the runtime
    accounts it (Docker's stats, as the legacy figure was measured), else as its agent does."""
    if view["mode"] != "pooled":
        return None
    memory = view["memory"]
    used = memory["runtimeBytes"] if memory["runtimeBytes"] is not None else memory["usedBytes"]
    return PoolMemory(view["runningBots"], used)
