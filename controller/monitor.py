"""Health evaluation and recovery, from the agents' latest reports.

Pools: a pool whose agent is gone or silent for POOL_GRACE is suspect; the
runtime is asked what it really is before anything is done (principle 4), and
a pool that exited or vanished is started again. Bots: a bot that should run
but is FATAL, or whose ping keeps failing, is restarted through its nonce, at
most MAX_RESTART_ATTEMPTS times before a RESTART_COOLDOWN pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from controller.bots import BotManager
from controller.errors import FtpoolError
from controller.events import EventBus
from controller.metrics import Metrics
from controller.models import BotRecord
from controller.pools import PoolManager
from controller.runtimes import RuntimeState

log = structlog.get_logger("controller.monitor")
FAILED_PINGS_BEFORE_RESTART = 3
# A bot's API takes a few seconds to come up; don't judge its ping before that.
PING_GRACE_SECONDS = 60


@dataclass
class RestartBudget:
    attempts: int = 0
    last_attempt: float = 0.0


@dataclass
class HealthReport:
    timestamp: str
    pools: list[dict[str, Any]] = field(default_factory=list)
    bots: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    recovery_actions: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "success": True, "timestamp": self.timestamp, "pools": self.pools,
            "bots": self.bots, "issues": self.issues,
            "recoveryActions": self.recovery_actions, "durationMs": self.duration_ms,
        }  # fmt: skip


def bot_healthy(pools: PoolManager, bot: BotRecord) -> bool:
    status = pools.status_of(bot)
    if bot.run == "stopped":
        return status is None or status.state in ("STOPPED", "EXITED", "ABSENT")
    return (
        status is not None
        and status.state == "RUNNING"
        and status.ping_ok is not False
        and status.port_ok is not False
    )


class Monitor:
    def __init__(
        self,
        pools: PoolManager,
        bots: BotManager,
        interval: float,
        max_restarts: int,
        cooldown: float,
        metrics: Metrics,
        *,
        events: EventBus,
    ) -> None:
        self.metrics = metrics
        self.events = events
        # The seed's monitor.addListener: every health and recovery event, as it is stored.
        self.add_listener = events.add_listener
        # Pools seen suspect, so that becoming suspect and healthy again are one event each.
        self._suspect: set[str] = set()
        self.pools = pools
        self.bots = bots
        self.interval = interval
        self.max_restarts = max_restarts
        self.cooldown = cooldown
        self.last_report: HealthReport | None = None
        self._budgets: dict[str, RestartBudget] = {}
        self._failed_pings: dict[str, int] = {}
        self._down_since: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()

    def check_soon(self) -> None:
        """Evaluate at once instead of at the next interval (a runtime saw a pool die)."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.interval)
            self._wakeup.clear()
            try:
                await self.evaluate()
            except Exception:
                log.exception("health_check_failed")

    async def evaluate(self) -> HealthReport:
        async with self._lock:
            started = time.monotonic()
            report = HealthReport(timestamp=datetime.now(UTC).isoformat())
            for pool_id in list(self.pools.pools):
                if pool_id not in self.pools.pools or self.pools.creating(pool_id):
                    continue  # removed meanwhile, or its runtime is being made right now
                try:
                    await self._check_pool(pool_id, report)
                except FtpoolError as exc:
                    # One pool the runtime cannot answer for must not stop the others' checks.
                    report.issues.append(
                        {"type": "pool_check_failed", "poolId": pool_id, "error": str(exc)}
                    )
            for bot_id in list(self.pools.bots):
                # Re-read each record: the checks above may have awaited for a while, and a
                # user's stop or delete made meanwhile must not be undone.
                bot = self.pools.bots.get(bot_id)
                if bot is not None:
                    await self._check_bot(bot, report)
            report.duration_ms = round((time.monotonic() - started) * 1000, 2)
            self.last_report = report
            log.info("health_check_complete", issues=len(report.issues),
                     actions=len(report.recovery_actions), ms=report.duration_ms)  # fmt: skip
            return report

    async def _check_pool(self, pool_id: str, report: HealthReport) -> None:
        pool = self.pools.pools[pool_id]
        live = self.pools.live[pool_id]
        entry: dict[str, Any] = {"id": pool_id, "connected": live.connected, "healthy": True}
        report.pools.append(entry)
        if not self.pools.is_suspect(pool_id):
            if pool_id in self._suspect:
                self._suspect.discard(pool_id)
                self.events.emit("pool_healthy", pool=pool_id)
            return
        state = await self.pools.runtime.inspect(pool_id)
        entry.update(healthy=False, runtime=str(state))
        silent = round(time.time() - (live.last_seen or live.disconnected_at), 1)
        report.issues.append({"type": "pool_suspect", "poolId": pool_id, "runtime": str(state),
                              "silentSeconds": silent})  # fmt: skip
        if pool_id not in self._suspect:
            self._suspect.add(pool_id)
            self.events.emit("pool_suspect", pool=pool_id, reason=str(state),
                             silentSeconds=silent, connected=live.connected)  # fmt: skip
        if state == RuntimeState.MISSING:
            # Nothing of it runs anywhere: its deleted bots are gone for sure.
            await self.pools.finalize_deletions(pool_id)
        if not self.pools.bots_in(pool_id):
            return
        action = None
        if state == RuntimeState.MISSING:
            action = "recreate"
            coro = self.pools.recreate(pool)
        elif state == RuntimeState.EXITED:
            action = "restart"
            coro = self.pools.runtime.restart(pool_id)
        elif not live.connected and time.time() - live.disconnected_at > self.pools.pool_grace:
            # Running, but its agent has not reconnected for a whole grace period.
            action = "restart"
            coro = self.pools.runtime.restart(pool_id)
        else:
            return
        try:
            await coro
            report.recovery_actions.append({"action": action, "poolId": pool_id, "ok": True})
            self.events.emit("pool_recovery", pool=pool_id, reason=action, ok=True)
            self.metrics.pool_recoveries.labels(action, "ok").inc()
        except FtpoolError as exc:
            report.recovery_actions.append(
                {"action": action, "poolId": pool_id, "ok": False, "error": str(exc)}
            )
            self.events.emit("pool_recovery", pool=pool_id, reason=action, ok=False,
                             error=str(exc))  # fmt: skip
            self.metrics.pool_recoveries.labels(action, "failed").inc()
        log.warning("pool_recovery", pool=pool_id, action=action)

    async def _check_bot(self, bot: BotRecord, report: HealthReport) -> None:
        status = self.pools.status_of(bot)
        healthy = bot_healthy(self.pools, bot)
        report.bots.append({
            "instanceId": bot.id, "poolId": bot.pool_id, "desired": bot.run,
            "state": status.state if status else "UNKNOWN",
            "ping": status.ping_ok if status else None, "healthy": healthy,
        })  # fmt: skip
        if bot.deleting or bot.run != "running" or self.pools.is_suspect(bot.pool_id):
            return
        if healthy:
            self._failed_pings.pop(bot.id, None)
            self._down_since.pop(bot.id, None)
            if status and time.time() - status.since > self.cooldown:
                self._budgets.pop(bot.id, None)
            return
        reason = self._restart_reason(bot)
        if reason is None:
            return
        report.issues.append({"type": reason, "instanceId": bot.id, "poolId": bot.pool_id})
        budget = self._budgets.setdefault(bot.id, RestartBudget())
        now = time.monotonic()
        if budget.attempts >= self.max_restarts:
            if now - budget.last_attempt < self.cooldown:
                report.issues.append({"type": "restart_cooldown", "instanceId": bot.id})
                return
            budget.attempts = 0
        budget.attempts += 1
        budget.last_attempt = now
        self._failed_pings.pop(bot.id, None)
        if self.pools.bots.get(bot.id) is not bot:
            return  # changed by a user while this check ran: their word wins
        await self.bots.restart(bot)
        self.metrics.bot_restarts.labels(reason).inc()
        self.events.emit("bot_restart", pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                         reason=reason, attempt=budget.attempts)  # fmt: skip
        report.recovery_actions.append(
            {"action": "restart_bot", "instanceId": bot.id, "attempt": budget.attempts}
        )
        log.warning("bot_auto_restart", bot=bot.id, pool=bot.pool_id, reason=reason,
                    attempt=budget.attempts)  # fmt: skip

    def _restart_reason(self, bot: BotRecord) -> str | None:
        status = self.pools.status_of(bot)
        if status is None or status.state in ("STARTING", "BACKOFF", "STOPPING"):
            return None
        if status.state == "FATAL":
            return "bot_not_running"  # supervisord gave up on it
        if status.state in ("EXITED", "STOPPED", "ABSENT", "UNKNOWN"):
            # supervisord restarts an exited bot by itself; act only when it stays down
            # since the previous evaluation, which saw the very same exit.
            seen = self._down_since.get(bot.id)
            self._down_since[bot.id] = status.since
            return "bot_not_running" if seen == status.since else None
        self._down_since.pop(bot.id, None)
        if status.ping_ok is False and time.time() - status.since > PING_GRACE_SECONDS:
            failed = self._failed_pings.get(bot.id, 0) + 1
            self._failed_pings[bot.id] = failed
            if failed >= FAILED_PINGS_BEFORE_RESTART:
                return "bot_not_responding"
        return None
