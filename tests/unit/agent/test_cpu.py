"""Busy bots reniced: the window's judgement with an injected clock, on a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from agent.cpu import BUSY_NICE, BusyBots, busy, nice_of, threads


def test_busy_is_more_than_the_share_of_a_core_over_the_window() -> None:
    assert busy((0.0, 10.0), (30.0, 40.0), 90)  # 100 %
    assert not busy((0.0, 10.0), (30.0, 30.0), 90)  # 67 %
    assert not busy((5.0, 1.0), (5.0, 9.0), 90)  # no time passed


def test_a_bot_busy_for_a_whole_window_runs_at_nice_19_and_a_start_does_not() -> None:
    bot = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    now, used = [0.0], {bot.pid: 0.0}
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], cpu=used.get)
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


def test_off_reniced_nothing() -> None:
    now, used = [0.0], {os.getpid(): 0.0}
    off = BusyBots(0, 30, clock=lambda: now[0], cpu=used.get)
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
    busy_bots = BusyBots(90, 30, clock=lambda: now[0], cpu=used.get)
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
