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


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may contain spaces.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cgroup_memory_limit() -> int:
    """The memory limit of this process's cgroup (v2), or 0 where there is none."""
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return 0
    return 0 if raw == "max" else int(raw)


@dataclass
class CpuMeter:
    """CPU percent per pid from the change of its CPU time between two samples."""

    _last: dict[int, tuple[float, float]] = field(default_factory=dict)

    def sample(self, pid: int) -> float:
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
