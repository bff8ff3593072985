"""The agent process: one WebSocket to the controller, heartbeats out, desired state in.

The bots do not depend on this connection: if the controller is unreachable the agent
keeps watching supervisord (agent/watch.py), leaves every process as it is, and reconnects
with capped exponential backoff. With fencing (AGENT_FENCE_TIMEOUT, agent/fence.py) it
stops the bots once the controller has been unreachable that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

from agent import health
from agent.backup_targets import ControllerTarget
from agent.backups import BackupOptions, Backups
from agent.bot_requests import BotRequests
from agent.bot_transfer import BotTransfer
from agent.cgroups import detect
from agent.cpu import BusyBots
from agent.eventlistener import SOCKET_NAME
from agent.fence import (
    Fence,
    close_pidfds,
    kill_survivors,
    narrowed,
    pidfds_of,
    stop_budget,
)
from agent.oom import MACHINERY_OOM_SCORE_ADJ, OomScores
from agent.pool_files import owner_of
from agent.programs import MarketDataProgram, ProgramOptions
from agent.reconcile import Reconciler
from agent.reporter import Reporter
from agent.supervisor import SupervisorClient, SupervisorError
from agent.versions import freqtrade_version
from agent.watch import Watch
from common import __version__
from common.fencing import ws_heartbeat
from common.protocol import (
    AGENT_FEATURES,
    MAX_FRAME_BYTES,
    Desired,
    FilesRequest,
    Heartbeat,
    Hello,
    LogRequest,
    ProtocolError,
    RestoreRequest,
    decode,
    encode,
)
from common.settings import AgentSettings

log = structlog.get_logger("agent")
# How long a fence waits for supervisord to list the bots before it kills their processes
# itself (agent/fence.py stop_budget bounds the stop that follows too).
FENCE_POLL_TIMEOUT = 5.0


def market_data_program(settings: AgentSettings) -> MarketDataProgram | None:
    """The pool's market-data proxy, if it is on and the controller gave it a port."""
    if not settings.market_data_proxy or not settings.market_data_port:
        return None
    return MarketDataProgram(
        port=settings.market_data_port,
        quote_ttl_ms=settings.market_data_quote_ttl_ms,
        candle_ttl_ms=settings.market_data_candle_ttl_ms,
        cache_bytes=settings.market_data_cache_bytes,
        user=settings.market_data_user or None,
        log_level=settings.log_level,
    )


def backups_of(
    settings: AgentSettings, options: ProgramOptions, on_change: Callable[[], None]
) -> Backups | None:
    """The pool's backups, if the controller gave it a backup directory or has it send its
    restore points (BACKUP_TRANSPORT=controller)."""
    shipped = settings.backup_transport == "controller"
    if not settings.backup_dir and not shipped:
        return None
    backup = BackupOptions(
        None if shipped else Path(settings.backup_dir), settings.backup_interval_ms / 1000,
        settings.backup_retention_days,
    )  # fmt: skip
    sink = (
        ControllerTarget(settings.controller_url, settings.pool_id, settings.pool_token)
        if shipped
        else None
    )
    return Backups(
        backup, settings.pool_dir / "bots", lambda port: owner_of(options.user_for(port)),
        on_change=on_change, sink=sink,
    )  # fmt: skip


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.supervisor = SupervisorClient(settings.supervisor_socket)
        # The preloader's socket and the launchers' pidfiles (the controller decides per
        # pool whether bots are preloaded).
        run_dir = settings.pool_dir / "run"
        market_data = market_data_program(settings)
        cgroups = detect(settings.pool_cgroup, settings.pool_cgroup_parent)
        options = ProgramOptions(
            log_dir=settings.log_dir,
            user_prefix=settings.bot_user_prefix,
            port_start=settings.port_start,
            run_dir=run_dir,
            launcher_python=sys.executable,
            preload_modules=settings.preload_modules,
            preload_markets=settings.preload_markets,
            preload_immortal=settings.preload_immortal,
            market_data=market_data,
            cgroup_parents=tuple(cgroups.parents) if cgroups else (),
        )
        # The reconciler, the reporter and the watch call on each other: each is given the
        # others as it is made, the watch (made last) through a call that finds it later.
        self.reconciler = Reconciler(
            self.supervisor, settings.pool_dir, options,
            on_change=lambda: self.watch.report_soon(), cgroups=cgroups,
        )  # fmt: skip
        self.transfer = BotTransfer(
            settings.pool_dir, settings.controller_url, held=self.reconciler.holds
        )
        self.reporter = Reporter(
            self.supervisor,
            settings.bot_ping_timeout_ms / 1000,
            cgroup_metrics=settings.pool_metrics == "cgroup",
            pid_dir=run_dir,
            uid_for=self._slot_uid if settings.bot_user_prefix else None,
            slow_ping_every=settings.poll_interval_ms / 1000,
            oom=OomScores(settings.bot_oom_score_adj, MACHINERY_OOM_SCORE_ADJ),
            busy=BusyBots(
                settings.bot_busy_cpu,
                settings.bot_busy_window_ms / 1000,
                policy=settings.bot_busy_policy,
            ),
            market_data_socket=MarketDataProgram.stats_socket(settings.pool_dir)
            if market_data
            else None,
            proxy_port=self.reconciler.proxy_port,  # the one whose verdict routes the bots
            on_port_checked=self.reconciler.reroute,
            routed_bots=lambda: self.reconciler.routed_bots,
            cgroups=cgroups,
        )
        self.watch = Watch(
            self.reporter,
            poll_interval=settings.poll_interval_ms / 1000,
            heartbeat_interval=settings.heartbeat_interval_ms / 1000,
            events_path=run_dir / SOCKET_NAME,
            send=self._send_heartbeat,
        )
        self.backups = backups_of(settings, options, self.watch.report_soon)
        self.requests = BotRequests(self.supervisor, self.reconciler, self.backups, self.transfer)
        self.fence = Fence(settings.fence_timeout_ms / 1000, self._fence_bots,
                           margin=settings.fence_margin_ms / 1000)  # fmt: skip
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._seq = 0
        self._health_server: asyncio.AbstractServer | None = None

    def _slot_uid(self, port: int) -> int:
        user = self.reconciler.options.user_for(port)
        return pwd.getpwnam(user).pw_uid if user else os.getuid()

    async def run(self) -> None:
        if self.settings.health_socket:
            # supervisord is asked at least every poll and every heartbeat.
            every = min(self.settings.poll_interval_ms, self.settings.heartbeat_interval_ms)
            max_age = max(10.0, 5 * every / 1000)
            self._health_server = await health.serve(
                Path(self.settings.health_socket),
                lambda: health.status(
                    self.watch.last_poll_ok, max_age, self._ws is not None, self.fence.fenced
                ),
            )
        await self._wait_for_supervisor()
        await asyncio.to_thread(self.transfer.sweep)  # before the first transfer
        tasks = [
            asyncio.create_task(self.reconciler.run(), name="reconcile"),
            asyncio.create_task(self.watch.run(), name="watch"),
            asyncio.create_task(self._connect_loop(), name="connect"),
            asyncio.create_task(self.fence.run(), name="fence"),
        ]
        if self.backups is not None:
            tasks.append(asyncio.create_task(self.backups.run(), name="backups"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await self.reporter.close()
            self.supervisor.close()
            if self.backups is not None:
                self.backups.close()

    async def _wait_for_supervisor(self) -> None:
        while True:
            try:
                await self.reporter.poll()
                return
            except SupervisorError as exc:
                log.warning("supervisord_not_ready", error=str(exc))
                await asyncio.sleep(1)

    async def _fence_bots(self) -> int | None:
        """Stop every bot for the fence, and make sure each bot's own process is gone (a
        forked bot that outlived its launcher is killed); how many were stopped. None if
        the controller sent a desired state meanwhile: then nothing is stopped or killed.
        Where supervisord does not answer (hung, gone), the bots' processes as last seen
        are killed instead: a fence never waits on it, the controller's wait is running."""
        since = self.reconciler.submitted
        pidfds = await asyncio.to_thread(pidfds_of, self._bot_pids())  # before any question
        budget = stop_budget(self.fence.margin, self.reconciler.options.stop_wait_secs,
                             FENCE_POLL_TIMEOUT)  # fmt: skip
        try:
            async with asyncio.timeout(budget):
                async with asyncio.timeout(FENCE_POLL_TIMEOUT):
                    await self.reporter.poll()
                # supervisord answered: its word replaces the last one (a pid it no longer
                # lists is not a bot's any more).
                pidfds = await asyncio.to_thread(narrowed, pidfds, self._bot_pids())
                stopped = await self.reconciler.fence(since)
        except (SupervisorError, TimeoutError) as exc:
            if self.reconciler.submitted != since:  # the controller spoke: its word wins
                await asyncio.to_thread(close_pidfds, pidfds)
                return None
            self.reconciler.apply_nothing()
            killed = await asyncio.to_thread(kill_survivors, pidfds)
            why = str(exc) or f"supervisord did not stop the bots within {budget:.0f} s"
            log.error("fence_killed_bots", reason=why, killed=killed)
            await self._back_up_after_fence()
            return len(killed)
        except BaseException:
            await asyncio.to_thread(kill_survivors, pidfds)  # what a stop cut short left
            raise
        if stopped is None:
            await asyncio.to_thread(close_pidfds, pidfds)
            return None
        killed = await asyncio.to_thread(kill_survivors, pidfds)
        if killed:
            log.error("fenced_bots_killed", pids=killed)
        self.watch.report_soon()
        await self._back_up_after_fence()
        return len(stopped)

    def _bot_pids(self) -> list[int]:
        """The bots' own processes, as supervisord last said."""
        return [b.pid for b in self.reporter.statuses() if b.pid > 0]

    async def _back_up_after_fence(self) -> None:
        if self.backups is not None:
            # The stopped bots' last trades, backed up if the target is still reachable: a
            # failover elsewhere restores from it (controller/moves/failover.py).
            await self.backups.round_now()

    async def _send_heartbeat(self) -> None:
        if self._ws is None or self._ws.closed:
            return
        bots = self.reporter.statuses()
        self._seq += 1
        frame = Heartbeat(
            seq=self._seq,
            gen=self.reconciler.applied_gen,
            bots=bots,
            pool=self.reporter.pool_stats(bots),
            preloader=self.reporter.preloader_state(),
            market_data=self.reporter.market_data(),
            backup=self.backups.state if self.backups is not None else None,
        )
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.send_bytes(encode(frame))

    async def _connect_loop(self) -> None:
        backoff = 0.5
        cap = self.settings.max_backoff_ms / 1000
        ping_every = ws_heartbeat(self.fence.timeout)
        async with aiohttp.ClientSession() as session:
            while True:
                started = time.monotonic()
                try:
                    async with session.ws_connect(
                        self.settings.controller_url,
                        heartbeat=ping_every,
                        # Pongs reach the session, which counts them as contact (fence).
                        autoping=False,
                        max_msg_size=MAX_FRAME_BYTES,
                    ) as ws:
                        await self._session(ws)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    log.warning("controller_unreachable", error=str(exc))
                except SupervisorError as exc:
                    # supervisord did not answer (restarting, busy): the connection goes,
                    # the agent stays and connects again once it answers.
                    log.warning("supervisord_unavailable", error=str(exc))
                finally:
                    self._ws = None
                    self.fence.disconnected()
                # A connection that lived a while resets the backoff; a flapping one does not.
                if time.monotonic() - started > 30:
                    backoff = 0.5
                delay = min(backoff, cap) * random.uniform(0.8, 1.2)
                backoff = min(backoff * 2, cap)
                await asyncio.sleep(delay)

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        s = self.settings
        await self.reporter.poll()
        freqtrade = await asyncio.to_thread(freqtrade_version)  # read once, then cached
        hello = Hello(
            pool_id=s.pool_id, token=s.pool_token, version=__version__,
            capacity=s.capacity, port_start=s.port_start, programs=self.reporter.statuses(),
            features=list(AGENT_FEATURES), freqtrade=freqtrade, fenced=self.fence.fenced,
            fence_timeout_ms=s.fence_timeout_ms,
        )  # fmt: skip
        await ws.send_bytes(encode(hello))
        self._ws = ws
        log.info("controller_connected", url=s.controller_url)
        answers: set[asyncio.Task[None]] = set()
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.PING:  # autoping is off: answered here
                    await ws.pong(msg.data)
                self.fence.heard()  # a pong (our heartbeat's answer) too: the last contact
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                try:
                    frame = decode(msg.data)
                except ProtocolError as exc:
                    log.warning("bad_frame_from_controller", error=str(exc))
                    continue
                # Contact: the controller accepted the hello and speaks (its first frame is
                # the desired state). A hello refused does not count.
                self.fence.connected()
                if isinstance(frame, Desired):
                    self.fence.released()
                    self.reporter.set_ports({b.id: b.port for b in frame.bots})
                    if self.backups is not None:
                        self.backups.specs = frame.bots
                    self.reconciler.submit(frame)
                elif isinstance(frame, LogRequest | RestoreRequest | FilesRequest):
                    # Answered in a task of its own: a log being read must not hold up the
                    # desired states behind it.
                    answer = asyncio.create_task(self._answer(ws, frame))
                    answers.add(answer)
                    answer.add_done_callback(answers.discard)
        finally:
            for answer in answers:
                answer.cancel()
            await asyncio.gather(*answers, return_exceptions=True)
        log.warning("controller_disconnected", code=ws.close_code)

    async def _answer(
        self, ws: aiohttp.ClientWebSocketResponse, req: LogRequest | RestoreRequest | FilesRequest
    ) -> None:
        response = await self.requests.answer(req)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(encode(response))
