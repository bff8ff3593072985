"""Health as an explicit state machine: what the monitor remembers of each pool and bot
between evaluations, and pure judgements over it, like the restart policy's `decide`.

A judgement takes a record, what is seen now and the time, and returns the record to keep
and what to do; it neither waits nor acts. The monitor (controller/health/monitor.py)
gathers what is seen (the agents' reports, the runtime's word on a suspect pool), judges,
and carries the actions out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from common.protocol import BotStatus
from common.states import DIED, TRANSITIONAL, ProcessState, RunState
from controller.health.restarts import Decision, RestartPolicy, Verdict, decide
from controller.health.status import is_healthy
from controller.records import BotRecord
from controller.runtimes import RuntimeState

# Members looked up once: on its class, an enum's member costs an attribute lookup each
# time, and the monitor judges every bot at every evaluation.
_RUNNING, _SHOULD_RUN = ProcessState.RUNNING, RunState.RUNNING
# A process whose memory counts against its limit: starting (a leak may begin at once) or up.
_ALIVE = frozenset((ProcessState.RUNNING, ProcessState.STARTING))
RECOVERY_RETRY_SECONDS = 2.0
# A lost pool's bots move elsewhere only after this many POOL_GRACE periods of failed starts.
EVACUATE_AFTER_GRACES = 3
# A bot over its memory limit is restarted at once, without waiting out the grace, when its
# own memory reaches this many times its limit, or when its growth since it went over
# would take it there before the grace ends: a leak of 32 MiB/s ran 1 GiB past a 512 MiB
# limit in a 30 s grace (docs/benchmarks.md), while a bot that steps over its limit and
# stays there keeps the grace to come back under it.
MEMORY_CEILING = 2.0


@dataclass(frozen=True, slots=True)
class Rules:
    policy: RestartPolicy
    unresponsive_after: float  # seconds a running bot's ping may fail
    pool_grace: float  # seconds a pool may be silent
    pool_starts: int  # starts of a lost pool before its bots move elsewhere
    memory_grace: float = 30.0  # seconds a bot may stay over its memory limit
    # With fencing: seconds of silence (AGENT_FENCE_TIMEOUT + AGENT_FENCE_MARGIN) before a
    # pool may be replaced, its agent having stopped its bots by then; 0: fencing is off.
    fence_wait: float = 0.0
    # Seconds a bot without a process waits for its agent to apply the pool's latest
    # desired state before it is judged anyway (an agent stuck behind its controller).
    apply_grace: float = 30.0
    # AGENT_FENCE_MARGIN in seconds: added to an agent's own fence timeout (its hello's).
    fence_margin: float = 0.0


# -- pools ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolHealth:
    """What the monitor remembers of a pool since it was last healthy."""

    suspect: bool = False  # seen suspect: becoming suspect and healthy again are one event each
    starts: int = 0  # restarts and recreations since
    first_start: float = 0.0  # when the first of them was
    last_start: float = 0.0
    agent_restarted: float | None = None  # when its agent alone was restarted


@dataclass(frozen=True, slots=True)
class PoolSeen:
    suspect: bool  # its agent is gone or silent, or the runtime saw it die
    runtime: RuntimeState | None  # the runtime's word, asked only of a suspect pool
    bots: int
    deleting: int  # of them, bots being deleted: gone for sure if the pool is missing
    heard_at: float  # when its agent's contact ended (PoolLive.contact_ended)
    # The fence timeout its agent announced in its hello (seconds; 0: none announced): it
    # may differ from the controller's own during an upgrade, and the longer one counts.
    agent_fence: float = 0.0
    # Its agent's connection is still open: it is in contact, so it has not fenced, however
    # silent (its heartbeats can stop while pings go on): never replaced meanwhile.
    connected: bool = False
    # Seconds since its agent's contact ended on a monotonic clock (None: not known): the
    # wait must have passed on both clocks, so a step of the wall clock cannot shorten it.
    silent_for: float | None = None

    def silence(self, now: float) -> float:
        """Seconds since its agent's contact ended: the shorter count of the two clocks."""
        wall = now - self.heard_at
        return wall if self.silent_for is None else min(wall, self.silent_for)


class Recovery(enum.StrEnum):
    RESTART_AGENT = "restart_agent"
    RESTART = "restart"  # and once restarted, its record starts afresh
    RECREATE = "recreate"
    EVACUATE = "evacuate"
    # Its node is unreachable and its agent has fenced: its bots start elsewhere, each from
    # its latest backup (controller/moves/failover.py).
    FAILOVER = "failover"


@dataclass(frozen=True, slots=True)
class PoolJudgement:
    health: PoolHealth  # the record to keep
    became_suspect: bool = False
    became_healthy: bool = False
    finish_deletions: bool = False  # nothing of it runs: its deleted bots are gone
    recovery: Recovery | None = None
    look_again_at: float | None = None  # suspect but running: the runtime may be in flux


HEALTHY_POOL = PoolHealth()
_STILL_HEALTHY, _HEALTHY_AGAIN = (
    PoolJudgement(HEALTHY_POOL),
    PoolJudgement(HEALTHY_POOL, became_healthy=True),
)


def judge_pool(health: PoolHealth, seen: PoolSeen, now: float, rules: Rules) -> PoolJudgement:
    if not seen.suspect:
        return _HEALTHY_AGAIN if health.suspect else _STILL_HEALTHY
    became_suspect = not health.suspect
    health = replace(health, suspect=True)
    missing = seen.runtime == RuntimeState.MISSING
    if seen.bots - (seen.deleting if missing else 0) == 0:
        return PoolJudgement(health, became_suspect, finish_deletions=missing)
    health, recovery = _recovery(health, seen, now, rules)
    if recovery is None:
        return PoolJudgement(health, became_suspect, finish_deletions=missing,
                             look_again_at=now + RECOVERY_RETRY_SECONDS)  # fmt: skip
    if recovery in (Recovery.RESTART, Recovery.RECREATE):
        first = health.first_start if health.starts else now
        health = replace(health, starts=health.starts + 1, first_start=first, last_start=now)
    return PoolJudgement(health, became_suspect, finish_deletions=missing, recovery=recovery)


def _recovery(
    health: PoolHealth, seen: PoolSeen, now: float, rules: Rules
) -> tuple[PoolHealth, Recovery | None]:
    """What brings a suspect pool back, or None to wait and look again."""
    grace = rules.pool_grace
    first = health.first_start if health.starts else now
    # Replacing a pool (recreated, or its bots moved) starts its bots anew elsewhere: with
    # fencing, not before its agent, wherever it is, has stopped them.
    wait = fence_wait(rules, seen.agent_fence)
    replaceable = not seen.connected and not fenced_in(now - seen.silence(now), now, wait)
    if seen.runtime == RuntimeState.UNREACHABLE:
        # Whether its bots still run cannot be told: replaced only once its agent's fence
        # has surely stopped them (never without fencing: an operator decides then), and
        # never restarted in place (its node would run the new task beside the old).
        return health, Recovery.FAILOVER if wait > 0 and replaceable else None
    # Started again and again, never healthy, for a while (not a passing hiccup of the
    # runtime or its storage): move its bots to other pools.
    if seen.runtime != RuntimeState.RUNNING and health.starts >= rules.pool_starts \
            and now - first >= EVACUATE_AFTER_GRACES * grace and replaceable:  # fmt: skip
        return health, Recovery.EVACUATE
    if seen.runtime == RuntimeState.MISSING:
        return health, Recovery.RECREATE if replaceable else None
    if seen.runtime == RuntimeState.EXITED:
        return health, Recovery.RESTART
    # A pool just (re)started has not been silent: its agent is on its way.
    if now - max(seen.heard_at, health.last_start) <= grace:
        return health, None
    # Running, but its agent is gone or hung for a whole grace period. Its bots run on:
    # restart the agent alone, which adopts them; the whole pool only if a restarted
    # agent did not report within two more grace periods.
    if health.agent_restarted is None:
        return replace(health, agent_restarted=now), Recovery.RESTART_AGENT
    if now - health.agent_restarted > 2 * grace:
        return replace(health, agent_restarted=None), Recovery.RESTART
    return health, None


def fence_wait(rules: Rules, agent_fence: float) -> float:
    """Seconds of silence before a pool may be replaced: the controller's fence timeout
    plus margin, or its agent's own timeout plus the margin if that is longer (0: none)."""
    if agent_fence <= 0:
        return rules.fence_wait
    return max(rules.fence_wait, agent_fence + rules.fence_margin)


def fenced_in(heard_at: float, now: float, fence_wait: float) -> bool:
    """Whether a pool last heard from at `heard_at` may still run its bots: with fencing
    (`fence_wait` > 0), until its agent's fence has surely stopped them."""
    return fence_wait > 0 and now - heard_at < fence_wait


# -- bots -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BotHealth:
    """What the monitor remembers of a bot that should run, between evaluations."""

    unanswered_since: float | None = None  # its ping first seen failing while it ran
    down_since: float | None = None  # the `since` of the report that saw it down
    over_limit_since: float | None = None  # its memory first seen over its limit
    over_limit_bytes: int | None = None  # what it measured then (its growth is since)
    # Its agent first seen not having applied the pool's latest desired state while it
    # had no process.
    pending_since: float | None = None


class BotAction(enum.Enum):
    NONE = "none"
    RESET_RESTARTS = "reset_restarts"  # healthy for RESTART_RESET_AFTER: a clean record
    WAIT = "wait"  # backing off or cooling down (`decision.due`)
    MARK_FAILED = "mark_failed"
    FAILED = "failed"  # marked already: left alone
    RESTART = "restart"  # and once restarted, its record starts afresh


@dataclass(frozen=True, slots=True)
class BotJudgement:
    health: BotHealth  # the record to keep
    action: BotAction = BotAction.NONE
    # Why it needs a restart: bot_not_running, bot_not_responding, bot_memory_limit.
    problem: str | None = None
    decision: Decision | None = None  # the restart policy's, when there is a problem
    look_again_at: float | None = None  # when an unanswered ping becomes a problem
    # Why a memory problem is one now: "grace" (over for all of it), "ceiling" (at
    # MEMORY_CEILING times its limit) or "growth" (growing to that within the grace).
    memory_rule: str | None = None


CLEAN_BOT = BotHealth()
_NOTHING = BotJudgement(CLEAN_BOT)  # most bots, at most evaluations: no allocation for them


MEMORY_LIMIT = "bot_memory_limit"


def judge_bot(
    health: BotHealth, bot: BotRecord, status: BotStatus | None, pool_suspect: bool,
    now: float, rules: Rules, memory_limit: int = 0, desired_applied: bool = True,
) -> BotJudgement:  # fmt: skip
    """`memory_limit`: the bot's, in bytes (0: none); a starting or running bot whose own
    memory (USS) stays over it for the rules' memory grace is restarted like a bot that
    went down. `desired_applied`: whether the pool's agent has applied the pool's latest
    desired state; until it has, a bot without a process is not yet its to start."""
    if bot.deleting or bot.held or bot.run != _SHOULD_RUN or pool_suspect:
        return _NOTHING  # not the monitor's to restart, or cannot be told
    over = (health.over_limit_since, health.over_limit_bytes)
    health, problem, due = _problem(health, status, now, rules.unresponsive_after,
                                    desired_applied, rules.apply_grace)  # fmt: skip
    rule = None
    if problem is None and status is not None and status.state in _ALIVE:
        health, rule, due = _memory(health, over, status, now, rules.memory_grace,
                                    memory_limit, due)  # fmt: skip
        problem = None if rule is None else MEMORY_LIMIT
    if problem is None:
        ran = now - status.since if status and status.state == _RUNNING else 0.0
        # Over its memory limit is not a healthy run, even within the grace.
        if bot.restarts.attempts and ran >= rules.policy.reset_after \
                and health.over_limit_since is None and is_healthy(bot, status):  # fmt: skip
            return BotJudgement(health, BotAction.RESET_RESTARTS, look_again_at=due)
        if health is CLEAN_BOT and due is None:
            return _NOTHING
        return BotJudgement(health, look_again_at=due)
    decision = decide(rules.policy, bot.restarts, now)
    if decision.verdict is Verdict.WAIT:
        return BotJudgement(health, BotAction.WAIT, problem, decision, memory_rule=rule)
    if decision.verdict is Verdict.FAIL:
        action = BotAction.FAILED if bot.restarts.failed else BotAction.MARK_FAILED
        return BotJudgement(health, action, problem, decision, memory_rule=rule)
    if problem == MEMORY_LIMIT:  # counted in its restart record
        record = decision.record
        decision = replace(decision, record=replace(record, memory=record.memory + 1))
    return BotJudgement(health, BotAction.RESTART, problem, decision, memory_rule=rule)


def _memory(
    health: BotHealth, over: tuple[float | None, int | None], status: BotStatus, now: float,
    grace: float, limit: int, due: float | None,
) -> tuple[BotHealth, str | None, float | None]:  # fmt: skip
    """A running bot over its memory limit (first seen so at `over`: when, measuring what):
    the record to keep, the rule that makes it a problem now (None: not yet) and when to
    look again."""
    uss = status.uss
    if not limit or uss is None or uss <= limit:
        if health.over_limit_since is None:
            return health, None, due
        health = replace(health, over_limit_since=None, over_limit_bytes=None)
        return (CLEAN_BOT if health == CLEAN_BOT else health), None, due
    since, first = (now, uss) if over[0] is None else over
    if (health.over_limit_since, health.over_limit_bytes) != (since, first):
        health = replace(health, over_limit_since=since, over_limit_bytes=first)
    rule = memory_rule(since, first, uss, now, grace, limit)
    if rule is not None:
        return health, rule, None
    return health, None, since + grace if due is None else min(due, since + grace)


def memory_rule(
    since: float, first: int | None, uss: int, now: float, grace: float, limit: int
) -> str | None:
    """Why a bot over its limit since `since` (measuring `first` then, `uss` now) is to be
    restarted now, or None: over for the whole grace; at MEMORY_CEILING times its limit;
    or growing at a rate (its average since it went over) that reaches the ceiling before
    the grace ends. The rate counts once it spans a sixth of the grace and a growth of a
    32nd of the limit: two samples close together, or a wobble, are noise."""
    if now - since >= grace:
        return "grace"
    ceiling = MEMORY_CEILING * limit
    if uss >= ceiling:
        return "ceiling"
    if first is not None and now - since >= grace / 6 and uss - first >= limit / 32:
        rate = (uss - first) / (now - since)
        if uss + rate * (since + grace - now) >= ceiling:
            return "growth"
    return None


def _problem(
    health: BotHealth, status: BotStatus | None, now: float, unresponsive_after: float,
    desired_applied: bool = True, apply_grace: float = 30.0,
) -> tuple[BotHealth, str | None, float | None]:  # fmt: skip
    """Why a bot that should run needs a restart now (or None), the record to keep, and
    when to look again if its ping fails but not yet for long enough."""
    if status is None or status.state in TRANSITIONAL:
        return health, None, None
    if status.state in DIED:
        return health, "bot_not_running", None
    if status.state != _RUNNING:
        # STOPPED, ABSENT: the agent starts it on the next desired state. Act only once
        # the agent has applied the latest one (a bot just released from a move, or just
        # started by its user, is down until then) and the bot stays down since the
        # previous evaluation, which saw the very same report.
        if not desired_applied:
            pending = now if health.pending_since is None else health.pending_since
            if now - pending < apply_grace:
                if (health.down_since, health.pending_since) != (None, pending):
                    health = replace(health, down_since=None, pending_since=pending)
                return health, None, pending + apply_grace
        else:
            pending = None
        down = health.down_since == status.since
        return BotHealth(health.unanswered_since, status.since, pending_since=pending), \
            "bot_not_running" if down else None, None  # fmt: skip
    if status.ping_ok is not False:
        return CLEAN_BOT, None, None  # running and answering: nothing to remember
    since = health.unanswered_since if health.unanswered_since is not None else now
    health = BotHealth(unanswered_since=since)
    # Counted from the process start too: FreqTrade's API takes a while to come up.
    answerless_from = max(since, status.since)
    if now - answerless_from >= unresponsive_after:
        return health, "bot_not_responding", None
    return health, None, answerless_from + unresponsive_after
