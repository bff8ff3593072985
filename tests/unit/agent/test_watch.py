"""The agent looks when told, not only when its poll comes round: with the poll and the
heartbeat an hour apart, a bot's exit is still reported, by supervisord's event or by the
pidfd of its process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.reporter import Reporter
from agent.supervisor import ProcessInfo, SupervisorError
from agent.watch import EXIT_REPOLLS, Watch, unconfirmed
from common.protocol import BotStatus
from common.states import ProcessState
from tests.support import pid_alive

HOUR = 3600.0


def info(name: str, pid: int, state: ProcessState = ProcessState.RUNNING) -> ProcessInfo:
    return ProcessInfo(name, state, pid, 1.0, 0.0, 0)


def test_an_exit_is_asked_about_again_until_supervisord_shows_it() -> None:
    exits = {"bot-a": (11, 3), "bot-b": (12, 3), "bot-c": (13, 0)}
    processes = {
        "bot-a": info("bot-a", 11),  # not reaped yet: ask again
        "bot-b": info("bot-b", 0, ProcessState.EXITED),  # shown: done
        "bot-c": info("bot-c", 13),  # out of re-polls: the event and the poll remain
    }
    assert unconfirmed(exits, processes) == {"bot-a": (11, 2)}
    assert unconfirmed({"bot-a": (11, 3)}, {"bot-a": info("bot-a", 99)}) == {}  # a new process
    assert unconfirmed({"bot-a": (11, 3)}, {}) == {}


class Supervisor:
    """supervisord's answers: each program's process, EXITED once that process is gone
    (unless a test says otherwise)."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.exited: set[str] = set()

    async def all_processes(self) -> dict[str, ProcessInfo]:
        return {
            name: info(name, 0, ProcessState.EXITED)
            if name in self.exited or not pid_alive(pid) else info(name, pid)
            for name, pid in self.pids.items()
        }  # fmt: skip


class Reports:
    """What the watch sends, as the heartbeats would carry it."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.sent: asyncio.Queue[dict[str, BotStatus]] = asyncio.Queue()

    async def send(self) -> None:
        await self.sent.put({s.id: s for s in self.reporter.statuses()})

    async def until(self, bot: str, state: ProcessState) -> None:
        while (status := (await asyncio.wait_for(self.sent.get(), 30)).get(bot)) is None \
                or status.state != state:  # fmt: skip
            pass


@contextlib.asynccontextmanager
async def watching(tmp_path: Path, supervisor: Supervisor) -> AsyncIterator[tuple[Watch, Reports]]:
    reporter = Reporter(supervisor, ping_timeout=1.0)  # type: ignore[arg-type]
    reports = Reports(reporter)
    watch = Watch(
        reporter, poll_interval=HOUR, heartbeat_interval=HOUR,
        events_path=tmp_path / "run" / "events.sock", send=reports.send,
    )  # fmt: skip
    task = asyncio.create_task(watch.run())
    try:
        yield watch, reports
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await reporter.close()


@contextlib.asynccontextmanager
async def sleeper() -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec("sleep", "600")
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def test_supervisords_event_is_reported_without_waiting_for_the_poll(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor()
    async with sleeper() as bot, watching(tmp_path, supervisor) as (watch, reports):
        supervisor.pids["bot-a"] = bot.pid
        # The first round of pings goes out with a heartbeat, before any poll interval.
        await reports.until("a", ProcessState.RUNNING)
        # supervisord says the program exited (its process lives on: no pidfd fires).
        supervisor.exited.add("bot-a")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.sendto(b"EXITED bot-a 0\n", str(watch.events.path))  # type: ignore[union-attr]
        await reports.until("a", ProcessState.EXITED)
        assert watch.events is not None and watch.events.received == 1


async def test_a_killed_bot_is_reported_through_its_pidfd_without_waiting_for_the_poll(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor()
    async with sleeper() as bot, watching(tmp_path, supervisor) as (watch, reports):
        if not watch.exits.available:
            pytest.skip("no pidfd_open on this system")
        supervisor.pids["bot-a"] = bot.pid
        await reports.until("a", ProcessState.RUNNING)
        assert watch.exits.watched == {"bot-a": bot.pid}
        bot.kill()  # no event of supervisord here: only the pidfd can tell
        await reports.until("a", ProcessState.EXITED)
        assert watch.exits.watched == {}
        assert watch.events is not None and watch.events.received == 0


def test_exits_are_asked_about_a_bounded_number_of_times() -> None:
    exits = {"bot-a": (11, EXIT_REPOLLS)}
    polls = 1  # the one the exit woke
    while exits := unconfirmed(exits, {"bot-a": info("bot-a", 11)}):
        polls += 1
    assert polls == 1 + EXIT_REPOLLS


class Away(Supervisor):
    """supervisord going away: every poll fails."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    async def all_processes(self) -> dict[str, ProcessInfo]:
        self.polls += 1
        raise SupervisorError("supervisord unreachable")


async def test_exits_during_an_outage_of_supervisord_are_not_asked_about_over_and_over(
    tmp_path: Path,
) -> None:
    supervisor = Away()
    async with watching(tmp_path, supervisor) as (watch, _reports):
        while supervisor.polls < 1:  # the first round of pings asks for a poll
            await asyncio.sleep(0.01)
        for i in range(10):
            watch.on_exit(f"bot-{i}", 100 + i)
        while supervisor.polls < 2:
            await asyncio.sleep(0.01)
        polls = supervisor.polls
        for _ in range(20):  # with the poll an hour apart, nothing asks again
            await asyncio.sleep(0.01)
        assert supervisor.polls == polls
