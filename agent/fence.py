"""Fencing: an agent cut off from its controller for AGENT_FENCE_TIMEOUT stops its bots.

Past that time the controller may declare the pool lost and start its bots elsewhere
(after AGENT_FENCE_TIMEOUT plus a margin, controller/health/judge.py): by then this copy
must be gone, so that a bot never runs twice. Fenced, the agent starts nothing by itself;
the bots come back when the controller is reached again and its desired state says so
(the reconciler, on the first desired state after the hello). The preloader and the
market-data proxy run on: they trade nothing.

The decision is pure (`decide`, over the time contact was lost and a clock); `Fence` is
the thin loop that acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import select
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("agent.fence")


class Verdict(enum.Enum):
    NONE = "none"  # fencing is off, the controller is reached, or the bots are stopped already
    WAIT = "wait"  # cut off, not for long enough yet: look again at `due`
    FENCE = "fence"  # cut off for the timeout: stop every bot now


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    due: float = 0.0


_NOTHING = Decision(Verdict.NONE)


def decide(timeout: float, lost_at: float | None, fenced: bool, now: float) -> Decision:
    """What to do, `timeout` seconds being allowed without the controller (0: fencing is
    off), contact having been lost at `lost_at` (None: connected now)."""
    if timeout <= 0 or lost_at is None or fenced:
        return _NOTHING
    due = lost_at + timeout
    return Decision(Verdict.FENCE) if now >= due else Decision(Verdict.WAIT, due)


def lost_since(last_heard: float | None, now: float) -> float:
    """When contact was lost, for a connection that ended `now`: at the last frame the
    controller's side actually sent (a silent partition is noticed only a ping period
    later, and the controller counts its wait from its own last word of the agent)."""
    return now if last_heard is None else min(last_heard, now)


def late(timeout: float, margin: float, lost_at: float, done_at: float) -> bool:
    """Whether a fence that ended at `done_at` came after the controller's wait (timeout
    plus margin since contact was lost): it may have started the bots elsewhere already.
    (A margin of 0: not known, not checked.)"""
    return margin > 0 and done_at - lost_at > timeout + margin


KILL_WAIT = 5.0  # how long the fence waits for killed processes to be gone
SAFETY = 2.0  # seconds of the margin left unused, for the clocks and the scheduler


def stop_budget(margin: float, stop_wait: float, poll: float) -> float:
    """Seconds a fence gives supervisord to list and stop the bots before it kills their
    processes itself: their stop time (and a poll), but never past the controller's margin
    (less the kill's wait and a safety): the bots are surely gone when the controller may
    start them elsewhere, even those that would stop slowly. A margin of 0: not known."""
    wanted = stop_wait + poll
    if margin <= 0:
        return wanted
    return max(1.0, min(wanted, margin - KILL_WAIT - SAFETY))


def pidfds_of(pids: list[int]) -> dict[int, int]:
    """A pidfd per process still there: a process is then told apart from a later one that
    reuses its pid."""
    fds = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fds[pid] = os.pidfd_open(pid)
    return fds


def narrowed(pidfds: dict[int, int], pids: list[int]) -> dict[int, int]:
    """The pidfds of `pids` alone: those of other pids closed, the missing ones opened;
    those kept still name the very processes they were taken of."""
    wanted = set(pids)
    close_pidfds({pid: fd for pid, fd in pidfds.items() if pid not in wanted})
    kept = {pid: fd for pid, fd in pidfds.items() if pid in wanted}
    return kept | pidfds_of(sorted(wanted - kept.keys()))


def close_pidfds(pidfds: dict[int, int]) -> None:
    for fd in pidfds.values():
        with contextlib.suppress(OSError):
            os.close(fd)


def kill_survivors(pidfds: dict[int, int], wait: float = KILL_WAIT) -> list[int]:
    """SIGKILL (and wait for) each process of `pidfds` still alive after its program was
    stopped (a forked bot that outlived its launcher); the pids killed. Closes the fds."""
    killed = []
    try:
        for pid, fd in pidfds.items():
            if not select.select([fd], [], [], 0)[0]:  # readable once the process ended
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                    killed.append(pid)
        deadline = time.monotonic() + wait
        for pid in killed:
            select.select([pidfds[pid]], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        close_pidfds(pidfds)
    return killed


class Fence:
    """Tracks contact with the controller and stops the bots (`stop_bots`) once it has been
    lost for `timeout` seconds; `fenced` until the controller's next desired state."""

    def __init__(
        self, timeout: float, stop_bots: Callable[[], Awaitable[int | None]],
        clock: Callable[[], float] = time.monotonic, margin: float = 0.0,
    ) -> None:  # fmt: skip
        self.timeout = timeout
        self.margin = margin  # AGENT_FENCE_MARGIN: the controller's wait past the timeout
        self.stop_bots = stop_bots
        self.clock = clock
        self.last_heard: float | None = None  # the last frame received from the controller
        # An agent starting has no contact yet: from its start (a restarted agent's bots,
        # left running by supervisord, are fenced too if the controller stays away).
        self.lost_at: float | None = clock()
        self.fenced = False
        self._changed = asyncio.Event()

    def heard(self) -> None:
        """A frame (a pong included) came from the controller's side."""
        self.last_heard = self.clock()

    def connected(self) -> None:
        """The controller spoke: in contact until the connection ends."""
        self.heard()
        if self.lost_at is not None:
            self.lost_at = None
            self._changed.set()

    def disconnected(self) -> None:
        """The connection ended: contact was lost at the last frame received, if there was
        any contact."""
        if self.lost_at is None:
            self.lost_at = lost_since(self.last_heard, self.clock())
            self._changed.set()

    def released(self) -> None:
        """The controller's desired state arrived: it decides again what runs."""
        if self.fenced:
            log.info("fence_released")
        self.fenced = False
        self._changed.set()

    async def run(self) -> None:
        while True:
            self._changed.clear()
            decision = decide(self.timeout, self.lost_at, self.fenced, self.clock())
            if decision.verdict is Verdict.FENCE:
                await self._fence()
                continue
            wait = None if decision.verdict is Verdict.NONE else decision.due - self.clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    async def _fence(self) -> None:
        lost_at = self.lost_at if self.lost_at is not None else self.clock()
        log.warning("fencing", timeout=self.timeout, silent_s=round(self.clock() - lost_at, 1))
        self.fenced = True
        try:
            stopped = await self.stop_bots()
            if stopped is None:  # the controller spoke meanwhile: its word wins
                log.info("fence_cancelled")
                self.fenced = False
                return
        except Exception:
            # supervisord did not answer: not fenced yet, so the next round tries again.
            log.exception("fence_failed")
            self.fenced = False
            await asyncio.sleep(1)
            return
        done_at = self.clock()
        log.warning("fenced", bots_stopped=stopped, after_s=round(done_at - lost_at, 1))
        if late(self.timeout, self.margin, lost_at, done_at):
            # Past the controller's wait: it may run these bots elsewhere already.
            log.error("fence_late", after_s=round(done_at - lost_at, 1), timeout=self.timeout,
                      margin=self.margin)  # fmt: skip
