"""A bot in a busy loop must not take its neighbours' share of the pool's CPUs.

Bots have no cgroup of their own (cgroup v1 hosts cannot give a container sub-groups), so
the fallback is the scheduler's priority: a bot that used more than BOT_BUSY_CPU percent of
a core over a whole BOT_BUSY_WINDOW runs at nice 19 from then on, every thread of it, so
its calm neighbours (and the pool's machinery) come first whenever they want the CPU; it
still gets every cycle nobody else wants. A FreqTrade start, seconds of full CPU, is
shorter than the window. Once calm for a whole window it gets its old priority back where
the agent may lower a nice value (CAP_SYS_NICE: root on a host); in a container without
it, until its process ends.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable

from agent.probes import cpu_seconds

BUSY_NICE = 19


def busy(start: tuple[float, float], now: tuple[float, float], percent: float) -> bool:
    """Whether a process used more than `percent` of a core between two (time, CPU seconds)."""
    elapsed = now[0] - start[0]
    return elapsed > 0 and 100.0 * (now[1] - start[1]) / elapsed > percent


class BusyBots:
    def __init__(
        self, percent: float, window: float, clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[int], float | None] = cpu_seconds,
    ) -> None:  # fmt: skip
        """`percent` 0: never renice."""
        self.percent = percent
        self.window = window
        self.clock = clock
        self.cpu = cpu
        self._marks: dict[int, tuple[float, float]] = {}  # pid: its window's start
        self._was: dict[int, dict[int, int]] = {}  # reniced pid: its threads' nice before

    def check(self, pids: Iterable[int]) -> None:
        """At each heartbeat: renice the bots busy for a whole window, restore calm ones."""
        if not self.percent:
            return
        now, seen = self.clock(), set()
        for pid in pids:
            used = self.cpu(pid) if pid > 0 else None
            if used is None:
                continue
            seen.add(pid)
            mark = self._marks.get(pid)
            if mark is None or now - mark[0] < self.window:
                self._marks.setdefault(pid, (now, used))
                continue
            self._marks[pid] = (now, used)
            if busy(mark, (now, used), self.percent):
                self._renice(pid)
            elif pid in self._was:
                self._restore(pid)
        for gone in self._marks.keys() - seen:
            del self._marks[gone]
            self._was.pop(gone, None)

    def _renice(self, pid: int) -> None:
        """Every thread of it: on Linux a nice value is a thread's, and a renice of the pid
        alone leaves a strategy's own spinning thread at its old priority. Threads started
        since the last window get it too (those its main thread starts inherit it)."""
        was = self._was.setdefault(pid, {})
        for tid in threads(pid):
            if tid not in was:
                with contextlib.suppress(OSError):
                    before = os.getpriority(os.PRIO_PROCESS, tid)
                    os.setpriority(os.PRIO_PROCESS, tid, BUSY_NICE)
                    was[tid] = before
        if not was:
            del self._was[pid]

    def _restore(self, pid: int) -> None:
        was = self._was[pid]
        for tid, before in list(was.items()):
            try:
                os.setpriority(os.PRIO_PROCESS, tid, before)
            except ProcessLookupError:  # that thread ended
                pass
            except OSError:  # lowering a nice value needs CAP_SYS_NICE: kept until it ends
                continue
            del was[tid]
        if not was:
            del self._was[pid]


def threads(pid: int) -> list[int]:
    """The thread ids of a process (none once it is gone)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return []


def nice_of(pid: int) -> int | None:
    try:
        return os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return None
