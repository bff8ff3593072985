"""The JSON view of a bot for API answers; never a credential."""

from __future__ import annotations

import time
from typing import Any

from common.protocol import MarketDataStats, UpstreamStats
from controller.health.status import bot_status_word
from controller.pools.live import exchange_totals
from controller.pools.manager import PoolManager
from controller.records import BotRecord


def bot_view(pools: PoolManager, bot: BotRecord, memory_limit: int = 0) -> dict[str, Any]:
    """`memory_limit`: the bot's in bytes, its own or the default (0: none)."""
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
        "limits": {"memoryBytes": memory_limit or None, "own": bot.memory_limit is not None},
        "createdAt": bot.created_at,
        # The FreqTrade version its pool's image has, as the agent reports it (None: unknown).
        "freqtrade": (live.freqtrade_version if live else "") or None,
    }


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
