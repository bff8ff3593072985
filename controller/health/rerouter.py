"""The monitor's part for bots moved off a market-data proxy port that another process
took: it carries out what health/rerouting.py decides, and remembers per pool the bots
it asked to restart."""

from __future__ import annotations

import structlog

from controller.bots.manager import BotManager
from controller.events import EventBus
from controller.health.report import HealthReport
from controller.health.rerouting import PORT_TAKEN, reroute, should_run_in
from controller.metrics import Metrics
from controller.pools.registry import PoolRegistry

log = structlog.get_logger("controller.monitor")


class Rerouter:
    def __init__(
        self, registry: PoolRegistry, bots: BotManager, metrics: Metrics, events: EventBus
    ) -> None:
        self.registry = registry
        self.bots = bots
        self.metrics = metrics
        self.events = events
        # Per pool whose proxy's port a stranger holds: the bots restarted off it.
        self._asked: dict[str, frozenset[str]] = {}

    async def reroute(self, pool_id: str, report: HealthReport) -> None:
        """Bots running through the pool's market-data proxy while a stranger holds its
        port: each restarted once, direct (health/rerouting.py)."""
        md = self.registry.live[pool_id].market_data
        holder, routed = (md.holder, md.routed) if md is not None else (None, None)
        asked = self._asked.get(pool_id, frozenset())
        if not asked and holder != "stranger":
            return  # nearly every pool, nearly always
        bots = {b.id: b for b in self.registry.bots_in(pool_id)}
        decision = reroute(holder, routed, bots, asked, pool_id)
        if decision.asked:
            self._asked[pool_id] = decision.asked
        else:
            self._asked.pop(pool_id, None)
        for bot_id in decision.restart:
            # Re-read: each restart awaits the store, and a user's stop, delete or a move
            # made meanwhile must not be undone by a record from before.
            bot = self.registry.bots.get(bot_id)
            if bot is None or not should_run_in(bot, pool_id):
                continue
            await self.bots.auto_restart(bot, bot.restarts)  # not a failure: not counted
            self.metrics.bot_restarts.labels(PORT_TAKEN).inc()
            self.events.emit("bot_restart", pool=pool_id, bot=bot_id, user=bot.user_id,
                             reason=PORT_TAKEN, attempt=bot.restarts.attempts)  # fmt: skip
            report.recovery_actions.append({"action": "restart_bot", "instanceId": bot_id,
                                            "reason": PORT_TAKEN})  # fmt: skip
            log.warning("bot_rerouted", bot=bot_id, pool=pool_id, reason=PORT_TAKEN)
