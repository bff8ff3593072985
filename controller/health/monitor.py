"""The monitor: it loops, gathers what is seen, has it judged, and carries the actions out.

Pools: a pool whose agent is gone or silent for POOL_GRACE is suspect; the runtime is
asked what it really is before anything is done (principle 4), and a pool that exited or
vanished is started again. Bots: supervisord restarts nothing by itself; a bot that should
run but exited, or whose API has not answered for BOT_UNRESPONSIVE_TIMEOUT, is restarted
through its nonce as the restart policy (controller/health/restarts.py) allows. A bot its
user stopped is never touched. What to do is decided by the pure judgements of
controller/health/judge.py; the time is the monitor's clock, so it can be a test's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from common.settings import ControllerSettings
from common.states import ProcessState
from controller.bots.manager import BotManager
from controller.errors import RuntimeFailure
from controller.events import EventBus
from controller.health.judge import (
    CLEAN_BOT,
    HEALTHY_POOL,
    MEMORY_LIMIT,
    RECOVERY_RETRY_SECONDS,
    BotAction,
    BotHealth,
    BotJudgement,
    PoolHealth,
    PoolSeen,
    Recovery,
    Rules,
    judge_bot,
    judge_pool,
)
from controller.health.report import HealthReport, said
from controller.health.rerouter import Rerouter
from controller.health.restarts import RestartPolicy
from controller.health.status import is_healthy
from controller.metrics import Metrics
from controller.moves.evacuation import Evacuation
from controller.moves.failover import Failover
from controller.pools.alarm import Alarm
from controller.pools.manager import PoolManager
from controller.records import BotRecord, RestartRecord
from controller.runtimes import RuntimeState

log = structlog.get_logger("controller.monitor")
# An evaluation of 10,000 pools and 100,000 bots takes seconds of CPU: it hands the event
# loop back this often, so heartbeats and users' requests are not held up behind it.
YIELD_EVERY = 200
Clock = Callable[[], float]  # seconds since the epoch, as time.time


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    interval: float  # seconds between evaluations (HEALTH_CHECK_INTERVAL)
    policy: RestartPolicy
    unresponsive_after: float  # seconds a running bot's ping may fail
    # Starts of a pool that never became healthy before its bots are moved elsewhere.
    pool_starts: int = 3
    memory_grace: float = 30.0  # seconds a bot may stay over its memory limit
    fence_wait: float = 0.0  # AGENT_FENCE_TIMEOUT + AGENT_FENCE_MARGIN, 0 without fencing
    fence_margin: float = 0.0  # AGENT_FENCE_MARGIN

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
            memory_grace=settings.bot_memory_grace_ms / 1000,
            fence_wait=(settings.fence_timeout_ms + settings.fence_margin_ms) / 1000
            if settings.fence_timeout_ms else 0.0,
            fence_margin=settings.fence_margin_ms / 1000,
        )  # fmt: skip


class Monitor:
    def __init__(
        self, pools: PoolManager, bots: BotManager, config: MonitorConfig, *, metrics: Metrics,
        events: EventBus, evacuation: Evacuation, alarm: Alarm, clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        failover: Failover | None = None,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.registry = pools.registry
        self.sessions = pools.sessions
        self.lifecycle = pools.lifecycle
        self.bots = bots
        self.evacuation = evacuation
        self.failover = failover  # a pool on a lost node (a multi-host runtime's)
        self.metrics = metrics
        self.events = events
        # The seed's monitor.addListener: every health and recovery event, as it is stored.
        self.add_listener = events.add_listener
        self.interval = config.interval
        self.rules = Rules(config.policy, config.unresponsive_after,
                           pools.sessions.pool_grace, config.pool_starts,
                           config.memory_grace, config.fence_wait,
                           fence_margin=config.fence_margin)  # fmt: skip
        # Rung by whoever sees trouble (controller/pools/alarm.py), and by the monitor itself.
        self.alarm = alarm
        self.clock = clock
        self.monotonic = monotonic  # the fence's wait, on the sessions' monotonic clock
        self.last_report: HealthReport | None = None
        # What it remembers of each pool and bot between evaluations (health/judge.py).
        self._pools: dict[str, PoolHealth] = {}
        self._bots: dict[str, BotHealth] = {}
        # The earliest time a bot's backoff or cooldown ends: the next evaluation is due.
        self._due: float | None = None
        self._lock = asyncio.Lock()
        # Each pool's recovery under way: one at a time per pool, each in a task of its own.
        self._recoveries: dict[str, asyncio.Task[None]] = {}
        # Bots restarted off a market-data proxy's port a stranger holds (health/rerouter.py).
        self.rerouter = Rerouter(self.registry, bots, metrics, events)

    async def run(self) -> None:
        next_evaluation = self.clock() + self.interval
        while True:
            until = next_evaluation if self._due is None else min(next_evaluation, self._due)
            ringing = await self.alarm.wait(max(0.0, until - self.clock()))
            try:
                if ringing.bots_only and self.clock() < until:
                    await self.check_bots(ringing.bots)  # dead bots: their restart at once
                else:  # its time came, or rung for a pool
                    next_evaluation = self.clock() + self.interval
                    await self.evaluate(wait=False, detailed=False)
            except Exception:
                log.exception("health_check_failed")

    async def stop(self) -> None:
        """End the recoveries under way (the controller is shutting down)."""
        for task in list(self._recoveries.values()):
            task.cancel()
        await asyncio.gather(*self._recoveries.values(), return_exceptions=True)

    async def evaluate(self, wait: bool = True, detailed: bool = True) -> HealthReport:
        """Judge every pool and bot, and act. A pool's recovery runs in a task of its own;
        with `wait` the report is returned once the recoveries it started have ended (their
        outcome in it), else at once (they add their outcome to it when they end). With
        `detailed` the report has an entry for every pool and bot."""
        recoveries: list[asyncio.Task[None]] = []
        async with self._lock:
            started = time.monotonic()
            report = HealthReport(timestamp=datetime.now(UTC).isoformat(), detailed=detailed)
            self._due = None
            for n, pool_id in enumerate(list(self.registry.pools), 1):
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let heartbeats and users' requests through
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
                        {"type": "pool_check_failed", "poolId": pool_id, "error": said(exc)}
                    )
            suspects: dict[str, bool] = {}  # each pool's, asked once for all its bots
            for n, bot_id in enumerate(list(self.registry.bots), 1):
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                # Re-read each record: the checks above may have awaited for a while, and a
                # user's stop or delete made meanwhile must not be undone.
                bot = self.registry.bots.get(bot_id)
                if bot is None:
                    continue
                suspect = suspects.get(bot.pool_id)
                if suspect is None:
                    suspect = suspects[bot.pool_id] = self.sessions.is_suspect(bot.pool_id)
                await self._check_bot(bot, suspect, report)
            report.duration_ms = round((time.monotonic() - started) * 1000, 2)
            self.last_report = report
            log.info("health_check_complete", issues=len(report.issues),
                     recoveries=len(recoveries), ms=report.duration_ms)  # fmt: skip
        if wait and recoveries:
            await asyncio.wait(recoveries)
        return report

    async def check_bots(self, bot_ids: Iterable[str]) -> None:
        """Judge these bots alone and act, as a whole evaluation would for them."""
        async with self._lock:
            scratch = HealthReport(datetime.now(UTC).isoformat(), detailed=False)  # not the last
            for bot_id in bot_ids:
                if (bot := self.registry.bots.get(bot_id)) is not None:
                    await self._check_bot(bot, self.sessions.is_suspect(bot.pool_id), scratch)

    # -- pools -----------------------------------------------------------------------------

    async def _check_pool(self, pool_id: str, report: HealthReport) -> asyncio.Task[None] | None:
        """Judge a pool; the recovery it needs is started in a task, which is returned."""
        live = self.registry.live[pool_id]
        entry: dict[str, Any] = {"id": pool_id, "connected": live.connected, "healthy": True}
        if report.detailed:
            report.pools.append(entry)
        suspect = self.sessions.is_suspect(pool_id)
        # Only a suspect pool is asked about: what the runtime says decides what is done.
        state = await self.pools.runtime.inspect(pool_id) if suspect else None
        pool = self.registry.pools.get(pool_id)  # removed meanwhile: None
        if state == RuntimeState.MISSING and pool is not None and pool.abandoned:
            state = RuntimeState.UNREACHABLE  # a failover cut short: taken up again
        # Its bots count only for a suspect pool: one that would be recovered.
        bots = self.registry.bots_in(pool_id) if suspect else []
        seen = PoolSeen(suspect, state, len(bots), sum(b.deleting for b in bots),
                        heard_at=live.contact_ended, agent_fence=live.fence_timeout,
                        connected=live.connected,
                        silent_for=self.monotonic() - live.contact_ended_mono)  # fmt: skip
        now = self.clock()
        verdict = judge_pool(self._pools.get(pool_id, HEALTHY_POOL), seen, now, self.rules)
        self._pools[pool_id] = verdict.health
        if verdict.became_healthy:
            self.events.emit("pool_healthy", pool=pool_id)
        if not suspect:
            await self.rerouter.reroute(pool_id, report)
            return None
        entry.update(healthy=False, runtime=str(state))
        silent = round(now - (live.last_seen or live.disconnected_at), 1)
        report.issues.append({"type": "pool_suspect", "poolId": pool_id, "runtime": str(state),
                              "silentSeconds": silent})  # fmt: skip
        if verdict.became_suspect:
            self.events.emit("pool_suspect", pool=pool_id, reason=str(state),
                             silentSeconds=silent, connected=live.connected)  # fmt: skip
        if verdict.finish_deletions:
            await self.lifecycle.finish_deletions(pool_id)
        if verdict.look_again_at is not None:
            self._due_at(verdict.look_again_at)
        if verdict.recovery is None:
            return None
        coro = self._recovery(pool_id, verdict.recovery)
        task = asyncio.create_task(self._recover(pool_id, verdict.recovery, coro, report))
        self._recoveries[pool_id] = task
        task.add_done_callback(lambda _t: self._recoveries.pop(pool_id, None))
        return task

    def _recovery(self, pool_id: str, recovery: Recovery) -> Coroutine[Any, Any, Any]:
        pool = self.registry.pools[pool_id]
        if recovery is Recovery.EVACUATE:
            return self.evacuation.evacuate(pool)
        if recovery is Recovery.FAILOVER:
            if self.failover is None:
                raise RuntimeFailure(f"pool {pool_id} is unreachable and nothing can fail it over")
            live = self.registry.live[pool_id]
            return self.failover.fail_over(pool, live.contact_ended)
        if recovery is Recovery.RECREATE:
            return self.lifecycle.recreate(pool)
        if recovery is Recovery.RESTART:
            return self.pools.runtime.restart(pool_id)
        return self.pools.runtime.restart_agent(pool_id)

    async def _recover(
        self, pool_id: str, action: Recovery, coro: Coroutine[Any, Any, Any],
        report: HealthReport,
    ) -> None:  # fmt: skip
        """One pool's recovery, which may be slow (a container stopping, a pool being made):
        no other pool's check and no bot's waits for it."""
        try:
            await coro
        except Exception as exc:
            error = said(exc)
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
            if action in (Recovery.EVACUATE, Recovery.FAILOVER):  # gone; its id may be reused
                self._pools.pop(pool_id, None)
            report.recovery_actions.append({"action": action, "poolId": pool_id, "ok": True})
            self.events.emit("pool_recovery", pool=pool_id, reason=action, ok=True)
            self.metrics.pool_recoveries.labels(action, "ok").inc()
        log.warning("pool_recovery", pool=pool_id, action=action)

    # -- bots ------------------------------------------------------------------------------

    async def _check_bot(self, bot: BotRecord, suspect: bool, report: HealthReport) -> None:
        status = self.registry.status_of(bot)
        if report.detailed:
            report.bots.append({
                "instanceId": bot.id, "poolId": bot.pool_id, "desired": bot.run,
                "state": status.state if status else ProcessState.UNKNOWN,
                "ping": status.ping_ok if status else None, "healthy": is_healthy(bot, status),
                "failed": bot.restarts.failed,
            })  # fmt: skip
        now = self.clock()
        verdict = judge_bot(self._bots.get(bot.id, CLEAN_BOT), bot, status, suspect, now,
                            self.rules, self.bots.memory_limit(bot),
                            self.registry.desired_applied(bot.pool_id))  # fmt: skip
        self._bots[bot.id] = verdict.health
        if verdict.look_again_at is not None:
            self._due_at(verdict.look_again_at)
        if verdict.action is BotAction.RESET_RESTARTS:
            await self.bots.set_restarts(bot, RestartRecord())
            log.info("bot_restarts_reset", bot=bot.id, pool=bot.pool_id)
        elif verdict.problem is not None:
            report.issues.append({"type": verdict.problem, "instanceId": bot.id,
                                  "poolId": bot.pool_id})  # fmt: skip
            await self._act_on_problem(bot, verdict, now, report)

    async def _act_on_problem(
        self, bot: BotRecord, verdict: BotJudgement, now: float, report: HealthReport
    ) -> None:
        decision = verdict.decision
        assert decision is not None and verdict.problem is not None
        if verdict.action in (BotAction.MARK_FAILED, BotAction.RESTART) \
                and self.registry.bots.get(bot.id) is not bot:  # fmt: skip
            return  # changed by a user while this check ran: their word wins
        if verdict.action is BotAction.WAIT:
            cooling = bot.restarts.attempts >= self.rules.policy.max_attempts
            report.issues.append({"type": "restart_cooldown" if cooling else "restart_backoff",
                                  "instanceId": bot.id,
                                  "retryInSeconds": round(decision.due - now, 1)})  # fmt: skip
            self._due_at(decision.due)
        elif verdict.action is BotAction.MARK_FAILED:
            if verdict.problem == MEMORY_LIMIT:
                # Still running, over its limit: a failed bot is left alone, so it stops.
                self._memory_event(bot, "stopped", verdict)
                await self.bots.stop_failed(bot, decision.record)
            else:
                await self.bots.set_restarts(bot, decision.record)
            report.recovery_actions.append({"action": "mark_failed", "instanceId": bot.id})
            self.events.emit("bot_failed", pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                             reason=verdict.problem, cycles=decision.record.cycles)  # fmt: skip
            log.error("bot_failed", bot=bot.id, pool=bot.pool_id, reason=verdict.problem,
                      cycles=decision.record.cycles)  # fmt: skip
            report.issues.append({"type": "bot_failed", "instanceId": bot.id})
        elif verdict.action is BotAction.FAILED:
            report.issues.append({"type": "bot_failed", "instanceId": bot.id})
        elif verdict.action is BotAction.RESTART:
            self._bots.pop(bot.id, None)  # a restarted bot starts a clean record
            if verdict.problem == MEMORY_LIMIT:
                self._memory_event(bot, "restart", verdict)
            await self._restart(bot, verdict.problem, decision.record, report)

    def _memory_event(self, bot: BotRecord, action: str, verdict: BotJudgement) -> None:
        status = self.registry.status_of(bot)
        measured = status.uss if status is not None else None
        limit = self.bots.memory_limit(bot)
        since = verdict.health.over_limit_since
        over = round(self.clock() - since, 1) if since is not None else None
        self.metrics.bot_memory_limits.labels(action).inc()
        self.events.emit(MEMORY_LIMIT, pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                         reason="memory over its limit", action=action, measuredBytes=measured,
                         limitBytes=limit, graceSeconds=self.rules.memory_grace,
                         rule=verdict.memory_rule, overSeconds=over)  # fmt: skip
        log.warning(MEMORY_LIMIT, bot=bot.id, pool=bot.pool_id, action=action,
                    measured=measured, limit=limit, rule=verdict.memory_rule)  # fmt: skip

    async def _restart(
        self, bot: BotRecord, reason: str, record: RestartRecord, report: HealthReport
    ) -> None:
        await self.bots.auto_restart(bot, record)
        self.metrics.bot_restarts.labels(reason).inc()
        self.events.emit("bot_restart", pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                         reason=reason, attempt=record.attempts)  # fmt: skip
        report.recovery_actions.append({"action": "restart_bot", "instanceId": bot.id,
                                        "attempt": record.attempts})  # fmt: skip
        log.warning("bot_auto_restart", bot=bot.id, pool=bot.pool_id, reason=reason,
                    attempt=record.attempts, cycle=record.cycles)  # fmt: skip

    def _due_at(self, when: float) -> None:
        self._due = when if self._due is None else min(self._due, when)
