"""Busy bots reniced: the window's judgement with an injected clock, on a real process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

from agent.autogroup import Written, group_nice
from agent.cpu import BUSY_NICE, BusyBots, busy, nice_of, threads


def test_busy_is_more_than_the_share_of_a_core_over_the_window() -> None:
    assert busy((0.0, 10.0), (30.0, 40.0), 90)  # 100 %
    assert not busy((0.0, 10.0), (30.0, 30.0), 90)  # 67 %
    assert not busy((5.0, 1.0), (5.0, 9.0), 90)  # no time passed


def test_a_bot_busy_for_a_whole_window_runs_at_nice_19_and_a_start_does_not() -> None:
    bot = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    now, used = [0.0], {bot.pid: 0.0}
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get)
    try:
        before = nice_of(bot.pid)
        busy_bots.check([bot.pid])  # the window starts
        now[0], used[bot.pid] = 10.0, 10.0  # ten seconds flat out: a start, say
        busy_bots.check([bot.pid])
        assert nice_of(bot.pid) == before  # the window is not over
        now[0], used[bot.pid] = 30.0, 29.0
        busy_bots.check([bot.pid])
        assert nice_of(bot.pid) == BUSY_NICE
        now[0], used[bot.pid] = 60.0, 30.0  # calm for a whole window
        busy_bots.check([bot.pid])
        # Its old priority back where the agent may lower a nice value (root), else kept.
        assert nice_of(bot.pid) == (before if os.geteuid() == 0 else BUSY_NICE)
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()
    busy_bots.check([])  # gone: forgotten
    assert not busy_bots._marks


def test_a_deprioritised_bot_says_since_when_until_it_is_calm_or_gone() -> None:
    # What the heartbeat reports (`busy_since`): the wall time of the window's end that
    # found it busy, kept while it stays busy, gone when calm or when its process ends.
    bot = sleeper(own_session=False)
    now, used, wall = [0.0], {bot.pid: 0.0}, [1000.0]
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get, autogroups=False,
                         policy="nice", wall=lambda: wall[0])  # fmt: skip
    assert busy_bots.active_policy == "nice"
    try:
        busy_for_a_window(busy_bots, now, used, bot.pid)
        assert busy_bots.since(bot.pid) == 1000.0
        wall[0], now[0], used[bot.pid] = 1030.0, now[0] + 30, used[bot.pid] + 30
        busy_bots.check([bot.pid])  # busy still: since when it began
        assert busy_bots.since(bot.pid) == 1000.0
        now[0] += 30  # calm for a whole window
        busy_bots.check([bot.pid])
        assert busy_bots.since(bot.pid) is None
        busy_for_a_window(busy_bots, now, used, bot.pid)
        assert busy_bots.since(bot.pid) is not None
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()
    busy_bots.check([])
    assert busy_bots.since(bot.pid) is None
    assert BusyBots(0, 30).active_policy is None  # the rule off: no policy reported


def test_off_reniced_nothing() -> None:
    now, used = [0.0], {os.getpid(): 0.0}
    off = BusyBots(0, 30, clock=lambda: now[0], wanted=used.get)
    off.check([os.getpid()])
    now[0], used[os.getpid()] = 60.0, 60.0
    off.check([os.getpid()])
    assert nice_of(os.getpid()) != BUSY_NICE


def test_every_thread_of_a_busy_bot_is_reniced_not_only_its_main_thread() -> None:
    # A strategy's own thread, started before the renice: on Linux a nice value is a
    # thread's, and a renice of the pid alone would leave this one at its old priority.
    code = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start()"
    bot = subprocess.Popen([sys.executable, "-c", code])
    now, used = [0.0], {bot.pid: 0.0}
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get)
    try:
        while len(threads(bot.pid)) < 2:
            time.sleep(0.01)
        busy_bots.check([bot.pid])
        now[0], used[bot.pid] = 30.0, 30.0
        busy_bots.check([bot.pid])
        assert {nice_of(tid) for tid in threads(bot.pid)} == {BUSY_NICE}
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()


def sleeper(own_session: bool) -> subprocess.Popen[bytes]:
    """A bot's stand-in: with its own session (as a forked bot), or in the test's."""
    code = "import time; time.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=own_session)


def busy_for_a_window(busy_bots: BusyBots, now: list[float], used: dict, pid: int) -> None:
    busy_bots.check([pid])
    now[0] += 30
    used[pid] += 30
    busy_bots.check([pid])


def calm_for_a_window(busy_bots: BusyBots, now: list[float], pid: int) -> None:
    now[0] += 30
    busy_bots.check([pid])


def test_a_busy_bot_leading_its_session_has_its_autogroup_reniced_and_restored() -> None:
    # Each forked bot is its own session, hence its own autogroup: against its neighbours
    # only the autogroup's nice counts, so it is reniced too, and restored once calm.
    bot = sleeper(own_session=True)
    now, used = [0.0], {bot.pid: 0.0}
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get, autogroups=True)
    try:
        before = group_nice(bot.pid)
        assert before is not None and before < BUSY_NICE
        busy_for_a_window(busy_bots, now, used, bot.pid)
        assert (nice_of(bot.pid), group_nice(bot.pid)) == (BUSY_NICE, BUSY_NICE)
        calm_for_a_window(busy_bots, now, bot.pid)
        # The kernel lets an agent without CAP_SYS_ADMIN write one autogroup per 0.1 s:
        # what it refused now is written at a later heartbeat, without a new window.
        for _ in range(50):
            if group_nice(bot.pid) == before:
                break
            time.sleep(0.05)
            busy_bots.check([bot.pid])
        assert group_nice(bot.pid) == before
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()


def test_the_autogroup_of_a_bot_in_the_pools_session_is_left_alone() -> None:
    # Its autogroup is the pool's (here the test's own): renicing it would renice the
    # machinery and every bot in it. Its threads' nice is all that counts there anyway.
    bot = sleeper(own_session=False)
    ours = group_nice(os.getpid())
    now, used = [0.0], {bot.pid: 0.0}
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get, autogroups=True)
    try:
        busy_for_a_window(busy_bots, now, used, bot.pid)
        assert nice_of(bot.pid) == BUSY_NICE
        assert group_nice(bot.pid) == group_nice(os.getpid()) == ours
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()


def test_where_autogroups_are_off_or_refused_only_the_threads_are_reniced() -> None:
    writes: list[tuple[int, int]] = []

    def refused(pid: int, nice: int) -> tuple[Written, int]:
        writes.append((pid, nice))
        return Written.REFUSED, errno.EACCES

    bots = [sleeper(own_session=True) for _ in range(2)]
    now, used = [0.0], {b.pid: 0.0 for b in bots}
    off = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get, autogroups=False,
                   set_group_nice=refused)  # fmt: skip
    on = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get, autogroups=True,
                  set_group_nice=refused)  # fmt: skip
    try:
        busy_for_a_window(off, now, used, bots[0].pid)
        assert nice_of(bots[0].pid) == BUSY_NICE and writes == []
        # Refused once: not tried again for another bot (no warning at every heartbeat).
        for bot in bots:
            busy_for_a_window(on, now, used, bot.pid)
            assert nice_of(bot.pid) == BUSY_NICE
        assert writes == [(bots[0].pid, BUSY_NICE)] and not on.autogroups
        assert {group_nice(b.pid) for b in bots} == {0}
    finally:
        for bot in bots:
            bot.send_signal(signal.SIGKILL)
            bot.wait()


def test_a_busy_bots_threads_run_under_sched_idle_and_come_back_when_calm() -> None:
    # SCHED_IDLE: a neighbour that wakes takes the CPU from it at once. Its threads started
    # later inherit it. Back to SCHED_OTHER once calm (at nice 19 that needs no privilege).
    code = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start()"
    bot = subprocess.Popen([sys.executable, "-c", code])
    now, used = [0.0], {bot.pid: 0.0}
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get, autogroups=False)
    try:
        while len(threads(bot.pid)) < 2:
            time.sleep(0.01)
        busy_for_a_window(busy_bots, now, used, bot.pid)
        assert {os.sched_getscheduler(tid) for tid in threads(bot.pid)} == {os.SCHED_IDLE}
        calm_for_a_window(busy_bots, now, bot.pid)
        assert {os.sched_getscheduler(tid) for tid in threads(bot.pid)} == {os.SCHED_OTHER}
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()


def test_policy_nice_leaves_a_busy_bot_under_sched_other() -> None:
    bot = sleeper(own_session=False)
    now, used = [0.0], {bot.pid: 0.0}
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get, autogroups=False,
                         policy="nice")  # fmt: skip
    try:
        busy_for_a_window(busy_bots, now, used, bot.pid)
        assert nice_of(bot.pid) == BUSY_NICE
        assert os.sched_getscheduler(bot.pid) == os.SCHED_OTHER
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()


def test_what_a_bot_wanted_is_read_only_at_the_ends_of_its_windows() -> None:
    # A file per thread of every bot: read at each window's end, not at every heartbeat.
    reads: list[float] = []
    now = [0.0]

    def wanted(_pid: int) -> float:
        reads.append(now[0])
        return 0.0

    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=wanted, autogroups=False)
    for second in range(0, 61):
        now[0] = float(second)
        busy_bots.check([os.getpid()])
    assert reads == [0.0, 30.0, 60.0]


def test_a_restore_touches_only_the_bots_own_threads_alive_now() -> None:
    """A thread id recorded at the renice whose thread ended may be another process's by
    the restore (ids are reused): it is forgotten, never given the recorded nice value."""
    bot, stranger = sleeper(own_session=False), sleeper(own_session=False)
    now, used = [0.0], {bot.pid: 0.0}
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], wanted=used.get, policy="nice")
    try:
        busy_for_a_window(busy_bots, now, used, bot.pid)
        assert nice_of(bot.pid) == BUSY_NICE
        # As if one of the bot's threads had ended and its id gone to the stranger.
        busy_bots._was[bot.pid][stranger.pid] = (5, os.SCHED_OTHER)
        calm_for_a_window(busy_bots, now, bot.pid)
        assert nice_of(stranger.pid) == 0
    finally:
        for process in (bot, stranger):
            process.send_signal(signal.SIGKILL)
            process.wait()


def test_a_deferred_autogroup_write_is_dropped_for_a_pid_no_longer_leading_its_session() -> None:
    """A write waits for the next heartbeat when the kernel refuses one; a pid reused
    meanwhile inside the pool's own session must not have the pool's group put at 19."""
    bot = sleeper(own_session=False)
    ours = group_nice(os.getpid())
    busy_bots = BusyBots(90, 30, clock=lambda: 0.0, wanted=lambda pid: 0.0, autogroups=True)
    try:
        busy_bots._group_due[bot.pid] = BUSY_NICE  # due since it led a session of its own
        busy_bots._write_groups()
        assert group_nice(os.getpid()) == ours and not busy_bots._group_due
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()
