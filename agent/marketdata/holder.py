"""Who holds the market-data proxy's port: the proxy supervisord started, or a stranger.

The proxy listens on a loopback TCP port, which any process of the host may take while
the proxy is down (restarting, or unable to start). A stranger there (a user's strategy)
would receive the pool's public market-data requests and could answer them with false
prices. So the agent routes bots through the proxy only while every socket listening on
that port belongs to the process supervisord runs as the proxy: the kernel's socket tables
(/proc/net/tcp, tcp6) give the listening sockets' inodes, the proxy's /proc/<pid>/fd its
own sockets'. Where the proxy's descriptors cannot be read (an agent without the right to
look), the listeners' uids must be the proxy's.

`judge` decides; `ProxyPort.check` looks (blocking reads of /proc: call it in a thread).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog

log = structlog.get_logger("agent.marketdata")
_LISTEN = "0A"
_TABLES = ("net/tcp", "net/tcp6")


class Holder(StrEnum):
    PROXY = "proxy"  # the proxy supervisord started: bots may be routed through it
    NONE = "none"  # nobody listens: the proxy is down or starting
    STRANGER = "stranger"  # another process listens: no bot is routed there


@dataclass(frozen=True, slots=True)
class Listener:
    inode: int
    uid: int


def listeners(port: int, proc: Path = Path("/proc")) -> list[Listener]:
    """The sockets listening on TCP `port` (any address, IPv4 or IPv6)."""
    found = []
    for table in _TABLES:
        try:
            with open(proc / table) as f:
                next(f, None)  # header
                for line in f:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != _LISTEN:
                        continue
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found.append(Listener(int(fields[9]), int(fields[7])))
        except (OSError, ValueError, IndexError):
            continue
    return found


def socket_inodes(pid: int, proc: Path = Path("/proc")) -> set[int] | None:
    """The inodes of the sockets process `pid` holds; None when they cannot be read."""
    if pid <= 0:
        return set()
    fd_dir = proc / str(pid) / "fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return None
    found = set()
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def uid_of(pid: int, proc: Path = Path("/proc")) -> int | None:
    try:
        return (proc / str(pid)).stat().st_uid
    except OSError:
        return None


def holders_of(inodes: set[int], proc: Path = Path("/proc")) -> list[int]:
    """The pids holding any of `inodes` (every process this agent may look into)."""
    pids = []
    for entry in os.listdir(proc):
        if entry.isdigit() and (socket_inodes(int(entry), proc) or set()) & inodes:
            pids.append(int(entry))
    return sorted(pids)


def judge(found: list[Listener], proxy_sockets: set[int] | None, proxy_uid: int | None) -> Holder:
    """Who holds the port, from its listeners and the proxy's own sockets (None: unreadable,
    then its uid decides)."""
    if not found:
        return Holder.NONE
    if proxy_sockets is not None:
        mine = all(s.inode in proxy_sockets for s in found)
    else:
        mine = proxy_uid is not None and all(s.uid == proxy_uid for s in found)
    return Holder.PROXY if mine else Holder.STRANGER


@dataclass(frozen=True, slots=True)
class Verdict:
    holder: Holder
    strangers: tuple[int, ...] = ()  # pids of the processes holding it, if a stranger does


class ProxyPort:
    """The verdict on the proxy's port, kept between checks (logged when it changes)."""

    def __init__(self, port: int, proc: Path = Path("/proc")) -> None:
        self.port = port
        self.proc = proc
        self.verdict = Verdict(Holder.NONE)

    def check(self, proxy_pid: int) -> Verdict:
        """Look who holds the port now, given supervisord's pid of the proxy (0: none)."""
        found = listeners(self.port, self.proc)
        mine = socket_inodes(proxy_pid, self.proc)
        holder = judge(found, mine, uid_of(proxy_pid, self.proc) if proxy_pid > 0 else None)
        strangers: tuple[int, ...] = ()
        if holder == Holder.STRANGER:
            inodes = {s.inode for s in found} - (mine or set())
            strangers = tuple(p for p in holders_of(inodes, self.proc) if p != proxy_pid)
        verdict = Verdict(holder, strangers)
        if verdict != self.verdict:
            if holder == Holder.STRANGER:
                log.error("market_data_port_taken", port=self.port, proxy_pid=proxy_pid,
                          pids=list(strangers), uids=sorted({s.uid for s in found}))  # fmt: skip
            else:
                log.info("market_data_port", port=self.port, holder=holder, proxy_pid=proxy_pid)
            self.verdict = verdict
        return verdict

    @property
    def routed(self) -> bool:
        """Whether bots may be routed through the proxy now."""
        return self.verdict.holder == Holder.PROXY
