"""Health evaluation and recovery, from the agents' latest reports.

Pools: a pool whose agent is gone or silent for POOL_GRACE is suspect; the
runtime is asked what it really is before anything is done (principle 4), and
a pool that exited or vanished is started again. Bots: supervisord restarts
nothing by itself; a bot that should run but exited, or whose API has not
answered for BOT_UNRESPONSIVE_TIMEOUT, is restarted through its nonce as the
restart policy (controller/health/restarts.py) allows. A bot its user stopped is never
touched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from common.settings import ControllerSettings
from common.states import DIED, TRANSITIONAL, ProcessState, RunState
from controller.bots.manager import BotManager
from controller.errors import FtpoolError
from controller.events import EventBus
from controller.health.restarts import RestartPolicy, Verdict, decide
from controller.health.status import bot_healthy
from controller.metrics import Metrics
from controller.moves.evacuation import Evacuation
from controller.pools.alarm import Alarm
from controller.pools.manager import PoolManager
from controller.records import BotRecord, PoolRecord, RestartRecord
from controller.runtimes import RuntimeState

log = structlog.get_logger("controller.monitor")
RECOVERY_RETRY_SECONDS = 2.0
# A lost pool's bots move elsewhere only after this many POOL_GRACE periods of failed starts.
EVACUATE_AFTER_GRACES = 3


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


def _said(exc: Exception) -> str:
    """What a report says of a failure: our own errors' words; of anything else its type,
    its details go to the log."""
    if isinstance(exc, FtpoolError):
        return str(exc)
    log.error("unexpected_error", error_type=type(exc).__name__, exc_info=exc)
    return f"unexpected {type(exc).__name__}"


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    interval: float  # seconds between evaluations (HEALTH_CHECK_INTERVAL)
    policy: RestartPolicy
    unresponsive_after: float  # seconds a running bot's ping may fail
    # Starts of a pool that never became healthy before its bots are moved elsewhere.
    pool_starts: int = 3

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> MonitorConfig:
        policy = RestartPolicy(
            max_attempts=settings.max_restart_attempts,
            backoff=settings.restart_backoff_ms / 1000,
            cooldown=settings.restart_cooldown_ms / 1000,
            cycles=settings.restart_cycles,
            reset_after=settings.restart_reset_after_ms / 1000,
        )
        return cls(
            interval=settings.health_check_interval_ms / 1000, policy=policy,
            unresponsive_after=settings.bot_unresponsive_ms / 1000,
            pool_starts=settings.pool_start_attempts,
        )  # fmt: skip


class Monitor:
    def __init__(
        self, pools: PoolManager, bots: BotManager, config: MonitorConfig, *, metrics: Metrics,
        events: EventBus, evacuation: Evacuation, alarm: Alarm,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.registry = pools.registry
        self.sessions = pools.sessions
        self.lifecycle = pools.lifecycle
        self.bots = bots
        self.evacuation = evacuation
        self.metrics = metrics
        self.events = events
        # The seed's monitor.addListener: every health and recovery event, as it is stored.
        self.add_listener = events.add_listener
        self.interval = config.interval
        self.policy = config.policy
        self.unresponsive_after = config.unresponsive_after
        self.pool_starts = config.pool_starts
        # Rung by whoever sees trouble (controller/pools/alarm.py), and by the monitor itself.
        self.alarm = alarm
        # Pools seen suspect, so that becoming suspect and healthy again are one event each.
        self._suspect: set[str] = set()
        self.last_report: HealthReport | None = None
        # When each bot's ping was first seen failing while it ran (cleared by a good one).
        self._unanswered_since: dict[str, float] = {}
        self._down_since: dict[str, float] = {}
        # When each silent pool's agent was restarted, before restarting the whole pool.
        self._agent_restarted: dict[str, float] = {}
        # Starts (restart, recreate) of each pool since it was last healthy, with the time
        # of the first one; and the time of the last one.
        self._starts: dict[str, tuple[int, float]] = {}
        self._started_at: dict[str, float] = {}
        # The earliest time a bot's backoff or cooldown ends: the next evaluation is due.
        self._due: float | None = None
        self._lock = asyncio.Lock()
        # Each pool's recovery under way: one at a time per pool, each in a task of its own.
        self._recoveries: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        while True:
            timeout = self.interval
            if self._due is not None:
                timeout = max(0.0, min(timeout, self._due - time.time()))
            await self.alarm.wait(timeout)
            try:
                await self.evaluate(wait=False)
            except Exception:
                log.exception("health_check_failed")

    async def stop(self) -> None:
        """End the recoveries under way (the controller is shutting down)."""
        for task in list(self._recoveries.values()):
            task.cancel()
        await asyncio.gather(*self._recoveries.values(), return_exceptions=True)

    async def evaluate(self, wait: bool = True) -> HealthReport:
        """Judge every pool and bot, and act. A pool's recovery runs in a task of its own;
        with `wait` the report is returned once the recoveries it started have ended (their
        outcome in it), else at once (they add their outcome to it when they end)."""
        recoveries: list[asyncio.Task[None]] = []
        async with self._lock:
            started = time.monotonic()
            report = HealthReport(timestamp=datetime.now(UTC).isoformat())
            self._due = None
            for pool_id in list(self.registry.pools):
                if pool_id not in self.registry.pools or self.lifecycle.creating(pool_id):
                    continue  # removed meanwhile, or its runtime is being made right now
                if pool_id in self._recoveries:
                    report.issues.append({"type": "pool_recovering", "poolId": pool_id})
                    continue  # one recovery at a time per pool
                try:
                    if (recovery := await self._check_pool(pool_id, report)) is not None:
                        recoveries.append(recovery)
                except Exception as exc:
                    # One pool the runtime cannot answer for must not stop the others' checks.
                    report.issues.append(
                        {"type": "pool_check_failed", "poolId": pool_id, "error": _said(exc)}
                    )
            for bot_id in list(self.registry.bots):
                # Re-read each record: the checks above may have awaited for a while, and a
                # user's stop or delete made meanwhile must not be undone.
                bot = self.registry.bots.get(bot_id)
                if bot is not None:
                    await self._check_bot(bot, report)
            report.duration_ms = round((time.monotonic() - started) * 1000, 2)
            self.last_report = report
            log.info("health_check_complete", issues=len(report.issues),
                     recoveries=len(recoveries), ms=report.duration_ms)  # fmt: skip
        if wait and recoveries:
            await asyncio.wait(recoveries)
        return report

    async def _check_pool(self, pool_id: str, report: HealthReport) -> asyncio.Task[None] | None:
        """Judge a pool; the recovery it needs is started in a task, which is returned."""
        pool = self.registry.pools[pool_id]
        live = self.registry.live[pool_id]
        entry: dict[str, Any] = {"id": pool_id, "connected": live.connected, "healthy": True}
        report.pools.append(entry)
        if not self.sessions.is_suspect(pool_id):
            self._forget_pool(pool_id)
            if pool_id in self._suspect:
                self._suspect.discard(pool_id)
                self.events.emit("pool_healthy", pool=pool_id)
            return None
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
            await self.lifecycle.finish_deletions(pool_id)
        if not self.registry.bots_in(pool_id):
            return None
        recovery = self._recovery(pool, state)
        if recovery is None:
            # Suspect but running: the runtime's view may be in flux (a container being
            # removed still shows as running), so look again soon rather than in a whole
            # HEALTH_CHECK_INTERVAL.
            self._due_at(time.time() + RECOVERY_RETRY_SECONDS)
            return None
        action, coro = recovery
        if action in ("restart", "recreate"):
            starts, first = self._starts.get(pool_id, (0, time.time()))
            self._starts[pool_id] = (starts + 1, first)
            self._started_at[pool_id] = time.time()
        task = asyncio.create_task(self._recover(pool_id, action, coro, report))
        self._recoveries[pool_id] = task
        task.add_done_callback(lambda _t: self._recoveries.pop(pool_id, None))
        return task

    async def _recover(
        self, pool_id: str, action: str, coro: Coroutine[Any, Any, Any], report: HealthReport
    ) -> None:
        """One pool's recovery, which may be slow (a container stopping, a pool being made):
        no other pool's check and no bot's waits for it."""
        try:
            await coro
        except Exception as exc:
            error = _said(exc)
            report.recovery_actions.append(
                {"action": action, "poolId": pool_id, "ok": False, "error": error}
            )
            # Look again soon, not a whole HEALTH_CHECK_INTERVAL later: the pool may have
            # changed under the action (removed while it was being restarted).
            asyncio.get_running_loop().call_later(RECOVERY_RETRY_SECONDS, self.alarm.ring)
            self.events.emit("pool_recovery", pool=pool_id, reason=action, ok=False,
                             error=error)  # fmt: skip
            self.metrics.pool_recoveries.labels(action, "failed").inc()
        else:
            if action == "evacuate":  # the pool is gone; a new pool may reuse its id
                self._forget_pool(pool_id)
                self._suspect.discard(pool_id)
            report.recovery_actions.append({"action": action, "poolId": pool_id, "ok": True})
            self.events.emit("pool_recovery", pool=pool_id, reason=action, ok=True)
            self.metrics.pool_recoveries.labels(action, "ok").inc()
        log.warning("pool_recovery", pool=pool_id, action=action)

    async def _check_bot(self, bot: BotRecord, report: HealthReport) -> None:
        status = self.registry.status_of(bot)
        healthy = bot_healthy(self.pools, bot)
        report.bots.append({
            "instanceId": bot.id, "poolId": bot.pool_id, "desired": bot.run,
            "state": status.state if status else ProcessState.UNKNOWN,
            "ping": status.ping_ok if status else None, "healthy": healthy,
            "failed": bot.restarts.failed,
        })  # fmt: skip
        if bot.deleting or bot.held or bot.run != RunState.RUNNING \
                or self.sessions.is_suspect(bot.pool_id):  # fmt: skip
            self._forget(bot.id)
            return
        now = time.time()
        reason = self._problem(bot, now)
        if reason is None:
            ran = now - status.since if status and status.state == ProcessState.RUNNING else 0.0
            if healthy and bot.restarts.attempts and ran >= self.policy.reset_after:
                await self.bots.set_restarts(bot, RestartRecord())
                log.info("bot_restarts_reset", bot=bot.id, pool=bot.pool_id)
            return
        report.issues.append({"type": reason, "instanceId": bot.id, "poolId": bot.pool_id})
        decision = decide(self.policy, bot.restarts, now)
        if decision.verdict is Verdict.WAIT:
            waiting = "restart_cooldown" if bot.restarts.attempts >= self.policy.max_attempts \
                else "restart_backoff"  # fmt: skip
            report.issues.append({"type": waiting, "instanceId": bot.id,
                                  "retryInSeconds": round(decision.due - now, 1)})  # fmt: skip
            self._due_at(decision.due)
            return
        if self.registry.bots.get(bot.id) is not bot:
            return  # changed by a user while this check ran: their word wins
        if decision.verdict is Verdict.FAIL:
            if not bot.restarts.failed:
                await self.bots.set_restarts(bot, decision.record)
                report.recovery_actions.append({"action": "mark_failed", "instanceId": bot.id})
                self.events.emit("bot_failed", pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                                 reason=reason, cycles=decision.record.cycles)  # fmt: skip
                log.error("bot_failed", bot=bot.id, pool=bot.pool_id, reason=reason,
                          cycles=decision.record.cycles)  # fmt: skip
            report.issues.append({"type": "bot_failed", "instanceId": bot.id})
            return
        self._forget(bot.id)
        await self.bots.auto_restart(bot, decision.record)
        self.metrics.bot_restarts.labels(reason).inc()
        self.events.emit("bot_restart", pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                         reason=reason, attempt=decision.record.attempts)  # fmt: skip
        report.recovery_actions.append({"action": "restart_bot", "instanceId": bot.id,
                                        "attempt": decision.record.attempts})  # fmt: skip
        log.warning("bot_auto_restart", bot=bot.id, pool=bot.pool_id, reason=reason,
                    attempt=decision.record.attempts, cycle=decision.record.cycles)  # fmt: skip

    def _recovery(
        self, pool: PoolRecord, state: RuntimeState
    ) -> tuple[str, Coroutine[Any, Any, Any]] | None:
        """The action that brings a suspect pool back, or None to wait and look again."""
        now, grace = time.time(), self.sessions.pool_grace
        starts, first = self._starts.get(pool.id, (0, now))
        # Started again and again, never healthy, for a while (not a passing hiccup of the
        # runtime or its storage): move its bots to other pools.
        if state != RuntimeState.RUNNING and starts >= self.pool_starts \
                and now - first >= EVACUATE_AFTER_GRACES * grace:  # fmt: skip
            return "evacuate", self.evacuation.evacuate(pool)
        if state == RuntimeState.MISSING:
            return "recreate", self.lifecycle.recreate(pool)
        if state == RuntimeState.EXITED:
            return "restart", self.pools.runtime.restart(pool.id)
        live = self.registry.live[pool.id]
        # A pool just (re)started has not been silent: its agent is on its way.
        heard = max(live.last_seen, live.disconnected_at, self._started_at.get(pool.id, 0.0))
        if now - heard <= grace:
            return None
        # Running, but its agent is gone or hung for a whole grace period. Its bots run on:
        # restart the agent alone, which adopts them; the whole pool only if a restarted
        # agent did not report within two more grace periods.
        tried = self._agent_restarted.get(pool.id)
        if tried is None:
            self._agent_restarted[pool.id] = now
            return "restart_agent", self.pools.runtime.restart_agent(pool.id)
        if now - tried > 2 * grace:
            del self._agent_restarted[pool.id]
            return "restart", self.pools.runtime.restart(pool.id)
        return None

    def _forget_pool(self, pool_id: str) -> None:
        for tracked in (self._agent_restarted, self._starts, self._started_at):
            tracked.pop(pool_id, None)

    def _due_at(self, when: float) -> None:
        self._due = when if self._due is None else min(self._due, when)

    def _forget(self, bot_id: str) -> None:
        self._unanswered_since.pop(bot_id, None)
        self._down_since.pop(bot_id, None)

    def _problem(self, bot: BotRecord, now: float) -> str | None:
        """Why a bot that should run needs a restart now, or None."""
        status = self.registry.status_of(bot)
        if status is None or status.state in TRANSITIONAL:
            return None
        if status.state in DIED:
            return "bot_not_running"
        if status.state != ProcessState.RUNNING:
            # STOPPED, ABSENT: the agent starts it on the next desired state; act only when
            # it stays down since the previous evaluation, which saw the very same report.
            seen = self._down_since.get(bot.id)
            self._down_since[bot.id] = status.since
            return "bot_not_running" if seen == status.since else None
        self._down_since.pop(bot.id, None)
        if status.ping_ok is not False:
            self._unanswered_since.pop(bot.id, None)
            return None
        since = self._unanswered_since.setdefault(bot.id, now)
        # Counted from the process start too: FreqTrade's API takes a while to come up.
        if now - max(since, status.since) >= self.unresponsive_after:
            return "bot_not_responding"
        self._due_at(max(since, status.since) + self.unresponsive_after)
        return None
