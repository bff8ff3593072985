"""When the agent looks and when it reports.

supervisord is polled as soon as something says a process changed (an event of supervisord,
a process's exit seen through its pidfd, a change the agent made itself: agent/events.py)
and every AGENT_POLL_INTERVAL besides, as the safety net; a poll that saw a change is
reported to the controller at once. Bots are pinged every HEARTBEAT_INTERVAL (then a
heartbeat goes out), and a bot whose new process has not answered yet far more often, so
that its first answer is reported as soon as it comes. The pings run in a loop of their
own: a bot that hangs its ping holds up no report of an exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import structlog

from agent.events import EventSocket, ExitWatcher, ProcessEvent
from agent.reporter import Reporter
from agent.supervisor import ProcessInfo, SupervisorError
from common.states import ACTIVE

log = structlog.get_logger("agent.watch")
# However many events arrive, supervisord is polled at most this often.
MIN_POLL_GAP = 0.01
# An exit seen through its pidfd that supervisord has not reaped yet is asked about again
# this soon, this many times at most (then the listener's event and the poll remain).
EXIT_REPOLL = 0.01
EXIT_REPOLLS = 50


def unconfirmed(
    exits: Mapping[str, tuple[int, int]], processes: Mapping[str, ProcessInfo]
) -> dict[str, tuple[int, int]]:
    """The exits (program -> pid, re-polls left) supervisord does not show yet: the same
    process still active. Each poll uses up one re-poll."""
    return {
        name: (pid, left - 1)
        for name, (pid, left) in exits.items()
        if left > 0 and (info := processes.get(name)) is not None
        and info.pid == pid and info.state in ACTIVE
    }  # fmt: skip


class Watch:
    def __init__(
        self, reporter: Reporter, *, poll_interval: float, heartbeat_interval: float,
        events_path: Path | None, send: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.reporter = reporter
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.send = send
        self.clock = clock
        self.last_poll_ok = clock()
        self.events = EventSocket(events_path, self.on_event) if events_path else None
        self.exits = ExitWatcher(self.on_exit)
        self._wake = asyncio.Event()  # poll now
        self._report = False  # and report after the poll, changed or not
        self._pings_wake = asyncio.Event()  # a new process: its starting pings begin now
        self._exits: dict[str, tuple[int, int]] = {}

    def report_soon(self) -> None:
        """Poll and send a heartbeat now (the agent changed something, or pinged)."""
        self._report = True
        self._wake.set()

    def on_event(self, event: ProcessEvent) -> None:
        log.info("process_event", program=event.program, state=event.state, pid=event.pid)
        self._wake.set()

    def on_exit(self, program: str, pid: int) -> None:
        log.info("process_exit_seen", program=program, pid=pid)
        self._exits[program] = (pid, EXIT_REPOLLS)
        self._wake.set()

    async def run(self) -> None:
        if self.events is not None:
            self.events.open()
        try:
            await asyncio.gather(self._poll_loop(), self._ping_loop())
        finally:
            if self.events is not None:
                self.events.close()
            self.exits.close()

    async def _poll_loop(self) -> None:
        last = float("-inf")
        while True:
            timeout = EXIT_REPOLL if self._exits else self.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if (gap := last + MIN_POLL_GAP - self.clock()) > 0:
                await asyncio.sleep(gap)
            last = self.clock()
            try:
                changed = await self.reporter.poll()
            except SupervisorError as exc:
                log.warning("supervisord_poll_failed", error=str(exc))
                # Exits are not asked about again every 10 ms of an outage (supervisord
                # restarting, its processes all ending): the next poll sees them.
                self._exits.clear()
                continue
            self.last_poll_ok = self.clock()
            self.exits.watch(self.reporter.processes)
            self._exits = unconfirmed(self._exits, self.reporter.processes)
            if changed:
                self._pings_wake.set()
            if changed or self._report:
                self._report = False
                await self.send()

    async def _ping_loop(self) -> None:
        next_round = self.clock()
        while True:
            if self.clock() >= next_round:
                next_round = self.clock() + self.heartbeat_interval
                await self.reporter.ping_all()
                await self.reporter.read_market_data()
                self.report_soon()  # the heartbeat
            elif await self.reporter.ping_starting():
                self.report_soon()  # a bot's first answer
            due = self.reporter.next_starting_ping()
            wake_at = next_round if due is None else min(next_round, due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pings_wake.wait(), max(0.0, wake_at - self.clock()))
            self._pings_wake.clear()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        self.exits.close()
