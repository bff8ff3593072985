"""A bot in a busy loop must not take its neighbours' share of the pool's CPUs.

Bots have no cgroup of their own (cgroup v1 hosts cannot give a container sub-groups), so
the fallback is the scheduler's priority. A bot is busy when its threads ran or waited to
run (`/proc/<pid>/task/*/schedstat`) for more than BOT_BUSY_CPU percent of a whole
BOT_BUSY_WINDOW: a spinner is always runnable, so it is seen whatever share of the CPU
its neighbours leave it (its CPU time alone was 63-75 % of a core beside nine busy
neighbours, under any useful threshold), while a calm bot sleeps most of the window
however busy its core is. A busy bot runs from then on at nice 19 and, with
BOT_BUSY_POLICY `idle` (the default), under SCHED_IDLE, every thread of it: a neighbour
that wakes takes the CPU from it at once. Where the kernel schedules by autogroup
(agent/autogroup.py: there a thread's priority counts only within its own bot) its
autogroup is reniced too. It still gets every cycle nobody else wants. A FreqTrade start,
seconds of full CPU, is shorter than the window. Once calm for a whole window it gets its
old priority back: its autogroup's always, its threads' where the agent may (CAP_SYS_NICE:
root on a host; in a container without it they keep 19 until the process ends).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import structlog

from agent import autogroup
from agent.autogroup import Written
from agent.probes import wanted_seconds

log = structlog.get_logger("agent.cpu")

BUSY_NICE = 19
POLICIES = ("idle", "nice")  # BOT_BUSY_POLICY: SCHED_IDLE and nice 19, or nice 19 alone


def busy(start: tuple[float, float], now: tuple[float, float], percent: float) -> bool:
    """Whether a process ran or waited to run for more than `percent` of the time between
    two (time, seconds run or waited) marks."""
    elapsed = now[0] - start[0]
    return elapsed > 0 and 100.0 * (now[1] - start[1]) / elapsed > percent


class BusyBots:
    def __init__(
        self, percent: float, window: float, clock: Callable[[], float] = time.monotonic,
        wanted: Callable[[int], float | None] = wanted_seconds, autogroups: bool | None = None,
        set_group_nice: Callable[[int, int], tuple[Written, int]] = autogroup.set_group_nice,
        policy: str = "idle", wall: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        """`percent` 0: never renice. `autogroups`: whether to renice bots' autogroups too
        (None: where the kernel schedules by them). `policy` `idle`: busy threads under
        SCHED_IDLE as well as at nice 19. `wall`: the epoch clock the heartbeat's
        `busy_since` is read from."""
        self.percent = percent
        self.policy = policy
        self.wall = wall
        self._since: dict[int, float] = {}  # deprioritised pid: since when (epoch seconds)
        self.window = window
        self.clock = clock
        self.wanted = wanted
        self.idle = policy == "idle"
        self.autogroups = autogroup.enabled() if autogroups is None else autogroups
        self.set_group_nice = set_group_nice
        self._marks: dict[int, tuple[float, float]] = {}  # pid: its window's start
        # Reniced pid: its threads' (nice, scheduling policy) before.
        self._was: dict[int, dict[int, tuple[int, int]]] = {}
        self._group_was: dict[int, int] = {}  # pid whose autogroup is reniced: its nice before
        self._group_due: dict[int, int] = {}  # pid: the autogroup nice still to write
        self._refused = False  # a thread's renice refused (and said)

    @property
    def active_policy(self) -> str | None:
        """What a busy bot gets (BOT_BUSY_POLICY), for the heartbeat; None: the rule is off."""
        return self.policy if self.percent else None

    def since(self, pid: int) -> float | None:
        """Since when (epoch seconds) the bot with this pid is deprioritised (None: not):
        from the window's end that found it busy to the one that finds it calm again."""
        return self._since.get(pid)

    def check(self, pids: Iterable[int]) -> None:
        """At each heartbeat: renice the bots busy for a whole window, restore calm ones."""
        if not self.percent:
            return
        now, seen = self.clock(), set()
        for pid in pids:
            if pid <= 0:
                continue
            mark = self._marks.get(pid)
            if mark is not None and now - mark[0] < self.window:
                seen.add(pid)  # read only at a window's ends: a file per thread
                continue
            used = self.wanted(pid)
            if used is None:
                continue
            seen.add(pid)
            if mark is None:
                self._marks[pid] = (now, used)
                continue
            self._marks[pid] = (now, used)
            if busy(mark, (now, used), self.percent):
                self._renice(pid)
                if pid not in self._since and self._lowered(pid):
                    self._since[pid] = self.wall()
                    log.info("busy_bot_deprioritised", pid=pid, policy=self.policy)
            elif pid in self._was or pid in self._group_was or pid in self._since:
                self._restore(pid)
                if self._since.pop(pid, None) is not None:
                    log.info("busy_bot_restored", pid=pid)
        for gone in self._marks.keys() - seen:
            del self._marks[gone]
            self._since.pop(gone, None)
            self._was.pop(gone, None)
            self._group_was.pop(gone, None)
            self._group_due.pop(gone, None)
        self._write_groups()

    def _lowered(self, pid: int) -> bool:
        """Whether anything of the bot was deprioritised: a thread, or its autogroup (done
        or due); nothing where every renice was refused."""
        return pid in self._was or pid in self._group_due or pid in self._group_was

    def _renice(self, pid: int) -> None:
        """Every thread of it: on Linux a nice value is a thread's, and a renice of the pid
        alone leaves a strategy's own spinning thread at its old priority. Threads started
        since the last window get it too (those its main thread starts inherit it)."""
        was = self._was.setdefault(pid, {})
        for tid in threads(pid):
            if tid not in was:
                try:
                    before = os.getpriority(os.PRIO_PROCESS, tid), os.sched_getscheduler(tid)
                    os.setpriority(os.PRIO_PROCESS, tid, BUSY_NICE)
                    was[tid] = before
                    if self.idle and before[1] == os.SCHED_OTHER:
                        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
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
        alive = set(threads(pid))
        for tid, (nice, policy) in list(was.items()):
            if tid not in alive:  # ended: its id may be another process's thread by now
                del was[tid]
                continue
            try:
                # The policy first: from SCHED_IDLE back to SCHED_OTHER needs no privilege
                # at nice 19 (RLIMIT_NICE); a lower nice value does.
                if os.sched_getscheduler(tid) != policy:
                    os.sched_setscheduler(tid, policy, os.sched_param(0))
                os.setpriority(os.PRIO_PROCESS, tid, nice)
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
            # Asked again at the write (one may wait a heartbeat): a pid reused meanwhile
            # inside the pool's own session must never put the agent's group at 19.
            leads = restore or autogroup.leads_its_session(pid)
            before = None if restore or not leads else autogroup.group_nice(pid)
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
