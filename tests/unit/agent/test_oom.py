"""OOM scores: bots raised above the pool's machinery, each pid once, on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from agent.oom import OomScores, read_oom_score_adj, write_oom_score_adj


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_bot_is_raised_above_the_machinery_and_each_pid_scored_once() -> None:
    own = read_oom_score_adj(os.getpid())
    assert own is not None
    # The machinery at its own score (lowering needs a privilege the tests may not have).
    scores = OomScores(bot_adj=min(own + 500, 1000), machinery_adj=own)
    bot = sleeper()
    try:
        assert scores.place([os.getpid()], []) is None  # no bot runs
        assert scores.place([os.getpid()], [bot.pid]) is True
        assert read_oom_score_adj(bot.pid) == min(own + 500, 1000)
        # Scored once: a score changed since (by someone else) is not fought over.
        write_oom_score_adj(bot.pid, 1000)
        assert scores.place([os.getpid()], [bot.pid]) is True
        assert read_oom_score_adj(bot.pid) == 1000
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()


def test_a_bot_that_cannot_rank_above_the_machinery_is_reported() -> None:
    own = read_oom_score_adj(os.getpid())
    assert own is not None
    scores = OomScores(bot_adj=own, machinery_adj=own)  # equal: the kernel picks by size
    bot = sleeper()
    try:
        assert scores.place([os.getpid()], [bot.pid]) is False
    finally:
        bot.send_signal(signal.SIGKILL)
        bot.wait()


def test_gone_processes_are_no_trouble() -> None:
    bot = sleeper()
    bot.send_signal(signal.SIGKILL)
    bot.wait()
    assert write_oom_score_adj(bot.pid, 500) is None
    assert OomScores(500, -999).place([], [bot.pid, 0]) is None
