"""The states a bot and a pool can be in, as agent and controller both name them.

Each is a `StrEnum`: a member is its wire word (`ProcessState.RUNNING == "RUNNING"`), so
frames, the store and API answers carry the same strings as before, and agents of an
older version understand them. What the states mean together (which count as running,
as dead, as on their way) is said here once, in the groupings below.
"""

from __future__ import annotations

import enum


class ProcessState(enum.StrEnum):
    """supervisord's state of a program, plus ABSENT for a bot that has no program yet."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"
    UNKNOWN = "UNKNOWN"
    ABSENT = "ABSENT"


# supervisord has a process for the program, or is about to: stopping it takes a stop.
ACTIVE = frozenset({
    ProcessState.STARTING, ProcessState.RUNNING, ProcessState.BACKOFF, ProcessState.STOPPING,
})  # fmt: skip
# On its way up or down: judged once it gets there.
TRANSITIONAL = frozenset({ProcessState.STARTING, ProcessState.BACKOFF, ProcessState.STOPPING})
# No process, and supervisord will not start one by itself: a stop has ended.
SETTLED = frozenset({
    ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL, ProcessState.UNKNOWN,
})  # fmt: skip
# The process ended by itself (supervisord restarts nothing): the restart policy decides.
DIED = frozenset({ProcessState.EXITED, ProcessState.FATAL})
# Stopped, as a bot its user stopped should be: its program ran and ended.
STOPPED = frozenset({ProcessState.STOPPED, ProcessState.EXITED})
# As a stopped bot may be: stopped, or without a program at all.
AT_REST = STOPPED | {ProcessState.ABSENT}

# Wire word → state: one dict lookup checks and converts (heartbeats carry many).
PROCESS_STATES_BY_NAME: dict[str, ProcessState] = {s.value: s for s in ProcessState}


class RunState(enum.StrEnum):
    """What the controller wants of a bot: run it, keep it stopped, or hold it (it is being
    moved to another pool: its agent runs no program for it and leaves its directory
    alone). A bot's record is running or stopped; held is its desired state while held."""

    RUNNING = "running"
    STOPPED = "stopped"
    HELD = "held"


class BotStatusWord(enum.StrEnum):
    """A bot's `status` in API answers and metrics: what ftpool is doing with it, or else
    its process state in lower case."""

    DELETING = "deleting"
    MIGRATING = "migrating"
    FAILED = "failed"  # the monitor gave up on it; a start or restart tries again
    PENDING = "pending"  # no report of its agent yet
    UNKNOWN = "unknown"  # its pool is suspect: the last report may be out of date
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    EXITED = "exited"
    FATAL = "fatal"
    ABSENT = "absent"

    @classmethod
    def of_process(cls, state: ProcessState) -> BotStatusWord:
        return _WORD_OF_PROCESS[state]


_WORD_OF_PROCESS = {s: BotStatusWord(s.value.lower()) for s in ProcessState}


class PoolStatusWord(enum.StrEnum):
    """A pool's `status` in API answers and metrics."""

    RUNNING = "running"
    SUSPECT = "suspect"  # its agent is gone or silent, or the runtime saw it die


class FleetHealth(enum.StrEnum):
    """The overall health of all pools and bots (`/api/pool/status`)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
