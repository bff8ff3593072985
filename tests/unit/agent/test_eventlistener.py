"""The pool's supervisord event listener: its protocol, bounded and strict, and forwarding
that never waits for the agent."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent import eventlistener
from agent.eventlistener import (
    MAX_HEADER,
    MAX_PAYLOAD,
    OK,
    READY,
    ProtocolError,
    datagram,
    parse_header,
    serve,
)

EXITED = b"processname:bot-a groupname:bot-a from_state:RUNNING expected:0 pid:2766"
STARTING = b"processname:bot-a groupname:bot-a from_state:STOPPED tries:0"


def event(name: str, payload: bytes, serial: int = 1) -> bytes:
    header = (
        f"ver:3.0 server:supervisor serial:{serial} pool:agent-events poolserial:{serial} "
        f"eventname:{name} len:{len(payload)}\n"
    )
    return header.encode() + payload


def test_a_header_gives_the_event_and_its_length() -> None:
    assert parse_header(event("PROCESS_STATE_EXITED", EXITED).split(b"\n")[0] + b"\n") == (
        "PROCESS_STATE_EXITED", len(EXITED),
    )  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        b"ver:3.0 eventname:PROCESS_STATE_EXITED len:10",  # cut short: no newline
        b"ver:3.0 eventname:PROCESS_STATE_EXITED len:" + b"1" * MAX_HEADER + b"\n",
        b"ver:3.0 eventname:PROCESS_STATE_EXITED\n",  # no len
        b"ver:3.0 len:10\n",  # no event name
        b"eventname:PROCESS_STATE_EXITED len:-1\n",
        b"eventname:PROCESS_STATE_EXITED len:ten\n",
        b"eventname:PROCESS_STATE_EXITED len:" + str(MAX_PAYLOAD + 1).encode() + b"\n",
        b"eventname:PROCESS_STATE_EXITED len:10 len:11\n",  # given twice
        b"eventname:PROCESS_STATE_EXITED len:10 garbage\n",  # not key:value
        b"eventname:PROCESS_STATE_EXITED len:10 k:\xff\n",  # not printable ASCII
        b"READY\n",
    ],
)
def test_a_malformed_header_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_header(line)


def test_a_state_event_becomes_one_short_datagram() -> None:
    assert datagram("PROCESS_STATE_EXITED", EXITED) == b"EXITED bot-a 2766\n"
    assert datagram("PROCESS_STATE_STARTING", STARTING) == b"STARTING bot-a 0\n"


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("PROCESS_LOG_STDOUT", b"processname:bot-a groupname:bot-a pid:1 channel:stdout\nhi"),
        ("PROCESS_STATE_SLEEPING", EXITED),  # no such state
        ("PROCESS_STATE_EXITED", b"groupname:bot-a pid:1"),  # no process name
        ("PROCESS_STATE_EXITED", b"processname:../etc pid:1"),
        ("PROCESS_STATE_EXITED", b"processname:bot-a pid:12x"),
        ("PROCESS_STATE_EXITED", b"processname:bot-a pid:" + b"1" * 11),
        ("PROCESS_STATE_EXITED", b"not tokens at all"),
    ],
)
def test_an_event_not_worth_telling_is_not_forwarded(name: str, payload: bytes) -> None:
    assert datagram(name, payload) is None


def test_the_protocol_is_followed_and_a_broken_stream_ends_the_listener() -> None:
    sent: list[bytes] = []
    stdin = io.BytesIO(
        event("PROCESS_STATE_STARTING", STARTING, 1)
        + event("PROCESS_LOG_STDOUT", b"processname:x groupname:x pid:1 channel:stdout\nhi", 2)
        + event("PROCESS_STATE_EXITED", EXITED, 3)
        + b"this is no header\n"
        + event("PROCESS_STATE_EXITED", EXITED, 4)
    )
    stdout = io.BytesIO()
    assert serve(stdin, stdout, sent.append) == 2
    assert stdout.getvalue() == (READY + OK) * 3 + READY
    assert sent == [b"STARTING bot-a 0\n", b"EXITED bot-a 2766\n"]


def test_the_end_of_its_input_ends_the_listener_quietly() -> None:
    sent: list[bytes] = []
    cut = event("PROCESS_STATE_EXITED", EXITED)[:-5]  # supervisord went away mid-event
    assert serve(io.BytesIO(cut), io.BytesIO(), sent.append) == 0
    assert serve(io.BytesIO(b""), io.BytesIO(), sent.append) == 0
    assert sent == []


def run_listener(socket_path: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """The listener as supervisord runs it: isolated, its protocol on stdin and stdout."""
    return subprocess.run(
        [sys.executable, "-I", "-S", eventlistener.__file__, "--socket", str(socket_path)],
        input=stdin, capture_output=True, timeout=30, check=False,
    )  # fmt: skip


def test_without_an_agent_listening_events_are_dropped_and_supervisord_is_answered(
    tmp_path: Path,
) -> None:
    # An agent of the previous version binds no socket: the listener must never block.
    done = run_listener(tmp_path / "events.sock", event("PROCESS_STATE_EXITED", EXITED) * 3)
    assert done.returncode == 0
    assert done.stdout == (READY + OK) * 3 + READY
    assert b"event not delivered" in done.stderr


def test_an_agent_listening_gets_each_event_as_a_datagram(tmp_path: Path) -> None:
    path = tmp_path / "events.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as agent:
        agent.bind(str(path))
        agent.settimeout(10)
        done = run_listener(path, event("PROCESS_STATE_EXITED", EXITED))
        assert done.returncode == 0 and done.stdout == READY + OK + READY
        assert agent.recv(1024) == b"EXITED bot-a 2766\n"


@pytest.mark.parametrize("argv", [[], ["--socket"], ["--socket", "relative.sock"],
                                  ["--socket", "/" + "x" * 200], ["--other", "/x"]])  # fmt: skip
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    assert eventlistener.main(argv) == 2
