"""What the agent observes: per-bot process state, resources and ping, per-pool totals."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path

import aiohttp
import structlog

from agent.cgroups import BotGroups
from agent.cpu import BusyBots, nice_of
from agent.marketdata.holder import ProxyPort
from agent.marketdata.report import StatsReader
from agent.oom import OomScores
from agent.probes import (
    CpuMeter,
    PingResult,
    cgroup_cpu_seconds,
    cgroup_memory_limit,
    cgroup_memory_used,
    listening_uids,
    ping,
    rss_bytes,
    uss_bytes,
)
from agent.programs import MARKET_DATA, PRELOADER, bot_id_of, program_name
from agent.supervisor import ProcessInfo, SupervisorClient, SupervisorError
from common.protocol import BotStatus, MarketDataStats, PoolStats
from common.states import ProcessState

log = structlog.get_logger("agent.reporter")
# The CpuMeter key of the pool's cgroup; pids are never negative.
_CGROUP_KEY = -1
# A bot whose process has not answered yet is asked briefly (the heartbeat's own ping waits
# the full BOT_PING_TIMEOUT): every STARTING_PING_EVERY for the first STARTING_PING_FOR
# seconds of its process, so that its first answer is reported within that interval, then
# at the slower pace the reporter is given (the poll's). A bot that answered is asked only
# at heartbeats.
STARTING_PING_TIMEOUT = 0.5
STARTING_PING_EVERY = 0.15
STARTING_PING_FOR = 30.0
# However many bots start at once (a pool restarted), at most this many such pings a second.
STARTING_PINGS_PER_SECOND = 100
# A process that may answer: FreqTrade's API is up long before supervisord's startsecs end.
_UP = frozenset({ProcessState.STARTING, ProcessState.RUNNING})


def starting_ping_at(
    seen_at: float, asked_at: float | None, slow_every: float, waiting: int = 1
) -> float:
    """When a bot whose process (first seen at `seen_at`) has not answered yet is asked
    next, while `waiting` bots have not answered."""
    if asked_at is None:
        return seen_at
    if asked_at - seen_at >= STARTING_PING_FOR:
        return asked_at + slow_every
    return asked_at + max(STARTING_PING_EVERY, waiting / STARTING_PINGS_PER_SECOND)


class Reporter:
    def __init__(
        self,
        supervisor: SupervisorClient,
        ping_timeout: float,
        cgroup_metrics: bool = False,
        pid_dir: Path | None = None,
        uid_for: Callable[[int], int] | None = None,
        slow_ping_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        market_data_socket: Path | None = None,
        oom: OomScores | None = None,
        busy: BusyBots | None = None,
        proxy_port: ProxyPort | None = None,
        on_port_checked: Callable[[], None] = lambda: None,
        routed_bots: Callable[[], Collection[str]] = frozenset,
        cgroups: BotGroups | None = None,
    ) -> None:
        """`market_data_socket`: where the pool's market-data proxy serves its counters,
        `proxy_port`: who holds its port (checked every heartbeat round, then
        `on_port_checked` is called), `routed_bots`: the bots whose process started with
        its config through the proxy (the reconciler's), of which the heartbeat names those
        up; `oom`: who sets the processes' OOM scores, `busy`:
        who renices busy bots (None: nobody); `cgroups`: the bots' own cgroups (None:
        none), whose OOM kills each status reports."""
        self.supervisor = supervisor
        self.cgroups = cgroups
        self.oom = oom
        self.busy = busy
        self.slow_ping_every = slow_ping_every
        self.clock = clock
        # Per bot, of its current process: when it was first seen up, when a starting ping
        # last asked it, and whose first answer was logged.
        self._seen_at: dict[str, float] = {}
        self._asked_at: dict[str, float] = {}
        self._answered: dict[str, int] = {}
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
        self.proxy_port = proxy_port
        self.on_port_checked = on_port_checked
        self.routed_bots = routed_bots

    def set_ports(self, ports: dict[str, int]) -> None:
        self._ports = ports

    async def poll(self) -> bool:
        """Refresh process states from supervisord; True when any bot changed state or pid."""
        current = await self.supervisor.all_processes()
        before = {n: (i.state, i.pid) for n, i in self.processes.items()}
        self.processes = current
        after = {n: (i.state, i.pid) for n, i in current.items()}
        now = self.clock()
        for name in {n for n in after if before.get(n) != after[n]} | (before.keys() - after):
            info = current.get(name)
            log.info("process_state", program=name, state=info.state if info else None,
                     pid=info.pid if info else 0)  # fmt: skip
            if (bot := bot_id_of(name)) is None:
                continue
            up = info is not None and info.state in _UP and info.pid > 0
            if up and before.get(name, (None, 0))[1] == info.pid:  # type: ignore[union-attr]
                continue  # STARTING -> RUNNING: the same process, its answers still hold
            # A new process (or none): the old one's answers say nothing about it.
            self._pings.pop(bot, None)
            self._port_ok.pop(bot, None)
            self._asked_at.pop(bot, None)
            if up:
                self._seen_at[bot] = now
            else:
                self._seen_at.pop(bot, None)
            if info is None:
                self._answered.pop(bot, None)
        return before != after

    def _up(self) -> list[tuple[str, int, int]]:
        """(bot, port, pid) of every bot whose process is starting or running."""
        return [
            (bot, port, info.pid)
            for bot, port in self._ports.items()
            if (info := self.processes.get(f"bot-{bot}")) and info.state in _UP
        ]

    def _pid_of(self, bot: str) -> int:
        info = self.processes.get(f"bot-{bot}")
        return info.pid if info is not None and info.state in _UP else 0

    async def _ping(self, bots: list[tuple[str, int, int]], timeout: float) -> bool:
        """Ping bots; True if one that had not answered (since its last report) now does."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        results = await asyncio.gather(*(ping(self._session, port, timeout) for _, port, _ in bots))
        answers = False
        kept = []
        for (bot, port, pid), result in zip(bots, results, strict=True):
            if self._pid_of(bot) != pid:
                continue  # a process replaced while it was asked: the answer was not its own
            kept.append((bot, port))
            before = self._pings.get(bot)
            self._pings[bot] = result
            answers = answers or (result.ok and not (before and before.ok))
            if result.ok and self._answered.get(bot) != pid:
                self._answered[bot] = pid
                seen = self._seen_at.get(bot)
                after = round((self.clock() - seen) * 1000) if seen is not None else None
                log.info("bot_answering", bot=bot, pid=pid, port=port, after_ms=after)
        self._check_ports(kept)
        return answers

    async def ping_all(self) -> None:
        """Ask every bot that is up: the heartbeat's round."""
        await self._ping(self._up(), self.ping_timeout)

    async def read_market_data(self) -> None:
        """Ask the pool's market-data proxy for its counters, and look who holds its port
        (once per heartbeat)."""
        if self._market_data is not None:
            self._market_data_figures = await self._market_data.read()
        if self.proxy_port is not None:
            # Its pid now, not the last poll's: a proxy restarted since has a new one, and
            # a stranger could have been given the old.
            try:
                info = (await self.supervisor.all_processes()).get(MARKET_DATA)
            except SupervisorError:
                return  # looked at again at the next heartbeat
            pid = info.pid if info is not None and info.state in _UP else 0
            await asyncio.to_thread(self.proxy_port.check, pid)
            self.on_port_checked()

    def _waiting(self) -> list[tuple[str, int, int]]:
        return [(b, port, pid) for b, port, pid in self._up()
                if not (r := self._pings.get(b)) or not r.ok]  # fmt: skip

    def _due_at(self, bot: str, waiting: int) -> float:
        seen, asked = self._seen_at.get(bot, 0.0), self._asked_at.get(bot)
        return starting_ping_at(seen, asked, self.slow_ping_every, waiting)

    def next_starting_ping(self) -> float | None:
        """When the next bot that has not answered yet is due to be asked (clock time)."""
        waiting = self._waiting()
        return min((self._due_at(b, len(waiting)) for b, _, _ in waiting), default=None)

    def market_data(self) -> MarketDataStats | None:
        """The pool's market-data proxy: supervisord's state of it and its last counters;
        None when the pool runs none."""
        info = self.processes.get(MARKET_DATA)
        if self._market_data is None or info is None:
            return None
        figures = self._market_data_figures
        holder = self.proxy_port.verdict.holder if self.proxy_port is not None else None
        routed = sorted(b for b in self.routed_bots() if self._is_up(program_name(b)))
        if figures is None or info.state != ProcessState.RUNNING:
            return MarketDataStats(info.state, holder=holder, routed=routed)
        return MarketDataStats(info.state, figures.cache_bytes, figures.cache_entries,
                               figures.upstreams, holder, routed)  # fmt: skip

    def _is_up(self, name: str) -> bool:
        info = self.processes.get(name)
        return info is not None and info.state in _UP

    async def ping_starting(self) -> bool:
        """Ask the bots that are up but have not answered yet and are due; True if one
        answers now, so that a bot just (re)started is reported at once."""
        now, waiting = self.clock(), self._waiting()
        due = [(b, port, pid) for b, port, pid in waiting if self._due_at(b, len(waiting)) <= now]
        if not due:
            return False
        for bot, _port, _pid in due:
            self._asked_at[bot] = now
        return await self._ping(due, min(self.ping_timeout, STARTING_PING_TIMEOUT))

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
            up = info.state in _UP
            p = self._pings.get(bot) if up else None
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
                    port_ok=self._port_ok.get(bot) if up else None,
                    uss=uss_bytes(pid) if alive else None,
                    nice=nice_of(pid) if alive else None,
                    oom_kills=self.cgroups.oom_kills(bot) if self.cgroups else None,
                    busy_since=self.busy.since(pid) if self.busy is not None and alive else None,
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
        guard = self.place_oom_scores(bots)
        if self.cgroups is not None:
            for b in bots:  # a bot that did not join its group itself (agent/cgroups.py)
                self.cgroups.adopt(b.id, b.pid)
        mode = self.cgroups.mode if self.cgroups else None
        policy = None
        if self.busy is not None:
            self.busy.check(b.pid for b in bots)
            policy = self.busy.active_policy
        if self.cgroup_metrics:
            # In a container the cgroup is the pool: the same figures Docker accounts.
            return PoolStats(
                mem_used=cgroup_memory_used(),
                mem_limit=cgroup_memory_limit(),
                cpu=self._cpu.sample(_CGROUP_KEY, cgroup_cpu_seconds()),
                oom_guard=guard,
                cgroup=mode,
                busy_policy=policy,
            )
        return PoolStats(
            mem_used=rss_bytes(os.getpid()) + sum(b.rss for b in bots),
            mem_limit=cgroup_memory_limit(),
            cpu=round(sum(b.cpu for b in bots), 2),
            oom_guard=guard,
            cgroup=mode,
            busy_policy=policy,
        )

    def place_oom_scores(self, bots: list[BotStatus]) -> bool | None:
        """Give new processes their OOM scores: supervisord (this agent's parent), the agent
        and the pool's other programs the machinery's, each bot (its own process, not its
        launcher) the bots'. Whether every bot ranks above the machinery for the kernel."""
        if self.oom is None:
            return None
        machinery = [os.getpid(), os.getppid()]
        machinery += [i.pid for n, i in self.processes.items() if bot_id_of(n) is None]
        return self.oom.place(machinery, [b.pid for b in bots])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._market_data is not None:
            await self._market_data.close()
