"""The restart policy's decisions, step by step through a crash-looping bot's life."""

from __future__ import annotations

from controller.health.restarts import RestartPolicy, Verdict, decide
from controller.records import RestartRecord

POLICY = RestartPolicy(max_attempts=3, backoff=2, cooldown=60, cycles=2, reset_after=600)


def test_a_crash_loop_backs_off_cools_down_and_fails() -> None:
    record, now, restarts = RestartRecord(), 1000.0, []
    while True:
        decision = decide(POLICY, record, now)
        if decision.verdict is Verdict.FAIL:
            break
        if decision.verdict is Verdict.RESTART:
            restarts.append(now - 1000)
            now += 0.5  # the bot dies again at once
        else:
            assert decision.due > now
            now = decision.due
        record = decision.record
    # Two cycles of three attempts: at once, +2 s, +4 s; a 60 s cooldown after each cycle.
    assert restarts == [0, 2, 6, 66, 68, 72]
    assert now - 1000 == 132  # failed only once the last cooldown passed
    assert decision.record.failed and decision.record.cycles == 2
    # A failed bot stays failed, however much later.
    assert decide(POLICY, decision.record, now + 10**6).verdict is Verdict.FAIL


def test_waiting_does_not_change_the_record() -> None:
    record = RestartRecord(attempts=1, last=100)
    decision = decide(POLICY, record, 101)
    assert (decision.verdict, decision.record, decision.due) == (Verdict.WAIT, record, 102)


def test_no_automatic_restarts_marks_the_bot_failed_at_once() -> None:
    policy = RestartPolicy(max_attempts=0, backoff=1, cooldown=60, cycles=3, reset_after=60)
    decision = decide(policy, RestartRecord(), 5)
    assert decision.verdict is Verdict.FAIL and decision.record.failed
