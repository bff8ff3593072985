"""What the agent observes: per-bot process state, resources and ping, per-pool totals."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

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
from agent.programs import PRELOADER, bot_id_of
from agent.supervisor import ProcessInfo, SupervisorClient
from common.protocol import BotStatus, PoolStats

log = structlog.get_logger("agent.reporter")
# The CpuMeter key of the pool's cgroup; pids are never negative.
_CGROUP_KEY = -1


class Reporter:
    def __init__(
        self,
        supervisor: SupervisorClient,
        ping_timeout: float,
        cgroup_metrics: bool = False,
        pid_dir: Path | None = None,
        uid_for: Callable[[int], int] | None = None,
    ) -> None:
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

    def set_ports(self, ports: dict[str, int]) -> None:
        self._ports = ports

    async def poll(self) -> bool:
        """Refresh process states from supervisord; True when any bot changed state or pid."""
        current = await self.supervisor.all_processes()
        before = {n: (i.state, i.pid) for n, i in self.processes.items()}
        self.processes = current
        return before != {n: (i.state, i.pid) for n, i in current.items()}

    async def ping_all(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        running = [
            (bot, port)
            for bot, port in self._ports.items()
            if (info := self.processes.get(f"bot-{bot}")) and info.state == "RUNNING"
        ]
        results = await asyncio.gather(
            *(ping(self._session, port, self.ping_timeout) for _, port in running)
        )
        self._pings = {bot: r for (bot, _), r in zip(running, results, strict=True)}
        self._check_ports(running)

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
        self._port_ok = checked

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
            p = self._pings.get(bot) if info.state == "RUNNING" else None
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
                    port_ok=self._port_ok.get(bot) if info.state == "RUNNING" else None,
                )
            )
        self._cpu.forget_except(pids | {_CGROUP_KEY})
        return out

    def preloader_state(self) -> str:
        info = self.processes.get(PRELOADER)
        return info.state if info else "ABSENT"

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
