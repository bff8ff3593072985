"""What the controller says of a bot's and of the fleet's health, from the records and
the agents' last reports: the words API answers and metrics use, and whether a bot is
healthy (the monitor's view too)."""

from __future__ import annotations

from typing import Any

from common.protocol import BotStatus
from common.states import AT_REST, BotStatusWord, FleetHealth, ProcessState, RunState
from controller.pools.manager import PoolManager
from controller.records import BotRecord

# Members looked up once (an enum's member is an attribute lookup on its class each time).
_RUNNING, _STARTING = ProcessState.RUNNING, ProcessState.STARTING
_KEPT_STOPPED = RunState.STOPPED


def bot_healthy(pools: PoolManager, bot: BotRecord) -> bool:
    return is_healthy(bot, pools.registry.status_of(bot))


def is_healthy(bot: BotRecord, status: BotStatus | None) -> bool:
    """A bot is healthy as its agent last reported it: at rest if stopped, else running,
    answering its ping, on a port of its own."""
    if bot.run == _KEPT_STOPPED:
        return status is None or status.state in AT_REST
    return (
        status is not None
        and status.state == _RUNNING
        and status.ping_ok is not False
        and status.port_ok is not False
    )


def serves(status: BotStatus | None) -> bool:
    """Whether a bot may get traffic (and so its credentials): its agent saw it RUNNING, or
    still STARTING in supervisord's eyes (its startsecs have not passed) but answering its
    agent's ping already, as that very process (the agent forgets the answers of a process
    it no longer runs). An agent of the previous version reports no ping while a bot
    starts: its bots get traffic once RUNNING, as before."""
    if status is None:
        return False
    return status.state == _RUNNING or (status.state == _STARTING and status.ping_ok is True)


def bot_status_word(pools: PoolManager, bot: BotRecord) -> BotStatusWord:
    if bot.deleting:
        return BotStatusWord.DELETING
    if bot.held:
        return BotStatusWord.MIGRATING
    # The monitor gave up on it (and stopped it, if it ran over its memory limit): a start or
    # restart tries again.
    if bot.restarts.failed and (bot.run == RunState.RUNNING or bot.restarts.memory):
        return BotStatusWord.FAILED
    status = pools.registry.status_of(bot)
    if status is None:
        return BotStatusWord.PENDING
    # The last report of a pool we cannot hear from may be out of date.
    if pools.sessions.is_suspect(bot.pool_id):
        return BotStatusWord.UNKNOWN
    return BotStatusWord.of_process(status.state)


def fleet_health(pools: PoolManager) -> dict[str, Any]:
    """Pools and bots counted healthy or not, and the word for all of them together."""
    pool_ids = list(pools.registry.pools)
    healthy_pools = sum(1 for p in pool_ids if not pools.sessions.is_suspect(p))
    bots = [b for b in pools.registry.bots.values() if not b.deleting]
    running = [b for b in bots if b.run == RunState.RUNNING]
    healthy_bots = sum(1 for b in running if bot_healthy(pools, b))
    unhealthy = (len(pool_ids) - healthy_pools) + (len(running) - healthy_bots)
    if unhealthy == 0:
        overall = FleetHealth.HEALTHY
    elif healthy_pools == 0 and pool_ids:
        overall = FleetHealth.UNHEALTHY
    else:
        overall = FleetHealth.DEGRADED
    return {
        "status": overall,
        "pools": {
            "total": len(pool_ids),
            "healthy": healthy_pools,
            "unhealthy": len(pool_ids) - healthy_pools,
        },
        "bots": {
            "total": len(bots),
            "healthy": healthy_bots,
            "unhealthy": len(running) - healthy_bots,
            "stopped": len(bots) - len(running),
        },
    }
