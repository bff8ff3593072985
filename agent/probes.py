"""Local measurements of bots: /proc memory and CPU, cgroup limits, the bot's ping."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


_PRIVATE = (b"Private_Clean:", b"Private_Dirty:", b"Private_Hugetlb:")


def uss_bytes(pid: int) -> int | None:
    """The process's unique memory (USS): its private pages, which leave with it. RSS also
    counts the pages a forked bot still shares with its preloader; USS does not. From
    /proc/<pid>/smaps_rollup (Linux 4.14+); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        if line.startswith(_PRIVATE):
            try:
                total += int(line.split()[1]) * 1024  # kB
            except (IndexError, ValueError):
                return None
    return total


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may contain spaces.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def wanted_seconds(pid: int) -> float | None:
    """How long a process's threads have run or waited to run, in seconds (None: gone):
    the sum of each thread's `/proc/<pid>/task/<tid>/schedstat` run time and run-queue
    wait. Unlike its CPU time, this sees a process that is always runnable whatever share
    of the CPU its neighbours leave it. A thread that ended takes its part with it."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                ran, waited, _slices = f.read().split()
        except (OSError, ValueError):
            continue  # that thread ended
        total += int(ran) + int(waited)
    return total / 1e9


_CGROUP = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a huge page-aligned number instead of "max".
_NO_LIMIT = 1 << 60


def _read_int(*candidates: Path) -> int | None:
    for path in candidates:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw == "max":
            return 0
        try:
            return int(raw.split()[0])
        except (ValueError, IndexError):
            continue
    return None


def cgroup_memory_limit(root: Path = _CGROUP) -> int:
    """The memory limit of this process's cgroup (v2 or v1), or 0 where there is none."""
    limit = _read_int(root / "memory.max", root / "memory" / "memory.limit_in_bytes") or 0
    return 0 if limit >= _NO_LIMIT else limit


def cgroup_memory_used(root: Path = _CGROUP) -> int:
    """Memory charged to this process's cgroup: what Docker accounts for the container."""
    return _read_int(root / "memory.current", root / "memory" / "memory.usage_in_bytes") or 0


def cgroup_cpu_seconds(root: Path = _CGROUP) -> float | None:
    try:
        for line in (root / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    ns = _read_int(root / "cpuacct" / "cpuacct.usage", root / "cpu,cpuacct" / "cpuacct.usage")
    return None if ns is None else ns / 1e9


@dataclass
class CpuMeter:
    """CPU percent per pid from the change of its CPU time between two samples."""

    _last: dict[int, tuple[float, float]] = field(default_factory=dict)

    def sample(self, pid: int, used: float | None = None) -> float:
        """CPU percent of pid since its last sample (or of `used` seconds, keyed by pid)."""
        if used is None:
            used = cpu_seconds(pid)
        if used is None:
            self._last.pop(pid, None)
            return 0.0
        now = time.monotonic()
        previous = self._last.get(pid)
        self._last[pid] = (now, used)
        if previous is None or now <= previous[0]:
            return 0.0
        return round(100.0 * (used - previous[1]) / (now - previous[0]), 2)

    def forget_except(self, pids: set[int]) -> None:
        for pid in self._last.keys() - pids:
            del self._last[pid]


@dataclass(slots=True)
class PingResult:
    ok: bool
    ms: float


async def ping(session: aiohttp.ClientSession, port: int, timeout: float) -> PingResult:
    """GET the bot's own /api/v1/ping on loopback, as FreqTrade serves it without auth."""
    started = time.monotonic()
    try:
        async with session.get(
            f"http://127.0.0.1:{port}/api/v1/ping", timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            ok = resp.status == 200 and (await resp.json()).get("status") == "pong"
    except (TimeoutError, aiohttp.ClientError, ValueError):
        ok = False
    return PingResult(ok, round((time.monotonic() - started) * 1000, 2))


_LISTEN = "0A"


def listening_uids(
    tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6"),
) -> dict[int, set[int]]:
    """Port → uids of the sockets listening on it, from the kernel's socket tables."""
    found: dict[int, set[int]] = {}
    for table in tables:
        try:
            with open(table) as f:
                next(f, None)  # header
                for line in f:
                    fields = line.split()
                    if len(fields) > 7 and fields[3] == _LISTEN:
                        port = int(fields[1].rsplit(":", 1)[1], 16)
                        found.setdefault(port, set()).add(int(fields[7]))
        except (OSError, ValueError, IndexError):
            continue
    return found
