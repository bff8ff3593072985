"""Health judged as a pure function of a record, what is seen and the time: no app, no
clock, no waiting."""

from __future__ import annotations

from dataclasses import replace

from common.protocol import BotStatus
from common.states import ProcessState, RunState
from controller.health import judge
from controller.health.judge import BotAction, BotHealth, PoolHealth, Recovery
from controller.health.restarts import RestartPolicy
from controller.records import BotRecord, BotSecrets, RestartRecord
from controller.runtimes import RuntimeState

POLICY = RestartPolicy(max_attempts=2, backoff=10, cooldown=100, cycles=2, reset_after=60)
RULES = judge.Rules(POLICY, unresponsive_after=30, pool_grace=20, pool_starts=2)
T = 1_000_000.0
RUNNING, EXITED, MISSING = RuntimeState.RUNNING, RuntimeState.EXITED, RuntimeState.MISSING


def pool(
    health: PoolHealth, runtime: RuntimeState | None, now: float = T, *, suspect: bool = True,
    bots: int = 1, deleting: int = 0, heard_at: float = T - 100,
) -> judge.PoolJudgement:  # fmt: skip
    seen = judge.PoolSeen(suspect, runtime, bots, deleting, heard_at)
    return judge.judge_pool(health, seen, now, RULES)


BOT = BotRecord(id="b1", user_id="alice", pool_id="pool-1", slot=0, port=9000, strategy="S",
                strategy_source=b"", config={}, secrets=BotSecrets("u", "p", "j", "w"))  # fmt: skip


def status(state: ProcessState, since: float = T - 1000, ping_ok: bool | None = True) -> BotStatus:
    return BotStatus("b1", state, pid=7, since=since, ping_ok=ping_ok)


def bot(
    health: BotHealth, record: BotRecord, seen: BotStatus, now: float = T, suspect: bool = False
) -> judge.BotJudgement:
    return judge.judge_bot(health, record, seen, suspect, now, RULES)


def test_a_pool_heard_from_is_healthy_and_forgets_its_troubles() -> None:
    troubled = PoolHealth(suspect=True, starts=2, first_start=T - 5, agent_restarted=T)
    verdict = pool(troubled, None, suspect=False)
    assert verdict.health == PoolHealth() and verdict.became_healthy
    assert not pool(PoolHealth(), None, suspect=False).became_healthy


def test_a_lost_pool_is_made_again_then_its_bots_move_after_its_starts_and_graces() -> None:
    verdict = pool(PoolHealth(), MISSING)
    assert (verdict.became_suspect, verdict.finish_deletions) == (True, True)
    assert verdict.recovery is Recovery.RECREATE
    assert (verdict.health.starts, verdict.health.first_start) == (1, T)
    verdict = pool(verdict.health, EXITED, T + 1)
    assert verdict.recovery is Recovery.RESTART and not verdict.became_suspect
    health = verdict.health
    assert (health.starts, health.first_start, health.last_start) == (2, T, T + 1)
    # Two starts, but not yet failing for three grace periods: a hiccup, perhaps.
    assert pool(health, EXITED, T + 59).recovery is Recovery.RESTART
    assert pool(health, EXITED, T + 60).recovery is Recovery.EVACUATE


def test_a_silent_agent_is_restarted_alone_then_its_whole_pool() -> None:
    verdict = pool(PoolHealth(), RUNNING, heard_at=T - 21)
    assert verdict.recovery is Recovery.RESTART_AGENT and verdict.health.agent_restarted == T
    waiting = pool(verdict.health, RUNNING, T + 40)
    assert waiting.recovery is None and waiting.look_again_at is not None
    whole = pool(verdict.health, RUNNING, T + 41)
    assert whole.recovery is Recovery.RESTART and whole.health.agent_restarted is None


def test_a_pool_just_started_or_heard_gets_its_grace() -> None:
    started = PoolHealth(suspect=True, starts=1, first_start=T, last_start=T)
    verdict = pool(started, RUNNING, T + 20)
    assert verdict.recovery is None and verdict.look_again_at == T + 22


def test_a_lost_pool_without_bots_is_left_alone_its_deleted_bots_gone() -> None:
    verdict = pool(PoolHealth(), MISSING, bots=2, deleting=2)
    assert verdict.finish_deletions and verdict.recovery is None
    # Exited, its deleted bots may still run in it: it is started again.
    assert pool(PoolHealth(), EXITED, bots=2, deleting=2).recovery is Recovery.RESTART


FENCED = replace(RULES, fence_wait=90)  # AGENT_FENCE_TIMEOUT 30 s + AGENT_FENCE_MARGIN 60 s


def fenced_pool(health: PoolHealth, runtime: RuntimeState, now: float, heard_at: float):
    seen = judge.PoolSeen(True, runtime, 1, 0, heard_at)
    return judge.judge_pool(health, seen, now, FENCED)


def test_with_fencing_a_pool_is_replaced_only_after_the_fence_and_its_margin() -> None:
    # Missing (on a host cut off, say): its agent may still run its bots until it fences.
    waiting = fenced_pool(PoolHealth(), MISSING, T, heard_at=T - 89)
    assert waiting.recovery is None and waiting.look_again_at is not None
    assert waiting.became_suspect and waiting.health.starts == 0
    lost = fenced_pool(waiting.health, MISSING, T + 1, heard_at=T - 89)
    assert lost.recovery is Recovery.RECREATE
    # Its bots move elsewhere only after the fence too, however often it was started.
    tried = PoolHealth(suspect=True, starts=2, first_start=T - 100, last_start=T - 50)
    assert fenced_pool(tried, EXITED, T, heard_at=T - 89).recovery is Recovery.RESTART
    assert fenced_pool(tried, EXITED, T, heard_at=T - 90).recovery is Recovery.EVACUATE
    assert fenced_pool(tried, MISSING, T, heard_at=T - 10).recovery is None


def test_fencing_holds_back_no_restart_in_place() -> None:
    assert fenced_pool(PoolHealth(), EXITED, T, heard_at=T - 1).recovery is Recovery.RESTART
    silent = fenced_pool(PoolHealth(), RUNNING, T, heard_at=T - 21)
    assert silent.recovery is Recovery.RESTART_AGENT


UNREACHABLE = RuntimeState.UNREACHABLE


def test_a_pool_on_an_unreachable_node_fails_over_only_after_the_fence_and_its_margin() -> None:
    # Its task may still run its bots (the node is cut off): never restarted in place,
    # however often it was started, nor replaced before its agent has surely fenced.
    tried = PoolHealth(suspect=True, starts=5, first_start=T - 1000, last_start=T - 500)
    for health in (PoolHealth(), tried):
        waiting = fenced_pool(health, UNREACHABLE, T, heard_at=T - 89)
        assert waiting.recovery is None and waiting.look_again_at is not None
        lost = fenced_pool(health, UNREACHABLE, T, heard_at=T - 90)
        assert lost.recovery is Recovery.FAILOVER and not lost.finish_deletions
        assert lost.health.starts == health.starts  # not a start of it: a move of its bots


def test_without_fencing_a_pool_on_an_unreachable_node_is_left_to_an_operator() -> None:
    verdict = pool(PoolHealth(), UNREACHABLE, T, heard_at=T - 100_000)
    assert verdict.recovery is None and verdict.look_again_at is not None


def test_the_longer_of_the_controllers_and_the_agents_fence_timeouts_counts() -> None:
    rules = replace(FENCED, fence_margin=60)  # its own timeout: 30 s

    def failover(agent_fence: float, heard_at: float) -> Recovery | None:
        seen = judge.PoolSeen(True, UNREACHABLE, 1, 0, heard_at, agent_fence=agent_fence)
        return judge.judge_pool(PoolHealth(), seen, T, rules).recovery

    # An agent from before an upgrade fences after 120 s: 120 + 60 s of silence are waited.
    assert failover(120, T - 179) is None
    assert failover(120, T - 180) is Recovery.FAILOVER
    # A shorter timeout of the agent's does not shorten the controller's own wait.
    assert failover(10, T - 89) is None
    assert failover(10, T - 90) is Recovery.FAILOVER
    assert failover(0, T - 90) is Recovery.FAILOVER  # not announced: the controller's own
    # Fencing off at the controller, on at the agent: its timeout plus the margin.
    assert judge.fence_wait(replace(rules, fence_wait=0), 30) == 90
    assert judge.fence_wait(replace(rules, fence_wait=0), 0) == 0


def test_without_fencing_a_missing_pool_is_made_again_at_once() -> None:
    assert pool(PoolHealth(), MISSING, T, heard_at=T - 1).recovery is Recovery.RECREATE
    assert judge.fenced_in(T - 1, T, 0.0) is False
    assert judge.fenced_in(T - 1, T, 90.0) is True
    assert judge.fenced_in(T - 90, T, 90.0) is False


def test_a_dead_bot_is_restarted_at_once_then_backs_off_then_fails() -> None:
    verdict = bot(BotHealth(), BOT, status(ProcessState.EXITED))
    assert (verdict.action, verdict.problem) == (BotAction.RESTART, "bot_not_running")
    assert verdict.decision is not None and verdict.decision.record.attempts == 1
    restarted = replace(BOT, restarts=verdict.decision.record)
    backing_off = bot(BotHealth(), restarted, status(ProcessState.FATAL))
    assert backing_off.action is BotAction.WAIT and backing_off.decision is not None
    assert backing_off.decision.due == T + 10  # RESTART_BACKOFF after the first
    spent = replace(BOT, restarts=RestartRecord(attempts=2, cycles=1, last=T - 1000))
    assert bot(BotHealth(), spent, status(ProcessState.EXITED)).action is BotAction.MARK_FAILED
    marked = replace(BOT, restarts=RestartRecord(failed=True))
    assert bot(BotHealth(), marked, status(ProcessState.EXITED)).action is BotAction.FAILED


def test_a_stopped_report_counts_only_when_the_next_look_sees_the_same() -> None:
    first = bot(BotHealth(), BOT, status(ProcessState.STOPPED, since=5.0))
    assert first.problem is None and first.health.down_since == 5.0
    assert bot(first.health, BOT, status(ProcessState.STOPPED, since=5.0)).action \
        is BotAction.RESTART  # fmt: skip


def test_a_bot_down_before_its_agent_applied_the_latest_desired_state_is_not_judged() -> None:
    """A bot just released from a move (or just started by its user) has no process until
    its agent applies the desired state that says run: not a reason to restart it, however
    often the monitor looks meanwhile (a move's bots were restarted as they landed)."""
    down = status(ProcessState.ABSENT, since=0.0)
    pending = BotHealth()
    for _ in range(3):
        verdict = judge.judge_bot(pending, BOT, down, False, T, RULES, desired_applied=False)
        assert verdict.problem is None and verdict.action is BotAction.NONE
        pending = verdict.health
    assert pending.down_since is None
    first = judge.judge_bot(pending, BOT, down, False, T, RULES, desired_applied=True)
    assert first.problem is None  # applied: the next look that sees the same acts
    again = judge.judge_bot(first.health, BOT, down, False, T, RULES, desired_applied=True)
    assert again.action is BotAction.RESTART
    # An agent that does not apply it within the rules' apply grace: judged anyway.
    waiting = judge.judge_bot(BotHealth(), BOT, down, False, T, RULES, desired_applied=False)
    assert waiting.look_again_at == T + RULES.apply_grace
    later = T + RULES.apply_grace
    first = judge.judge_bot(waiting.health, BOT, down, False, later, RULES, desired_applied=False)
    assert first.problem is None
    again = judge.judge_bot(first.health, BOT, down, False, later + 1, RULES,
                            desired_applied=False)  # fmt: skip
    assert again.action is BotAction.RESTART
    # A bot that died is the restart policy's at once, applied or not.
    died = judge.judge_bot(BotHealth(), BOT, status(ProcessState.EXITED), False, T, RULES,
                           desired_applied=False)  # fmt: skip
    assert died.problem == "bot_not_running"


def test_an_unanswered_ping_is_a_problem_only_after_its_timeout() -> None:
    quiet = status(ProcessState.RUNNING, ping_ok=False)
    first = bot(BotHealth(), BOT, quiet)
    assert first.problem is None and first.look_again_at == T + 30
    later = bot(first.health, BOT, quiet, T + 30)
    assert (later.action, later.problem) == (BotAction.RESTART, "bot_not_responding")
    # A good answer forgets the silence.
    answered = bot(first.health, BOT, status(ProcessState.RUNNING), T + 30)
    assert answered.health.unanswered_since is None and answered.action is BotAction.NONE


def test_only_a_bot_that_should_run_in_a_pool_that_can_be_heard_is_judged() -> None:
    dead = status(ProcessState.EXITED)
    cases = [(replace(BOT, run=RunState.STOPPED), False), (BOT, True),
             (replace(BOT, held=True), False), (replace(BOT, deleting=True), False)]  # fmt: skip
    for record, suspect in cases:
        verdict = bot(BotHealth(down_since=1.0), record, dead, suspect=suspect)
        assert verdict.action is BotAction.NONE and verdict.health == BotHealth()


def test_a_long_healthy_run_clears_the_restart_record() -> None:
    restarted = replace(BOT, restarts=RestartRecord(attempts=1, last=T - 100))
    fresh = bot(BotHealth(), restarted, status(ProcessState.RUNNING, since=T - 59))
    assert fresh.action is BotAction.NONE
    long = bot(BotHealth(), restarted, status(ProcessState.RUNNING, since=T - 60))
    assert long.action is BotAction.RESET_RESTARTS


# -- memory limits ----------------------------------------------------------------------

MIB = 1 << 20
MEMORY_RULES = replace(RULES, memory_grace=30)


def over(
    health: BotHealth, uss: int | None, now: float, record: BotRecord = BOT, limit: int = 100 * MIB
) -> judge.BotJudgement:
    seen = BotStatus("b1", ProcessState.RUNNING, pid=7, since=T - 1000, ping_ok=True, uss=uss)
    return judge.judge_bot(health, record, seen, False, now, MEMORY_RULES, limit)


def test_a_bot_over_its_memory_limit_for_the_grace_is_restarted_and_counted() -> None:
    verdict = over(BotHealth(), 150 * MIB, T)
    assert verdict.action is BotAction.NONE and verdict.health.over_limit_since == T
    assert verdict.look_again_at == T + 30
    verdict = over(verdict.health, 160 * MIB, T + 29)
    assert verdict.action is BotAction.NONE and verdict.look_again_at == T + 30
    verdict = over(verdict.health, 170 * MIB, T + 30)
    assert (verdict.action, verdict.problem) == (BotAction.RESTART, "bot_memory_limit")
    assert verdict.decision is not None
    assert (verdict.decision.record.attempts, verdict.decision.record.memory) == (1, 1)


def test_memory_back_under_the_limit_starts_the_grace_over() -> None:
    verdict = over(BotHealth(), 150 * MIB, T)
    verdict = over(verdict.health, 90 * MIB, T + 20)
    assert verdict.health == BotHealth() and verdict.action is BotAction.NONE
    verdict = over(verdict.health, 150 * MIB, T + 40)
    assert verdict.action is BotAction.NONE and verdict.health.over_limit_since == T + 40


def test_no_limit_or_no_measure_is_never_a_memory_problem() -> None:
    assert over(BotHealth(), 10_000 * MIB, T, limit=0).action is BotAction.NONE
    assert over(BotHealth(over_limit_since=T - 100), None, T).health == BotHealth()


def test_an_unanswered_ping_and_memory_over_the_limit_are_remembered_together() -> None:
    seen = BotStatus("b1", ProcessState.RUNNING, pid=7, since=T - 1000, ping_ok=False,
                     uss=150 * MIB)  # fmt: skip
    verdict = judge.judge_bot(BotHealth(), BOT, seen, False, T, MEMORY_RULES, 100 * MIB)
    assert verdict.health == BotHealth(unanswered_since=T, over_limit_since=T,
                                       over_limit_bytes=150 * MIB)  # fmt: skip
    assert verdict.look_again_at == T + 30
    verdict = judge.judge_bot(verdict.health, BOT, seen, False, T + 30, MEMORY_RULES, 100 * MIB)
    assert verdict.problem == "bot_not_responding"  # the first problem found


def test_a_bot_that_keeps_exceeding_its_limit_fails_like_a_crash_loop() -> None:
    spent = replace(BOT, restarts=RestartRecord(attempts=2, cycles=1, last=T - 1000, memory=4))
    verdict = over(BotHealth(over_limit_since=T - 31), 150 * MIB, T, spent)
    assert (verdict.action, verdict.problem) == (BotAction.MARK_FAILED, "bot_memory_limit")
    assert verdict.decision is not None and verdict.decision.record.failed


def test_a_run_over_the_memory_limit_does_not_clear_the_restart_record() -> None:
    restarted = replace(BOT, restarts=RestartRecord(attempts=1, last=T - 5000))
    verdict = over(BotHealth(), 150 * MIB, T, restarted)
    assert verdict.action is BotAction.NONE  # not RESET_RESTARTS: within its grace only
    assert over(BotHealth(), 50 * MIB, T, restarted).action is BotAction.RESET_RESTARTS


def test_a_bot_still_starting_counts_its_memory_too() -> None:
    seen = BotStatus("b1", ProcessState.STARTING, pid=7, since=T - 5, uss=150 * MIB)
    verdict = judge.judge_bot(BotHealth(), BOT, seen, False, T, MEMORY_RULES, 100 * MIB)
    assert verdict.health.over_limit_since == T and verdict.look_again_at == T + 30
    verdict = judge.judge_bot(verdict.health, BOT, seen, False, T + 30, MEMORY_RULES, 100 * MIB)
    assert verdict.problem == "bot_memory_limit"


def test_a_bot_at_twice_its_limit_is_restarted_without_its_grace() -> None:
    verdict = over(BotHealth(), 150 * MIB, T)
    assert verdict.action is BotAction.NONE
    verdict = over(verdict.health, 200 * MIB, T + 1)  # MEMORY_CEILING times its limit
    assert (verdict.action, verdict.problem) == (BotAction.RESTART, "bot_memory_limit")
    assert verdict.memory_rule == "ceiling"


def test_a_fast_leak_is_restarted_as_soon_as_its_growth_reaches_the_ceiling_in_the_grace() -> None:
    # The benchmark's leak: 32 MiB/s over a 512 MiB limit. Seen over at 530 MiB, one
    # heartbeat later at 562 (too soon to tell from noise), then at 690 5 s after: at that
    # rate it would reach 1,024 MiB within the grace.
    limit = 512 * MIB
    verdict = over(BotHealth(), 530 * MIB, T, limit=limit)
    assert verdict.action is BotAction.NONE and verdict.health.over_limit_bytes == 530 * MIB
    assert over(verdict.health, 562 * MIB, T + 1, limit=limit).action is BotAction.NONE
    verdict = over(verdict.health, 690 * MIB, T + 5, limit=limit)
    assert (verdict.action, verdict.memory_rule) == (BotAction.RESTART, "growth")


def test_a_slow_growth_or_a_step_over_the_limit_keeps_its_grace() -> None:
    # 1 MiB/s over a 100 MiB limit: 30 s would not take it to 200 MiB.
    verdict = over(BotHealth(), 110 * MIB, T)
    verdict = over(verdict.health, 120 * MIB, T + 10)
    assert verdict.action is BotAction.NONE and verdict.look_again_at == T + 30
    # A step to 190 MiB that then stays: no growth since it went over.
    verdict = over(BotHealth(), 190 * MIB, T)
    verdict = over(verdict.health, 190 * MIB, T + 10)
    assert verdict.action is BotAction.NONE
    verdict = over(verdict.health, 190 * MIB, T + 30)
    assert (verdict.action, verdict.memory_rule) == (BotAction.RESTART, "grace")


def test_the_memory_rule_alone() -> None:
    assert judge.memory_rule(T, 110, 120, T + 10, 30, 100) is None  # 1/s: 140 by the end
    # A wobble of 2 MiB a tenth of a second apart is noise, not a rate.
    assert judge.memory_rule(0, 513 * MIB, 515 * MIB, 0.1, 30, 512 * MIB) is None
    assert judge.memory_rule(T, 110, 150, T + 4, 30, 100) is None  # too soon to tell
    assert judge.memory_rule(T, 110, 150, T + 10, 30, 100) == "growth"  # 4/s: 230
    assert judge.memory_rule(T, None, 150, T + 10, 30, 100) is None  # no first measure
    assert judge.memory_rule(T, 150, 150, T, 30, 100) is None  # no time passed
    assert judge.memory_rule(T, 150, 200, T, 30, 100) == "ceiling"
    assert judge.memory_rule(T, 150, 150, T + 30, 30, 100) == "grace"
