"""Following: the new part of a log tail, the events of a stream, waiting for a bot."""

from __future__ import annotations

import pytest

from controller.client.command import Failed
from controller.client.events import event_line, parse_sse
from controller.client.http import Unreachable, error_message
from controller.client.logs import ANCHOR, new_part
from controller.client.nodes import follow
from controller.client.wait import Patience, arrived, wait_until


def test_the_new_part_of_a_log_tail() -> None:
    assert new_part(b"", b"a\n") == (b"a\n", False)
    assert new_part(b"a\n", b"a\nb\n") == (b"b\n", False)
    assert new_part(b"a\n", b"a\n") == (b"", False)
    lines = b"".join(b"%05d line\n" % i for i in range(200))
    tail, later = lines[-1000:], (lines + b"00200 line\n")[-1000:]  # a tail cut at 1000 bytes
    assert new_part(tail, later) == (b"00200 line\n", False)
    # More written than a tail holds: all of it is new, and something is missing.
    assert new_part(tail, b"X" * (ANCHOR * 2)) == (b"X" * (ANCHOR * 2), True)


def test_server_sent_events_are_parsed() -> None:
    stream = [
        ": keepalive", "", "id: 1", "event: bot_state", 'data: {"id": 1, "type": "bot_state"}',
        "", "id: 2", 'data: {"id": 2,', 'data: "type": "x"}', "",
        ": too slow, dropped; reconnect with Last-Event-ID", "",
    ]  # fmt: skip
    assert list(parse_sse(stream)) == [{"id": 1, "type": "bot_state"}, {"id": 2, "type": "x"}]


def test_an_event_is_one_line() -> None:
    line = event_line({"id": 7, "type": "bot_restart", "poolId": "pool-1", "instanceId": "b1",
                       "reason": "bot_not_running", "timestamp": "2026-01-02T03:04:05Z",
                       "detail": {"attempt": 2}})  # fmt: skip
    assert "#7" in line and "bot_restart" in line and "bot_not_running  attempt=2" in line
    assert "\n" not in line


def test_the_controllers_error_message_is_shown() -> None:
    assert (
        error_message(404, b'{"success": false, "error": "bot x not found"}') == "bot x not found"
    )
    assert error_message(502, b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert error_message(500, b"") == "Internal Server Error"


def view(status: str, state: str | None = None, pid: int | None = None, ping: bool = True) -> dict:
    process = None if state is None else {"state": state, "pid": pid, "ping": {"ok": ping}}
    return {"instanceId": "b1", "status": status, "process": process}


def test_arrived() -> None:
    assert arrived(view("running", "RUNNING", 5), "running")
    assert not arrived(view("running", "RUNNING", 5, ping=False), "running")
    assert not arrived(view("starting", "STARTING", 5), "running")
    assert not arrived(view("running", "RUNNING", 5), "running", old_pid=5)  # not restarted yet
    assert arrived(view("running", "RUNNING", 6), "running", old_pid=5)
    assert arrived(view("exited", "EXITED"), "stopped")
    assert not arrived(view("running", "RUNNING", 5), "stopped")


def test_wait_until_is_bounded() -> None:
    now = [0.0]
    views = iter([view("pending"), view("starting", "STARTING", 5), view("running", "RUNNING", 5)])
    sleeps = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    assert wait_until(lambda: next(views), "running", 10, clock=lambda: now[0], sleep=sleep)[
        "status"] == "running"  # fmt: skip
    assert len(sleeps) == 2
    with pytest.raises(Failed, match="b1 is pending, not running, after 3 s"):
        wait_until(lambda: view("pending"), "running", 3, clock=lambda: now[0], sleep=sleep)


def test_patience_with_a_lost_controller(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    patience = Patience(10, clock=lambda: now[0])
    lost = Unreachable("cannot reach the controller at http://h:1: refused")
    patience.lost(lost)
    now[0] = 9.9
    patience.lost(lost)  # still patient
    patience.found()
    now[0] = 30
    patience.lost(lost)  # a new absence: a new 10 s
    now[0] = 40
    with pytest.raises(Unreachable):
        patience.lost(lost)
    assert capsys.readouterr().err.splitlines() == [
        "ftpool: cannot reach the controller at http://h:1: refused; trying again for 10 s",
        "ftpool: reconnected",
        "ftpool: cannot reach the controller at http://h:1: refused; trying again for 10 s",
    ]


def test_a_drain_is_followed_until_it_ends_and_bounded() -> None:
    views = iter([[], [{"id": "n2", "drain": {"state": "running"}}],
                  [{"id": "n2", "drain": {"state": "done", "left": []}}]])  # fmt: skip
    assert follow(lambda: next(views), "n2", 60, clock=lambda: 0.0, sleep=lambda _s: None) == {
        "state": "done", "left": []}  # fmt: skip
    ticks = iter(range(100))
    with pytest.raises(Failed, match="did not end within 5 s"):
        follow(lambda: [{"id": "n2", "drain": {"state": "running"}}], "n2", 5,
               clock=lambda: float(next(ticks)), sleep=lambda _s: None)  # fmt: skip
