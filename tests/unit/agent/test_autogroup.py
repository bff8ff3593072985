"""Autogroups read and written through /proc, on real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.autogroup import (
    Written,
    enabled,
    group_nice,
    leads_its_session,
    parse_nice,
    set_group_nice,
)


def sleeper(own_session: bool) -> subprocess.Popen[bytes]:
    code = "import time; time.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=own_session)


def test_what_the_kernel_shows_is_parsed() -> None:
    assert parse_nice("/autogroup-7529 nice 0\n") == 0
    assert parse_nice("/autogroup-12 nice -5\n") == -5
    assert parse_nice("/autogroup-12 nice 19") == 19
    assert parse_nice("") is None  # the default group: shown as nothing
    assert parse_nice("nonsense nice 3") is None


def test_enabled_is_the_sysctl_and_false_without_it(tmp_path: Path) -> None:
    (tmp_path / "on").write_text("1\n")
    (tmp_path / "off").write_text("0\n")
    assert enabled(str(tmp_path / "on"))
    assert not enabled(str(tmp_path / "off"))
    assert not enabled(str(tmp_path / "absent"))  # a kernel built without autogroups


def test_a_session_leaders_autogroup_is_written_and_a_gone_process_is_gone_and_no_leader() -> None:
    bot, pools = (sleeper(own_session) for own_session in (True, False))
    try:
        assert leads_its_session(bot.pid) and not leads_its_session(pools.pid)
        assert group_nice(bot.pid) == 0
        assert set_group_nice(bot.pid, 19) == (Written.DONE, 0)
        assert group_nice(bot.pid) == 19
    finally:
        for process in (bot, pools):
            process.kill()
            process.wait()
    assert set_group_nice(bot.pid, 0)[0] is Written.GONE
    assert group_nice(bot.pid) is None and not leads_its_session(bot.pid)
