"""A bot in a busy loop must not take its neighbours' share of the pool's CPUs.

Bots have no cgroup of their own (cgroup v1 hosts cannot give a container sub-groups), so
the fallback is the scheduler's priority: a bot that used more than BOT_BUSY_CPU percent of
a core over a whole BOT_BUSY_WINDOW runs at nice 19 from then on, every thread of it and,
where the kernel schedules by autogroup, its autogroup too (agent/autogroup.py: there a
thread's nice counts only within its own bot), so its calm neighbours (and the pool's
machinery) come first whenever they want the CPU; it still gets every cycle nobody else
wants. A FreqTrade start, seconds of full CPU, is shorter than the window. Once calm for a
whole window it gets its old priority back: its autogroup's always, its threads' where the
agent may lower a nice value (CAP_SYS_NICE: root on a host; in a container without it,
they keep 19 until the process ends).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import structlog

from agent import autogroup
from agent.autogroup import Written
from agent.probes import cpu_seconds

log = structlog.get_logger("agent.cpu")

BUSY_NICE = 19


def busy(start: tuple[float, float], now: tuple[float, float], percent: float) -> bool:
    """Whether a process used more than `percent` of a core between two (time, CPU seconds)."""
    elapsed = now[0] - start[0]
    return elapsed > 0 and 100.0 * (now[1] - start[1]) / elapsed > percent


class BusyBots:
    def __init__(
        self, percent: float, window: float, clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[int], float | None] = cpu_seconds, autogroups: bool | None = None,
        set_group_nice: Callable[[int, int], tuple[Written, int]] = autogroup.set_group_nice,
    ) -> None:  # fmt: skip
        """`percent` 0: never renice. `autogroups`: whether to renice bots' autogroups too
        (None: where the kernel schedules by them)."""
        self.percent = percent
        self.window = window
        self.clock = clock
        self.cpu = cpu
        self.autogroups = autogroup.enabled() if autogroups is None else autogroups
        self.set_group_nice = set_group_nice
        self._marks: dict[int, tuple[float, float]] = {}  # pid: its window's start
        self._was: dict[int, dict[int, int]] = {}  # reniced pid: its threads' nice before
        self._group_was: dict[int, int] = {}  # pid whose autogroup is reniced: its nice before
        self._group_due: dict[int, int] = {}  # pid: the autogroup nice still to write
        self._refused = False  # a thread's renice refused (and said)

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
            elif pid in self._was or pid in self._group_was:
                self._restore(pid)
        for gone in self._marks.keys() - seen:
            del self._marks[gone]
            self._was.pop(gone, None)
            self._group_was.pop(gone, None)
            self._group_due.pop(gone, None)
        self._write_groups()

    def _renice(self, pid: int) -> None:
        """Every thread of it: on Linux a nice value is a thread's, and a renice of the pid
        alone leaves a strategy's own spinning thread at its old priority. Threads started
        since the last window get it too (those its main thread starts inherit it)."""
        was = self._was.setdefault(pid, {})
        for tid in threads(pid):
            if tid not in was:
                try:
                    before = os.getpriority(os.PRIO_PROCESS, tid)
                    os.setpriority(os.PRIO_PROCESS, tid, BUSY_NICE)
                    was[tid] = before
                except PermissionError as exc:
                    # Another user's process, without CAP_SYS_NICE (a pool container's
                    # root agent and its bot users): said once.
                    if not self._refused:
                        self._refused = True
                        log.warning("busy_bot_renice_refused", pid=pid, error=str(exc))
                except OSError:  # that thread ended
                    pass
        if not was:
            del self._was[pid]
        if self.autogroups and pid not in self._group_was and autogroup.leads_its_session(pid):
            self._group_due[pid] = BUSY_NICE

    def _restore(self, pid: int) -> None:
        self._group_due.pop(pid, None)
        if pid in self._group_was:
            self._group_due[pid] = self._group_was[pid]
        was = self._was.get(pid, {})
        for tid, before in list(was.items()):
            try:
                os.setpriority(os.PRIO_PROCESS, tid, before)
            except ProcessLookupError:  # that thread ended
                pass
            except OSError:  # lowering a nice value needs CAP_SYS_NICE: kept until it ends
                continue
            del was[tid]
        if not was:
            self._was.pop(pid, None)

    def _write_groups(self) -> None:
        """The autogroup nice values due, as far as the kernel lets: one write per 0.1 s to
        an agent without CAP_SYS_ADMIN, the rest at the next heartbeat."""
        for pid, nice in list(self._group_due.items()):
            restore = pid in self._group_was
            before = None if restore else autogroup.group_nice(pid)
            if not restore and (before is None or before >= nice):
                del self._group_due[pid]  # in no autogroup of its own, or already as low
                continue
            written, code = self.set_group_nice(pid, nice)
            if written is Written.AGAIN:
                return
            del self._group_due[pid]
            if written is Written.DONE and before is not None:
                self._group_was[pid] = before
            else:
                self._group_was.pop(pid, None)
            if written is Written.REFUSED and not restore and self.autogroups:
                # The same for every bot here: said once, then only the threads' nice. (A
                # restore below 0 is refused without CAP_SYS_NICE: that group keeps 19.)
                self.autogroups = False
                log.warning("autogroup_nice_refused", pid=pid, errno=code,
                            error=os.strerror(code))  # fmt: skip


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
