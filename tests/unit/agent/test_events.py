"""The agent's hints that a process changed: the listener's datagrams, and pidfds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from agent.events import EventSocket, ExitWatcher, ProcessEvent, parse_event
from agent.supervisor import ProcessInfo
from common.states import ProcessState


def test_a_datagram_of_the_listener_is_an_event() -> None:
    assert parse_event(b"EXITED bot-a 2766\n") == ProcessEvent(ProcessState.EXITED, "bot-a", 2766)
    assert parse_event(b"STARTING preloader 0\n") == ProcessEvent(
        ProcessState.STARTING, "preloader", 0
    )


@pytest.mark.parametrize(
    "data",
    [
        b"EXITED bot-a 2766",  # no newline
        b"EXITED bot-a 2766 extra\n",
        b"EXITED bot-a\n",
        b"SLEEPING bot-a 1\n",
        b"ABSENT bot-a 1\n",  # ftpool's word, never supervisord's
        b"exited bot-a 1\n",
        b"EXITED ../bot-a 1\n",
        b"EXITED bot-a -1\n",
        b"EXITED bot-a 12345678901\n",
        b"EXITED bot-\xff 1\n",
        b"EXITED " + b"b" * 300 + b" 1\n",
        b"",
    ],
)
def test_a_malformed_datagram_is_no_event(data: bytes) -> None:
    assert parse_event(data) is None


async def test_the_socket_hands_on_events_and_counts_what_it_rejects(tmp_path: Path) -> None:
    got: asyncio.Queue[ProcessEvent] = asyncio.Queue()
    events = EventSocket(tmp_path / "run" / "events.sock", got.put_nowait)
    (tmp_path / "run").mkdir(mode=0o700)
    (tmp_path / "run" / "events.sock").write_text("a stale socket of an agent before")
    assert events.open()
    try:
        assert (tmp_path / "run" / "events.sock").stat().st_mode & 0o777 == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            for data in (b"nonsense\n", b"x" * 5000, b"EXITED bot-a 7\n"):
                listener.sendto(data, str(events.path))
            event = await asyncio.wait_for(got.get(), 10)
        assert event == ProcessEvent(ProcessState.EXITED, "bot-a", 7)
        assert (events.received, events.rejected) == (1, 2)
    finally:
        events.close()
    assert not events.path.exists()


async def test_a_socket_that_cannot_be_bound_leaves_the_agent_polling(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    events = EventSocket(blocked / "events.sock", lambda _e: None)  # its directory is a file
    assert events.open() is False
    events.close()


def running(name: str, pid: int) -> ProcessInfo:
    return ProcessInfo(name, ProcessState.RUNNING, pid, 1.0, 0.0, 0)


async def test_an_exit_is_seen_through_the_pidfd_of_the_process() -> None:
    exited: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    watcher = ExitWatcher(lambda name, pid: exited.put_nowait((name, pid)))
    if not watcher.available:
        pytest.skip("no pidfd_open on this system")
    victim = await asyncio.create_subprocess_exec("sleep", "600")
    keeper = await asyncio.create_subprocess_exec("sleep", "600")
    try:
        processes = {"bot-a": running("bot-a", victim.pid), "bot-b": running("bot-b", keeper.pid)}
        watcher.watch(processes)
        watcher.watch(processes)  # the same processes again: nothing opened twice
        assert watcher.watched == {"bot-a": victim.pid, "bot-b": keeper.pid}
        victim.kill()
        assert await asyncio.wait_for(exited.get(), 10) == ("bot-a", victim.pid)
        assert watcher.watched == {"bot-b": keeper.pid}
        # supervisord reports bot-b stopped (or gone): it is let go, and no exit is told.
        watcher.watch({})
        assert watcher.watched == {}
        assert exited.empty()
    finally:
        watcher.close()
        for process in (victim, keeper):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def test_a_process_gone_before_it_is_watched_is_told_at_once() -> None:
    exited: list[tuple[str, int]] = []
    watcher = ExitWatcher(lambda name, pid: exited.append((name, pid)))
    if not watcher.available:
        pytest.skip("no pidfd_open on this system")
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    watcher.watch({"bot-a": running("bot-a", gone.pid)})
    assert exited == [("bot-a", gone.pid)] and watcher.watched == {}
