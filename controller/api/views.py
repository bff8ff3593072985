"""The JSON view of a bot for API answers; never a credential."""

from __future__ import annotations

import time
from typing import Any

from controller.health.status import bot_status_word
from controller.pools.manager import PoolManager
from controller.records import BotRecord


def bot_view(pools: PoolManager, bot: BotRecord) -> dict[str, Any]:
    status = pools.registry.status_of(bot)
    process = None
    if status is not None:
        alive = status.pid > 0
        process = {
            "state": status.state,
            "pid": status.pid or None,
            "uptimeSeconds": round(time.time() - status.since, 1) if alive else None,
            "exitStatus": status.exit_status,
            "memoryBytes": status.rss,
            "cpuPercent": status.cpu,
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
        },
        "createdAt": bot.created_at,
    }
