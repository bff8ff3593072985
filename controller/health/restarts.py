"""The automatic restart policy of bots: pure decisions over a bot's restart record.

A bot that should run but is down (or not answering) is restarted at once, then after
RESTART_BACKOFF, twice that, and so on, MAX_RESTART_ATTEMPTS times; then it rests for
RESTART_COOLDOWN and a new cycle begins. When RESTART_CYCLES cycles did not bring it up, it
is marked failed and left alone until someone starts it. A bot that ran healthily for
RESTART_RESET_AFTER starts over with a clean record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from controller.records import RestartRecord


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_attempts: int
    backoff: float
    cooldown: float
    cycles: int
    reset_after: float


class Verdict(enum.Enum):
    RESTART = "restart"
    WAIT = "wait"  # backing off, or cooling down, until `due`
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    record: RestartRecord  # the record to keep after acting on the verdict
    due: float = 0.0  # for WAIT: when to look again


def decide(policy: RestartPolicy, record: RestartRecord, now: float) -> Decision:
    """What to do about a bot that is down now, given its record."""
    if record.failed:
        return Decision(Verdict.FAIL, record)
    if record.attempts >= policy.max_attempts:
        rested = record.last + policy.cooldown
        if record.attempts and now < rested:
            return Decision(Verdict.WAIT, record, rested)
        cycles = record.cycles + 1
        if cycles >= policy.cycles or policy.max_attempts == 0:
            return Decision(Verdict.FAIL, replace(record, cycles=cycles, failed=True))
        record = replace(record, attempts=0, cycles=cycles)
    if record.attempts:
        due = record.last + policy.backoff * 2 ** (record.attempts - 1)
        if now < due:
            return Decision(Verdict.WAIT, record, due)
    return Decision(Verdict.RESTART, replace(record, attempts=record.attempts + 1, last=now))
