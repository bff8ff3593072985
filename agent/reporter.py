"""What the agent observes: per-bot process state, resources and ping, per-pool totals."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

from agent.marketdata.report import StatsReader
from agent.probes import (
    CpuMeter,
    PingResult,
    cgroup_cpu_seconds,
    cgroup_memory_limit,
    cgroup_memory_used,
    listening_uids,
    ping,
    rss_bytes,
)
from agent.programs import MARKET_DATA, PRELOADER, bot_id_of
from agent.supervisor import ProcessInfo, SupervisorClient
from common.protocol import BotStatus, MarketDataStats, PoolStats
from common.states import ProcessState

log = structlog.get_logger("agent.reporter")
# The CpuMeter key of the pool's cgroup; pids are never negative.
_CGROUP_KEY = -1
# A bot that has not answered yet is asked at every poll, briefly: a hung one must not hold
# up the poll loop (the heartbeat's own ping waits the full BOT_PING_TIMEOUT).
STARTING_PING_TIMEOUT = 0.5


class Reporter:
    def __init__(
        self,
        supervisor: SupervisorClient,
        ping_timeout: float,
        cgroup_metrics: bool = False,
        pid_dir: Path | None = None,
        uid_for: Callable[[int], int] | None = None,
        market_data_socket: Path | None = None,
    ) -> None:
        """`market_data_socket`: where the pool's market-data proxy serves its counters."""
        self.supervisor = supervisor
        self.pid_dir = pid_dir
        self.uid_for = uid_for
        self._port_ok: dict[str, bool | None] = {}
        self.ping_timeout = ping_timeout
        self.cgroup_metrics = cgroup_metrics
        self.processes: dict[str, ProcessInfo] = {}
        self._pings: dict[str, PingResult] = {}
        self._ports: dict[str, int] = {}
        self._cpu = CpuMeter()
        self._session: aiohttp.ClientSession | None = None
        self._market_data = StatsReader(market_data_socket) if market_data_socket else None
        self._market_data_figures: MarketDataStats | None = None

    def set_ports(self, ports: dict[str, int]) -> None:
        self._ports = ports

    async def poll(self) -> bool:
        """Refresh process states from supervisord; True when any bot changed state or pid."""
        current = await self.supervisor.all_processes()
        before = {n: (i.state, i.pid) for n, i in self.processes.items()}
        self.processes = current
        after = {n: (i.state, i.pid) for n, i in current.items()}
        for name in {n for n in after if before.get(n) != after[n]}:
            # A new process (or none): the old one's answers say nothing about it.
            self._pings.pop(bot_id_of(name), None)
            self._port_ok.pop(bot_id_of(name), None)
        return before != after

    def _running(self) -> list[tuple[str, int]]:
        return [
            (bot, port)
            for bot, port in self._ports.items()
            if (info := self.processes.get(f"bot-{bot}")) and info.state == ProcessState.RUNNING
        ]

    async def _ping(self, bots: list[tuple[str, int]], timeout: float) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        results = await asyncio.gather(*(ping(self._session, port, timeout) for _, port in bots))
        self._pings.update({bot: r for (bot, _), r in zip(bots, results, strict=True)})
        self._check_ports(bots)

    async def ping_all(self) -> None:
        running = self._running()
        self._pings, self._port_ok = {}, {}
        await self._ping(running, self.ping_timeout)
        if self._market_data is not None:
            self._market_data_figures = await self._market_data.read()

    def market_data(self) -> MarketDataStats | None:
        """The pool's market-data proxy: supervisord's state of it and its last counters;
        None when the pool runs none."""
        info = self.processes.get(MARKET_DATA)
        if self._market_data is None or info is None:
            return None
        figures = self._market_data_figures
        if figures is None or info.state != ProcessState.RUNNING:
            return MarketDataStats(info.state)
        return MarketDataStats(info.state, figures.cache_bytes, figures.cache_entries,
                               figures.upstreams)  # fmt: skip

    async def ping_starting(self) -> bool:
        """Ask the running bots that have not answered yet; True if one answers now, so
        that a bot just (re)started is reported at once, not at the next heartbeat."""
        waiting = [(b, p) for b, p in self._running()
                   if not (r := self._pings.get(b)) or not r.ok]  # fmt: skip
        if not waiting:
            return False
        await self._ping(waiting, min(self.ping_timeout, STARTING_PING_TIMEOUT))
        return any(self._pings[b].ok for b, _ in waiting)

    def _check_ports(self, running: list[tuple[str, int]]) -> None:
        """Whose socket answers on each bot's port: a neighbour could have bound it."""
        if self.uid_for is None:
            return
        listeners = listening_uids()
        checked: dict[str, bool | None] = {}
        for bot, port in running:
            uids = listeners.get(port)
            ok = None if not uids else uids == {self.uid_for(port)}
            if ok is False:
                log.error("bot_port_held_by_another_user", bot=bot, port=port, uids=sorted(uids))
            checked[bot] = ok
        self._port_ok.update(checked)

    def statuses(self) -> list[BotStatus]:
        out = []
        pids = set()
        for name, info in self.processes.items():
            bot = bot_id_of(name)
            if bot is None:
                continue
            alive = info.pid > 0
            pid = self._bot_pid(name, info.pid) if alive else 0
            pids.add(pid)
            p = self._pings.get(bot) if info.state == ProcessState.RUNNING else None
            out.append(
                BotStatus(
                    id=bot,
                    state=info.state,
                    pid=pid,
                    since=info.start if alive else info.stop,
                    exit_status=None if alive else info.exit_status,
                    ping_ok=p.ok if p else None,
                    ping_ms=p.ms if p else None,
                    rss=rss_bytes(pid) if alive else 0,
                    cpu=self._cpu.sample(pid) if alive else 0.0,
                    port_ok=self._port_ok.get(bot) if info.state == ProcessState.RUNNING else None,
                )
            )
        self._cpu.forget_except(pids | {_CGROUP_KEY})
        return out

    def preloader_state(self) -> ProcessState:
        info = self.processes.get(PRELOADER)
        return info.state if info else ProcessState.ABSENT

    def _bot_pid(self, program: str, program_pid: int) -> int:
        """The bot's own pid: with preloading, the forked bot's, not its launcher's."""
        if self.pid_dir is None:
            return program_pid
        try:
            launcher, bot = (self.pid_dir / f"{program}.pid").read_text().split()
        except (OSError, ValueError):
            return program_pid  # a plain exec (fallback) or a launcher still starting
        return int(bot) if int(launcher) == program_pid else program_pid

    def pool_stats(self, bots: list[BotStatus]) -> PoolStats:
        if self.cgroup_metrics:
            # In a container the cgroup is the pool: the same figures Docker accounts.
            return PoolStats(
                mem_used=cgroup_memory_used(),
                mem_limit=cgroup_memory_limit(),
                cpu=self._cpu.sample(_CGROUP_KEY, cgroup_cpu_seconds()),
            )
        return PoolStats(
            mem_used=rss_bytes(os.getpid()) + sum(b.rss for b in bots),
            mem_limit=cgroup_memory_limit(),
            cpu=round(sum(b.cpu for b in bots), 2),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._market_data is not None:
            await self._market_data.close()
