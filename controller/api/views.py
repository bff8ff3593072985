"""The JSON view of a bot for API answers; never a credential."""

from __future__ import annotations

import time
from typing import Any

from common.protocol import BotStatus, MarketDataStats, PoolStats, UpstreamStats
from controller.bots.limits import NO_LIMITS, BotLimits, limits_mode
from controller.health.status import bot_status_word
from controller.pools.live import exchange_totals
from controller.pools.manager import PoolManager
from controller.records import BotRecord


def bot_view(pools: PoolManager, bot: BotRecord, limits: BotLimits = NO_LIMITS) -> dict[str, Any]:
    """`limits`: the defaults of bots' limits, for a bot without its own."""
    status = pools.registry.status_of(bot)
    live = pools.registry.live.get(bot.pool_id)
    process = None
    if status is not None:
        alive = status.pid > 0
        process = {
            "state": status.state,
            "pid": status.pid or None,
            "uptimeSeconds": round(time.time() - status.since, 1) if alive else None,
            "exitStatus": status.exit_status,
            "memoryBytes": status.rss,
            # Its own memory (USS), what its limit is checked against; None: not measured.
            "ownMemoryBytes": status.uss,
            "cpuPercent": status.cpu,
            # Its scheduling priority: 19 once it ran busy for a whole window (docs/limits.md).
            "nice": status.nice,
            "ping": {"ok": status.ping_ok, "ms": status.ping_ms},
            "portOk": status.port_ok,
            "stale": pools.sessions.is_suspect(bot.pool_id),
        }
    return {
        "instanceId": bot.id,
        "userId": bot.user_id,
        "poolId": bot.pool_id,
        "port": bot.port,
        "strategy": bot.strategy,
        "desired": bot.run,
        "status": bot_status_word(pools, bot),
        "process": process,
        "restarts": {
            "attempts": bot.restarts.attempts,
            "cycles": bot.restarts.cycles,
            "lastAt": bot.restarts.last or None,
            "failed": bot.restarts.failed,
            "memoryLimit": bot.restarts.memory,
        },
        **limits_view(pools, bot, limits),
        "createdAt": bot.created_at,
        # The FreqTrade version its pool's image has, as the agent reports it (None: unknown).
        "freqtrade": (live.freqtrade_version if live else "") or None,
    }


def limits_view(pools: PoolManager, bot: BotRecord, limits: BotLimits) -> dict[str, Any]:
    """A bot's limits, what it uses against each (as its agent last measured), and whether
    its agent deprioritises it as busy (docs/limits.md)."""
    status = pools.registry.status_of(bot)
    live = pools.registry.live.get(bot.pool_id)
    stats = live.stats if live else None
    memory, cpu = limits.memory_of(bot), limits.cpu_of(bot)
    alive = status is not None and status.pid > 0
    used_cpu = status.cpu if alive and status else None
    own = status.uss if alive and status else None
    return {
        "limits": {
            "memoryBytes": memory or None, "own": bot.memory_limit is not None,
            "cpu": cpu or None, "cpuOwn": bot.cpu_limit is not None,
            "cpuEnforcement": cpu_enforcement(stats) if cpu else None,
        },
        "usage": {
            "cpu": {"percent": used_cpu, "limitPercent": round(cpu * 100, 1) or None,
                    "ofLimitPercent": share(used_cpu, cpu * 100)},
            "memory": {"ownBytes": own, "limitBytes": memory or None,
                       "ofLimitPercent": share(own, memory)},
        },
        "busy": busy_view(status if alive else None, stats),
    }  # fmt: skip


def share(used: float | None, limit: float) -> float | None:
    """`used` in percent of `limit` (None: either unknown)."""
    return round(100 * used / limit, 1) if used is not None and limit else None


def cpu_enforcement(stats: PoolStats | None) -> str:
    """How a bot's CPU limit holds in its pool: `cgroup` (its group's quota, the kernel's),
    `priority` (no cgroups: its agent deprioritises it when it runs busy, agent/cpu.py), or
    `none` (neither: the pool's agent reports no busy rule, or is not known yet)."""
    if limits_mode(stats).startswith("cgroup"):
        return "cgroup"
    return "priority" if stats is not None and stats.busy_policy else "none"


def busy_view(status: BotStatus | None, stats: PoolStats | None) -> dict[str, Any]:
    """Whether its agent deprioritises the bot now as busy, since when, and how (its
    pool's BOT_BUSY_POLICY); `deprioritised` None: not known (no process, the rule off, or
    an agent from before it)."""
    policy = stats.busy_policy if stats else None
    known = status is not None and policy is not None
    since = status.busy_since if status is not None else None
    return {"deprioritised": (since is not None) if known else None, "since": since,
            "policy": policy}  # fmt: skip


def _upstream_view(u: UpstreamStats) -> dict[str, Any]:
    return {
        "requests": u.requests, "cacheHits": u.hits, "coalesced": u.coalesced,
        "upstreamRequests": u.upstream, "passedThrough": u.passthrough, "refused": u.refused,
        "errors": u.errors, "publicWeight": u.weight, "usedWeight": u.used_weight,
        "backoffs": u.backoffs, "backoffSecondsLeft": u.backoff_s,
    }  # fmt: skip


def market_data_view(stats: MarketDataStats | None) -> dict[str, Any] | None:
    """A pool's market-data proxy as its agent last reported it; None: the pool runs none."""
    if stats is None:
        return None
    return {
        "state": stats.state,
        "portHolder": stats.holder,
        "cache": {"bytes": stats.cache_bytes, "entries": stats.cache_entries},
        "exchanges": {
            name: {
                **_upstream_view(total),
                "upstreams": [
                    {"origin": u.origin, **_upstream_view(u)}
                    for u in stats.upstreams if u.exchange == name
                ],
            }
            for name, total in sorted(exchange_totals(stats).items())
        },
    }  # fmt: skip
