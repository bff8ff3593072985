"""The agents' sessions: one WebSocket per pool's agent, authenticated by its hello, and
what its frames say of the pool (heartbeats, answers to log requests).

A heartbeat only updates the pool's live state (memory; the store is not touched) and
reports what changed; acting on it is the lifecycle's (controller/pools/lifecycle.py).
A pool is suspect while its agent is gone, silent for POOL_GRACE, or seen dead by the
runtime since it last spoke.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from common.protocol import (
    BackupState,
    BotStatus,
    Heartbeat,
    Hello,
    LogRequest,
    MarketDataStats,
    Message,
    Response,
    encode,
)
from common.states import DIED
from controller.errors import BotUnavailable, RuntimeFailure
from controller.events import EventBus
from controller.pools.alarm import Alarm
from controller.pools.live import PoolLive, token_matches
from controller.pools.registry import PoolRegistry
from controller.runtimes import PoolRuntime

log = structlog.get_logger("controller.pools")


@dataclass(slots=True)
class HeartbeatReport:
    """What one heartbeat changed (one is made per heartbeat: not frozen, which costs)."""

    pool_id: str
    applied_gen: int  # the generation of desired state the agent has applied
    changed: tuple[str, ...]  # bots whose process state changed (or that appeared)


def runtime_event_effect(action: str, replacing: bool) -> str | None:
    """What the runtime's word about a pool's container means for the controller:

    - "died": the container stopped without being asked to (Docker's die, destroy): the
      pool is suspect at once, a `pool_died` event;
    - "oom": a process in it was killed for memory (Docker's oom): the container lives and
      its agent reports which bot exited; a `pool_oom` event, the pool not suspect;
    - None: nothing to act on: a signal was sent (kill: a die follows if it was fatal), or
      the controller itself is replacing the container (a rolling upgrade)."""
    if action == "oom":
        return "oom"
    if action in ("die", "destroy") and not replacing:
        return "died"
    return None


class AgentSessions:
    def __init__(
        self, registry: PoolRegistry, runtime: PoolRuntime, *, events: EventBus, alarm: Alarm,
        pool_grace: float, bot_memory: int = 0, fencing: bool = False,
        replacing: Callable[[str], bool] = lambda _pool_id: False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        """`fencing`: agents are told to fence (AGENT_FENCE_TIMEOUT is on); `replacing`:
        whether the controller is replacing a pool's runtime itself (the lifecycle's pools
        under a rolling upgrade), so that its container's death is not the pool's."""
        self.registry = registry
        self.bot_memory = bot_memory  # a bot's memory limit unless it has its own (0: none)
        self.runtime = runtime
        self.events = events
        self.alarm = alarm  # rung when a bot died or an agent went away
        self.pool_grace = pool_grace
        self.monotonic = monotonic  # stamps of contact for the fence's wait (PoolLive)
        self.frames_received = 0
        self.frames_rejected = 0
        self.backup_failures = 0  # pools' backups that began to fail
        self.bot_oom_kills = 0  # kernel OOM kills in bots' own cgroups (agent/cgroups.py)
        self.bot_deprioritisations = 0  # busy bots their agents deprioritised (agent/cpu.py)
        self.fencing = fencing
        self.fences = 0  # agents that said, reconnecting, that they had fenced their pool
        self._changed = asyncio.Condition()
        self._waiters = 0
        # Each request waiting for its agent's answer, and the connection it was sent on.
        self._requests: dict[int, tuple[web.WebSocketResponse, asyncio.Future[Response]]] = {}
        self._request_ids = itertools.count(1)
        self.replacing = replacing

    def verify_hello(self, hello: Hello) -> bool:
        pool = self.registry.pools.get(hello.pool_id)
        return pool is not None and token_matches(hello.token, pool.token_hash)

    async def attach(self, hello: Hello, ws: web.WebSocketResponse) -> None:
        live = self.registry.live[hello.pool_id]
        old = live.ws
        if old is not None and old is not ws and not old.closed:
            # The newest connection of a pool's agent wins; the old one is stale.
            await old.close(code=4409, message=b"replaced by a newer agent connection")
        now = time.time()
        live.ws, live.agent_version, live.connected_at, live.last_seen = ws, hello.version, now, now
        live.heard_mono = self.monotonic()
        live.features = frozenset(hello.features)
        live.freqtrade_version = hello.freqtrade
        live.fence_timeout = hello.fence_timeout_ms / 1000
        live.seq = 0  # a reconnected or restarted agent numbers its heartbeats anew
        live.bots = {s.id: s for s in hello.programs}
        orphans = [b for b in live.bots if self.registry.bots.get(b) is None]
        if orphans:
            log.warning("orphan_bots_will_be_stopped", pool=hello.pool_id, bots=orphans)
        self.events.emit("agent_connected", pool=hello.pool_id, version=hello.version,
                         adopted=len(live.bots))  # fmt: skip
        self._fencing_of(hello)
        await self.registry.push(hello.pool_id)
        try:
            # A restarted container may have a new address on its network: look again.
            await self.runtime.inspect(hello.pool_id)
        except RuntimeFailure as exc:
            log.warning("pool_inspect_failed", pool=hello.pool_id, error=str(exc))

    def _fencing_of(self, hello: Hello) -> None:
        """An agent that fenced its pool (its bots were stopped while it was cut off: the
        desired state pushed now starts them again) is an event; one that cannot fence,
        where agents should, a warning (an agent from before fencing)."""
        if hello.fenced:
            self.fences += 1
            log.warning("pool_fenced", pool=hello.pool_id)
            self.events.emit("pool_fenced", pool=hello.pool_id, reason="controller_unreachable")
        elif self.fencing and "fence" not in hello.features:
            log.warning("agent_cannot_fence", pool=hello.pool_id, version=hello.version)

    def detach(self, pool_id: str, ws: web.WebSocketResponse) -> None:
        self._fail_requests(pool_id, ws)
        live = self.registry.live.get(pool_id)
        if live is not None and live.ws is ws:
            live.ws = None
            live.disconnected_at, live.closed_mono = time.time(), self.monotonic()
            log.warning("agent_disconnected", pool=pool_id)
            self.events.emit("agent_disconnected", pool=pool_id)
            self.alarm.ring()

    def _fail_requests(self, pool_id: str, ws: web.WebSocketResponse) -> None:
        """Every request sent over this connection and not answered fails now: its answer
        would come over it, and it is gone (the agent drops what it was answering; a new
        connection answers nothing of it). Not waited for until its timeout (a transfer's
        is 15 min, its move holding the moves' lock all the while)."""
        for sent_on, future in self._requests.values():
            if sent_on is ws and not future.done():
                future.set_exception(
                    BotUnavailable(f"the agent of {pool_id} disconnected before it answered")
                )

    def _market_data_port(self, pool_id: str, live: PoolLive, now: MarketDataStats | None) -> None:
        """A stranger on the pool's market-data proxy port (its bots go to their exchange
        directly meanwhile): an event when it appears, and one when the proxy has its port
        again (however long nobody held it in between)."""
        holder = now.holder if now is not None else None
        if holder == "stranger" and not live.market_data_taken:
            live.market_data_taken = True
            self.events.emit("market_data_port_taken", pool=pool_id,
                             reason="another process listens on the proxy's port")  # fmt: skip
            self.alarm.ring()  # its bots running through the proxy are moved off at once
        elif holder == "proxy" and live.market_data_taken:
            live.market_data_taken = False
            self.events.emit("market_data_port_recovered", pool=pool_id)

    def record(self, pool_id: str, hb: Heartbeat) -> HeartbeatReport | None:
        """Take a heartbeat into the pool's live state; None if it says nothing new."""
        live = self.registry.live.get(pool_id)
        if live is None:
            return None  # the pool was just removed; its connection is closing
        if hb.seq <= live.seq:
            return None  # a replayed or reordered frame
        previous = live.bots
        live.bots = {s.id: s for s in hb.bots}
        live.seq, live.acked_gen, live.stats, live.last_seen = hb.seq, hb.gen, hb.pool, time.time()
        live.heard_mono = self.monotonic()
        self._market_data_port(pool_id, live, hb.market_data)
        live.market_data = hb.market_data
        self._backup_state(pool_id, live.backup, hb.backup)
        live.backup = hb.backup
        if live.preloader != hb.preloader:
            log.info("preloader_state", pool=pool_id, state=hb.preloader, was=live.preloader)
            live.preloader = hb.preloader
        changed = []
        for bot_id, status in live.bots.items():
            before = previous.get(bot_id)
            if before is None or before.state != status.state:
                changed.append(bot_id)
                record = self.registry.bots.get(bot_id)  # None for an orphan: admins see it
                self.events.emit("bot_state", pool=pool_id, bot=bot_id, reason=status.state,
                                 user=record.user_id if record else None,
                                 was=before.state if before else None)  # fmt: skip
                if status.state in DIED:
                    self.alarm.ring_for(bot_id)
            if before is not None and status.busy_since != before.busy_since:
                self._busy_changed(pool_id, bot_id, status, before, live)
            if status.oom_kills and before is not None and before.oom_kills is not None:
                self._oom_killed(pool_id, bot_id, status.oom_kills - before.oom_kills, status)
            if status.uss is not None and self._over_and_growing(bot_id, status, before):
                # Its grace starts when the monitor sees it; while it grows the monitor
                # judges it at each heartbeat (a fast leak is restarted without its grace).
                self.alarm.ring_for(bot_id)
        return HeartbeatReport(pool_id, hb.gen, tuple(changed) if changed else ())

    def _oom_killed(self, pool_id: str, bot_id: str, kills: int, status: BotStatus) -> None:
        """The kernel killed in the bot's own cgroup at its memory limit: the bot alone,
        its neighbours and the pool's machinery untouched (the monitor restarts it as any
        dead bot). Said with the reason, since the bot's own exit only says SIGKILL."""
        if kills <= 0:
            return
        self.bot_oom_kills += kills
        record = self.registry.bots.get(bot_id)
        limit = record.memory_limit_or(self.bot_memory) if record else 0
        log.warning("bot_oom_kill", pool=pool_id, bot=bot_id, kills=kills, limit=limit)
        self.events.emit("bot_memory_limit", pool=pool_id, bot=bot_id,
                         user=record.user_id if record else None, action="oom_kill",
                         reason="killed by the kernel at its cgroup's memory limit",
                         limitBytes=limit or None, kills=kills,
                         oomKills=status.oom_kills)  # fmt: skip

    def _busy_changed(
        self, pool_id: str, bot_id: str, status: BotStatus, before: BotStatus, live: PoolLive
    ) -> None:
        """Its agent deprioritised a busy bot, or gave a calm one its priority back (the
        same process's: a process that ended took its state with it)."""
        record = self.registry.bots.get(bot_id)
        user = record.user_id if record else None
        policy = live.stats.busy_policy if live.stats else None
        if status.busy_since is not None and before.busy_since is None:
            self.bot_deprioritisations += 1
            self.events.emit("bot_deprioritised", pool=pool_id, bot=bot_id, user=user,
                             reason="busy for a whole BOT_BUSY_WINDOW", policy=policy,
                             since=status.busy_since, cpuPercent=status.cpu,
                             nice=status.nice)  # fmt: skip
        elif status.busy_since is None and before.busy_since is not None:
            if before.pid != status.pid:
                return
            self.events.emit("bot_reprioritised", pool=pool_id, bot=bot_id, user=user,
                             reason="calm for a whole BOT_BUSY_WINDOW", policy=policy,
                             deprioritisedSeconds=round(time.time() - before.busy_since, 1),
                             nice=status.nice)  # fmt: skip

    def _backup_state(
        self, pool_id: str, before: BackupState | None, now: BackupState | None
    ) -> None:
        """A pool's backups failing (the target unreachable, read-only, full) or working
        again is an event; the bots are not touched either way."""
        was_ok = before is None or before.ok
        if now is not None and now.ok != was_ok:
            kind = "backup_recovered" if now.ok else "backup_failed"
            self.events.emit(kind, pool=pool_id, reason=now.error or "ok")
            if not now.ok:
                self.backup_failures += 1

    def _over_and_growing(self, bot_id: str, status: BotStatus, before: BotStatus | None) -> bool:
        """Whether a bot's own memory is over its limit and has just gone over it or grown
        (this process's)."""
        record = self.registry.bots.get(bot_id)
        if record is None or status.uss is None:
            return False
        limit = record.memory_limit_or(self.bot_memory)
        same = before is not None and before.pid == status.pid
        was = before.uss if same and before is not None else None
        return 0 < limit < status.uss and (was is None or was < status.uss)

    @property
    def waited_for(self) -> bool:
        """Whether someone waits for a change (a delete awaiting its agent's confirmation)."""
        return self._waiters > 0

    async def notify(self) -> None:
        """Wake whoever waits for a change. Taking the condition's lock costs more than the
        rest of a heartbeat: only when someone waits."""
        if self._waiters:
            async with self._changed:
                self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (bounded) until predicate holds after some heartbeat; True if it did."""
        self._waiters += 1
        try:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
                except TimeoutError:
                    return predicate()
            return True
        finally:
            self._waiters -= 1

    async def close_agents(self) -> None:
        for live in self.registry.live.values():
            if live.ws is not None:
                await live.ws.close(code=1001, message=b"controller shutting down")

    def next_request_id(self) -> int:
        return next(self._request_ids)

    async def request(self, pool_id: str, frame: Message, timeout: float = 10) -> Response:
        """Send a request frame (with an id from next_request_id) to a pool's agent and
        wait for its answer; BotUnavailable when the agent is not connected, silent, or
        disconnects first."""
        live = self.registry.live.get(pool_id)
        if live is None or live.ws is None or live.ws.closed:
            raise BotUnavailable(f"the agent of {pool_id} is not connected")
        request_id, ws = frame.id, live.ws  # type: ignore[union-attr]
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = (ws, future)
        try:
            await ws.send_bytes(encode(frame))
            return await asyncio.wait_for(future, timeout)
        except (TimeoutError, ConnectionError, RuntimeError):
            raise BotUnavailable(f"agent of {pool_id} did not answer") from None
        finally:
            self._requests.pop(request_id, None)

    async def request_log(self, pool_id: str, bot_id: str, max_bytes: int) -> bytes | None:
        """The tail of a bot's log, asked of its agent; None when the agent is not connected."""
        live = self.registry.live.get(pool_id)
        if live is None or live.ws is None or live.ws.closed:
            return None
        frame = LogRequest(self.next_request_id(), bot_id, max_bytes)
        response = await self.request(pool_id, frame)
        if response.error:
            raise BotUnavailable(f"log not available: {response.error}")
        return response.data  # type: ignore[union-attr]

    def response(self, response: Response) -> None:
        pending = self._requests.get(response.id)
        if pending is not None and not pending[1].done():
            pending[1].set_result(response)

    def runtime_event(self, pool_id: str, action: str) -> None:
        """What the runtime saw of a pool's container (runtime_event_effect): a pool that
        died unasked is suspect at once, until its agent connects again."""
        live = self.registry.live.get(pool_id)
        if live is None:
            log.info("runtime_event_for_unknown_pool", pool=pool_id, action=action)
            return
        effect = runtime_event_effect(action, self.replacing(pool_id))
        if effect == "oom":
            log.warning("pool_oom", pool=pool_id)
            self.events.emit("pool_oom", pool=pool_id, reason=action)
        elif effect == "died":
            live.runtime_event, live.runtime_event_at = action, time.time()
            log.warning("pool_died", pool=pool_id, action=action)
            self.events.emit("pool_died", pool=pool_id, reason=action)
            self.alarm.ring()
        else:
            log.info("pool_runtime_event", pool=pool_id, action=action)

    def is_suspect(self, pool_id: str) -> bool:
        live = self.registry.live.get(pool_id)
        if live is None or not live.connected:
            return True
        # A death the runtime reported is cleared by any later word from the agent: an
        # oom-killed bot inside a living container does not silence the pool.
        if live.runtime_event_at > max(live.connected_at, live.last_seen):
            return True
        return time.time() - live.last_seen > self.pool_grace
