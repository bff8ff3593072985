"""What the client prints: figures, tables and text that comes from bots."""

from __future__ import annotations

import io
import json

from controller.client.bots import COLUMNS, bot_row, log_printer
from controller.client.command import Session
from controller.client.output import Output, clean, duration, percent, size


def test_figures_read_well() -> None:
    assert [size(None), size(512), size(94 * 1024**2), size(3 * 1024**3)] == [
        "-", "512 B", "94.0 MiB", "3.0 GiB"]  # fmt: skip
    assert [duration(None), duration(5), duration(125), duration(7380), duration(90000)] == [
        "-", "5s", "2m05s", "2h03m", "1d01h"]  # fmt: skip
    assert [percent(None), percent(12.345)] == ["-", "12.3%"]


def test_controls_from_a_bot_never_reach_the_terminal() -> None:
    assert clean("ok\x1b]0;owned\x07 \x9b2J\tend\n") == "ok\ufffd]0;owned\ufffd \ufffd2J\tend\n"


def test_a_table_shows_cells_as_text_one_row_per_line() -> None:
    out = io.StringIO()
    bot = {"instanceId": "[bold]b1[/bold]", "userId": "alice", "poolId": "pool-1", "port": 9000,
           "strategy": "S", "status": "running", "restarts": {"attempts": 2},
           "process": {"pid": 42, "uptimeSeconds": 61, "memoryBytes": 2048, "cpuPercent": 1.5,
                       "ping": {"ok": True, "ms": 3.2}}}  # fmt: skip
    Output(file=out).table(COLUMNS, [bot_row(bot)], empty="none")
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "USER", "POOL", "PORT", "STRATEGY", "STATUS", "PID",
                                "UPTIME", "MEMORY", "CPU", "PING", "RESTARTS"]  # fmt: skip
    row = next(line for line in lines if "alice" in line)
    assert row.split() == ["[bold]b1[/bold]", "alice", "pool-1", "9000", "S", "running", "42",
                           "1m01s", "2.0", "KiB", "1.5%", "3", "ms", "2"]  # fmt: skip
    empty = io.StringIO()
    Output(file=empty).table(["ID"], [], empty="no bots")
    assert empty.getvalue() == "no bots\n"


def test_a_log_is_printed_as_it_came_even_cut_inside_a_character() -> None:
    out = io.StringIO()
    show = log_printer(Session(api=None, out=Output(file=out)), "b1")  # type: ignore[arg-type]
    for part in (b"caf\xc3", b"\xa9 \x1b[2J\n"):
        show(part)
    assert out.getvalue() == "caf\u00e9 \ufffd[2J\n"
    out = io.StringIO()
    show = log_printer(Session(api=None, out=Output(as_json=True, file=out)), "b1")  # type: ignore[arg-type]
    show(b"line\n")
    assert json.loads(out.getvalue()) == {"instanceId": "b1", "log": "line\n"}


def test_fields_and_json() -> None:
    out = io.StringIO()
    Output(file=out).fields([("status", "running"), ("pid", None), ("stale", False)])
    assert [line.split() for line in out.getvalue().splitlines()] == [
        ["status", "running"], ["pid", "-"], ["stale", "no"]]  # fmt: skip
    out = io.StringIO()
    Output(as_json=True, file=out).json({"a": [1]})
    Output(as_json=True, file=out).json_line({"b": "\x1b"})
    first, second = out.getvalue().split("\n}\n")
    assert json.loads(first + "}") == {"a": [1]}
    assert json.loads(second) == {"b": "\x1b"}  # JSON escapes controls itself
