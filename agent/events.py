"""What tells the agent at once that a process changed, so it need not wait for its poll.

Two sources, both only hints to poll supervisord now (supervisord stays the one truth):

- supervisord's own process-state events, forwarded by the pool's event listener
  (agent/eventlistener.py) as datagrams to a socket in the pool's run directory. Every
  state change comes this way, but supervisord hands a queued event to its listener only
  on its main loop's next turn, up to a second later when nothing else wakes it.
- a pidfd per program process (Linux 5.3+): readable the moment the process exits, before
  supervisord has even reaped it. This is what reports a bot's exit within milliseconds.

Either may be missing (a pool made by the previous version has no listener; an old kernel
has no pidfd); the poll every AGENT_POLL_INTERVAL stays as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.eventlistener import MAX_DATAGRAM, PROGRAM
from agent.supervisor import ProcessInfo
from common.states import ACTIVE, PROCESS_STATES_BY_NAME, ProcessState

log = structlog.get_logger("agent.events")
# Datagrams read per wake-up of the loop: a flood cannot hold the loop for long.
_BATCH = 64


@dataclass(frozen=True, slots=True)
class ProcessEvent:
    state: ProcessState
    program: str
    pid: int  # 0 when the event names none


def parse_event(data: bytes) -> ProcessEvent | None:
    """A datagram of the event listener (`<STATE> <program> <pid>\\n`), or None if malformed."""
    if len(data) > MAX_DATAGRAM or not data.endswith(b"\n"):
        return None
    try:
        state, program, pid = data[:-1].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return None
    known = PROCESS_STATES_BY_NAME.get(state)
    if known is None or known is ProcessState.ABSENT or not PROGRAM.match(program):
        return None
    if not pid.isdigit() or len(pid) > 10:
        return None
    return ProcessEvent(known, program, int(pid))


class EventSocket:
    """The agent's end of the listener's datagrams: bound while the agent runs."""

    def __init__(self, path: Path, on_event: Callable[[ProcessEvent], None]) -> None:
        self.path = path
        self.on_event = on_event
        self.received = 0
        self.rejected = 0
        self._socket: socket.socket | None = None

    def open(self) -> bool:
        """Bind the socket (replacing a stale one); False, logged, when it cannot be."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            old = os.umask(0o177)
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("events_socket_unavailable", path=str(self.path), error=str(exc))
            return False
        self._socket = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        return True

    def _readable(self) -> None:
        assert self._socket is not None
        for _ in range(_BATCH):
            try:
                data = self._socket.recv(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("events_socket_failed", error=str(exc))
                return
            event = parse_event(data)
            if event is None:
                self.rejected += 1
                if self.rejected in (1, 10, 100) or self.rejected % 1000 == 0:
                    log.warning("event_rejected", rejected=self.rejected, size=len(data))
                continue
            self.received += 1
            self.on_event(event)

    def close(self) -> None:
        if self._socket is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
        self._socket.close()
        self._socket = None
        with contextlib.suppress(OSError):
            self.path.unlink()


class ExitWatcher:
    """A pidfd for each active program's process; `on_exit(program, pid)` when one ends."""

    def __init__(self, on_exit: Callable[[str, int], None]) -> None:
        self.on_exit = on_exit
        self.available = hasattr(os, "pidfd_open")
        self._fds: dict[str, tuple[int, int]] = {}  # program -> (pid, pidfd)
        self._own_pid = os.getpid()

    def watch(self, processes: Mapping[str, ProcessInfo]) -> None:
        """Follow the processes supervisord just reported: new ones are watched, ended or
        replaced ones are let go."""
        for name, (pid, _fd) in list(self._fds.items()):
            info = processes.get(name)
            if info is None or info.pid != pid or info.state not in ACTIVE:
                self._forget(name)
        if not self.available:
            return
        for name, info in processes.items():
            if info.pid <= 0 or info.pid == self._own_pid or name in self._fds:
                continue
            if info.state not in ACTIVE:
                continue
            self._open(name, info.pid)

    def _open(self, name: str, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.on_exit(name, pid)  # gone since supervisord answered
            return
        except OSError as exc:  # no pidfd in this kernel, or not allowed: the poll remains
            self.available = False
            log.warning("pidfd_unavailable", error=str(exc))
            return
        self._fds[name] = (pid, fd)
        asyncio.get_running_loop().add_reader(fd, self._exited, name, pid)

    def _exited(self, name: str, pid: int) -> None:
        self._forget(name)
        self.on_exit(name, pid)

    def _forget(self, name: str) -> None:
        _pid, fd = self._fds.pop(name)
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)

    @property
    def watched(self) -> dict[str, int]:
        return {name: pid for name, (pid, _fd) in self._fds.items()}

    def close(self) -> None:
        for name in list(self._fds):
            self._forget(name)
