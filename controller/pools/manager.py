"""Pools: their records, their agents' live reports, and pushing desired state to them.

This is the controller's in-memory view. Heartbeats only update memory; the
store is touched on transitions (a deleted bot confirmed gone). Desired state
is always built from the records, so a push can be repeated at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import secrets
import time
from collections.abc import Callable

import structlog
from aiohttp import web

from common.protocol import BotStatus, Desired, Heartbeat, Hello, LogRequest, LogResponse, encode
from common.states import DIED
from controller.errors import BotUnavailable, Conflict, NotFound, PoolExists, RuntimeFailure
from controller.events import EventBus
from controller.pools.alarm import Alarm
from controller.pools.config import PoolsConfig
from controller.pools.desired import DesiredStates
from controller.pools.live import PoolLive, hash_token
from controller.records import BotRecord, PoolRecord
from controller.runtimes import PoolLaunch, PoolRuntime, RuntimeState
from controller.store.store import Store

log = structlog.get_logger("controller.pools")


class PoolManager:
    def __init__(
        self, store: Store, runtime: PoolRuntime, config: PoolsConfig, *, events: EventBus,
        alarm: Alarm,
    ) -> None:  # fmt: skip
        self.store = store
        self.runtime = runtime
        self.config = config
        self.pool_grace = config.pool_grace
        self.desired_states = DesiredStates(
            config.bot_command, config.bot_launch, lambda: runtime.bot_listen_ip
        )
        self.events = events
        # Rung when a report shows a bot down, an agent's connection is lost or the runtime
        # saw a pool die: the monitor then judges at once.
        self.alarm = alarm
        self.pools: dict[str, PoolRecord] = {}
        self.bots: dict[str, BotRecord] = {}
        self.live: dict[str, PoolLive] = {}
        self.unknown_pools: list[str] = []
        self.frames_received = 0
        self.frames_rejected = 0
        self.changed = asyncio.Condition()
        self._waiters = 0
        self._by_pool: dict[str, set[str]] = {}
        self._deleted_at_gen: dict[str, int] = {}
        self._creating: dict[str, asyncio.Task[None]] = {}
        # Pools marked removing in the store: out of the view, their runtime going (slow),
        # their number still taken; and the removal under way for each.
        self.retiring: dict[str, PoolRecord] = {}
        self._retirements: dict[str, asyncio.Task[None]] = {}
        # Pools whose failed creation left something that could not be discarded then: it
        # is discarded before the next creation of that pool.
        self._leftovers: set[str] = set()
        self._removals: set[asyncio.Task[bool]] = set()
        # Serializes making runtimes, and marking pools removing: no pool is marked while
        # it is being made, and none is made once marked. (The removal itself runs outside
        # it: a removed pool keeps its number until its runtime is gone.)
        self.lifecycle = asyncio.Lock()
        self._requests: dict[int, asyncio.Future[LogResponse]] = {}
        self._request_ids = itertools.count(1)

    # -- records --------------------------------------------------------------------

    async def load(self) -> None:
        pools, bots = await self.store.load()
        for pool in pools:
            if pool.removing:  # a removal a failure or a restart cut short: cleanup ends it
                self.retiring[pool.id] = pool
                self.runtime.name_pool(pool.id, pool.container_name)
                continue
            self.set_pool(pool)
        for bot in bots:
            self.set_bot(bot)
            if bot.deleting:
                self._deleted_at_gen[bot.id] = self.pools[bot.pool_id].generation

    def set_pool(self, pool: PoolRecord) -> None:
        self.pools[pool.id] = pool
        self.runtime.name_pool(pool.id, pool.container_name)
        self.live.setdefault(pool.id, PoolLive())
        self._by_pool.setdefault(pool.id, set())

    def set_bot(self, bot: BotRecord) -> None:
        self.bots[bot.id] = bot
        self._by_pool.setdefault(bot.pool_id, set()).add(bot.id)

    def set_generation(self, pool_id: str, gen: int) -> None:
        self.pools[pool_id].generation = gen

    def bots_in(self, pool_id: str) -> list[BotRecord]:
        return sorted((self.bots[b] for b in self._by_pool.get(pool_id, ())), key=lambda b: b.port)

    def status_of(self, bot: BotRecord) -> BotStatus | None:
        live = self.live.get(bot.pool_id)
        return live.bots.get(bot.id) if live else None

    def forget_bot(self, bot_id: str) -> None:
        bot = self.bots.pop(bot_id, None)
        if bot is not None:
            self._by_pool.get(bot.pool_id, set()).discard(bot_id)
        self.desired_states.forget(bot_id)
        self._deleted_at_gen.pop(bot_id, None)

    def forget_pool(self, pool_id: str, record: PoolRecord | None = None) -> None:
        """Forget a pool; with `record`, only if the id still names that very pool."""
        if record is not None and self.pools.get(pool_id) is not record:
            return  # the id was reused by a new pool meanwhile
        self.pools.pop(pool_id, None)
        self.live.pop(pool_id, None)
        self._by_pool.pop(pool_id, None)

    # -- pool lifecycle ---------------------------------------------------------------

    def new_token(self) -> tuple[str, str]:
        token = secrets.token_hex(32)
        return token, hash_token(token)

    def launch(self, pool: PoolRecord, token: str) -> PoolLaunch:
        return PoolLaunch(
            pool_id=pool.id, capacity=pool.capacity, port_start=pool.port_start,
            token=token, controller_url=self.config.controller_url,
            agent_env=self.config.agent_env,
        )  # fmt: skip

    async def create_runtime(self, pool: PoolRecord, token: str) -> None:
        """Create the pool's runtime once; concurrent callers wait for the same creation."""
        task = self._creating.get(pool.id)
        if task is None:
            task = asyncio.create_task(self._locked_create(self.launch(pool, token)))
            self._creating[pool.id] = task
            task.add_done_callback(lambda _t: self._creating.pop(pool.id, None))
        await asyncio.shield(task)

    def creating(self, pool_id: str) -> bool:
        return pool_id in self._creating

    async def _locked_create(self, launch: PoolLaunch) -> None:
        pool_id = launch.pool_id
        async with self.lifecycle:
            if pool_id in self.retiring:
                raise RuntimeFailure(f"pool {pool_id} is being removed")
            if pool_id in self._leftovers:  # ours, from a creation that failed before
                await self.runtime.discard(pool_id)
                self._leftovers.discard(pool_id)
            try:
                await self.runtime.create(launch)
            except PoolExists:
                raise  # not made by this creation: never ours to remove
            except Exception:
                await self._discard_leftover(pool_id)
                raise

    async def _discard_leftover(self, pool_id: str) -> None:
        """What a failed creation made (a container that did not start, a supervisord whose
        agent did not come up) goes, so that the pool's number can be taken again."""
        try:
            await self.runtime.discard(pool_id)
        except Exception as exc:
            self._leftovers.add(pool_id)
            log.error("pool_leftover_not_discarded", pool=pool_id, error=str(exc))

    async def wait_created(self, pool_id: str) -> None:
        task = self._creating.get(pool_id)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def recreate(self, pool: PoolRecord) -> None:
        """A pool whose runtime is missing gets a new one, with a new token."""
        token, token_hash = self.new_token()
        await self.store.set_pool_token(pool.id, token_hash)
        pool.token_hash = token_hash
        await self.create_runtime(pool, token)

    async def remove_empty(self, pool: PoolRecord) -> bool:
        """Remove a pool without bots: its agent's connection, its runtime (its directory's
        leftovers go to the archive), then its record. False if it gained a bot meanwhile.

        Only marking it removing waits for the lifecycle lock; the slow part (a container
        stopping) holds up no other pool's creation."""
        async with self.lifecycle:
            retired = await self.store.retire_pool(pool.id)
            if retired is None:
                return False
            live = self.live.get(pool.id)
            self.forget_pool(pool.id)
            self.retiring[pool.id] = retired
        if live is not None and live.ws is not None:
            await live.ws.close(code=4410, message=b"pool removed")
        await self.finish_removal(retired)
        return True

    async def finish_removal(self, pool: PoolRecord) -> None:
        """Remove a pool marked removing: its runtime, then its record, which frees its
        number. Concurrent callers wait for the same removal; a failed one stays marked."""
        task = self._retirements.get(pool.id)
        if task is None:
            task = asyncio.create_task(self._remove_retired(pool))
            self._retirements[pool.id] = task
            task.add_done_callback(lambda _t: self._retirements.pop(pool.id, None))
        await asyncio.shield(task)

    async def _remove_retired(self, pool: PoolRecord) -> None:
        await self.runtime.remove(pool.id)
        await self.store.remove_pool(pool.id)
        self.retiring.pop(pool.id, None)
        log.info("pool_removed", pool=pool.id, legacy_of=pool.legacy_of)

    async def adopt(self) -> list[str]:
        """Match the runtime's pools with the store's; return the ids it has that we don't.

        Moves cut short by a crash are finished first (controller/moves/evacuation.py)."""
        found = await self.runtime.list()
        known = self.pools.keys() | self.retiring.keys()
        unknown = self.unknown_pools = [p for p in found if p not in known]
        for pool_id in unknown:
            log.warning("unknown_pool_left_alone", pool=pool_id)
        for pool in list(self.pools.values()):
            state = await self.runtime.inspect(pool.id)
            log.info("pool_adopted", pool=pool.id, state=state, bots=len(self.bots_in(pool.id)))
            if state != RuntimeState.RUNNING and self.bots_in(pool.id):
                try:
                    await (self.recreate(pool) if state == RuntimeState.MISSING
                           else self.runtime.restart(pool.id))  # fmt: skip
                except RuntimeFailure as exc:
                    log.error("pool_start_failed", pool=pool.id, error=str(exc))
        return unknown

    # -- desired state ----------------------------------------------------------------

    def desired(self, pool_id: str) -> Desired:
        return self.desired_states.build(self.pools[pool_id], self.bots_in(pool_id))

    def launch_mode(self, pool: PoolRecord) -> str:
        return self.desired_states.launch_mode(pool)

    async def set_launch(self, pool_id: str, launch: str | None) -> PoolRecord:
        """Preload or exec this pool's bots (None: the default); its agent restarts them."""
        self._known(pool_id)
        pool = await self.store.update_pool(pool_id, launch=launch)
        self.set_pool(pool)
        log.info("pool_launch_set", pool=pool_id, launch=launch, effective=self.launch_mode(pool))
        await self.push(pool_id)
        return pool

    async def restart_preloader(self, pool_id: str) -> PoolRecord:
        """Have the agent stop the pool's bots, restart its preloader, start them again."""
        current = self._known(pool_id)
        if self.launch_mode(current) != "preload":
            raise Conflict(f"pool {pool_id} does not preload its bots")
        pool = await self.store.update_pool(pool_id, preloader_nonce=current.preloader_nonce + 1)
        self.set_pool(pool)
        log.info("preloader_restart_requested", pool=pool_id, nonce=pool.preloader_nonce)
        await self.push(pool_id)
        return pool

    def _known(self, pool_id: str) -> PoolRecord:
        pool = self.pools.get(pool_id)
        if pool is None:
            raise NotFound(f"pool {pool_id} does not exist")
        return pool

    async def push(self, pool_id: str) -> bool:
        live = self.live.get(pool_id)
        if live is None or not live.connected:
            return False
        try:
            await live.ws.send_bytes(encode(self.desired(pool_id)))  # type: ignore[union-attr]
        except (ConnectionError, RuntimeError) as exc:
            log.warning("push_failed", pool=pool_id, error=str(exc))
            return False
        return True

    def mark_deleted(self, bot: BotRecord) -> None:
        self._deleted_at_gen[bot.id] = self.pools[bot.pool_id].generation

    # -- agents -------------------------------------------------------------------------

    def verify_hello(self, hello: Hello) -> bool:
        pool = self.pools.get(hello.pool_id)
        return pool is not None and hmac.compare_digest(hash_token(hello.token), pool.token_hash)

    async def attach(self, hello: Hello, ws: web.WebSocketResponse) -> None:
        live = self.live[hello.pool_id]
        old = live.ws
        if old is not None and old is not ws and not old.closed:
            # The newest connection of a pool's agent wins; the old one is stale.
            await old.close(code=4409, message=b"replaced by a newer agent connection")
        now = time.time()
        live.ws, live.agent_version, live.connected_at, live.last_seen = ws, hello.version, now, now
        live.features = frozenset(hello.features)
        live.seq = 0  # a reconnected or restarted agent numbers its heartbeats anew
        live.bots = {s.id: s for s in hello.programs}
        orphans = [b for b in live.bots if self.bots.get(b) is None]
        if orphans:
            log.warning("orphan_bots_will_be_stopped", pool=hello.pool_id, bots=orphans)
        self.events.emit("agent_connected", pool=hello.pool_id, version=hello.version,
                         adopted=len(live.bots))  # fmt: skip
        await self.push(hello.pool_id)
        try:
            # A restarted container may have a new address on its network: look again.
            await self.runtime.inspect(hello.pool_id)
        except RuntimeFailure as exc:
            log.warning("pool_inspect_failed", pool=hello.pool_id, error=str(exc))

    def detach(self, pool_id: str, ws: web.WebSocketResponse) -> None:
        live = self.live.get(pool_id)
        if live is not None and live.ws is ws:
            live.ws = None
            live.disconnected_at = time.time()
            log.warning("agent_disconnected", pool=pool_id)
            self.events.emit("agent_disconnected", pool=pool_id)
            self.alarm.ring()

    async def heartbeat(self, pool_id: str, hb: Heartbeat) -> None:
        live = self.live.get(pool_id)
        if live is None:
            return  # the pool was just removed; its connection is closing
        if hb.seq <= live.seq:
            return  # a replayed or reordered frame
        previous = live.bots
        live.bots = {s.id: s for s in hb.bots}
        live.seq, live.acked_gen, live.stats, live.last_seen = hb.seq, hb.gen, hb.pool, time.time()
        if live.preloader != hb.preloader:
            log.info("preloader_state", pool=pool_id, state=hb.preloader, was=live.preloader)
            live.preloader = hb.preloader
        for bot_id, status in live.bots.items():
            before = previous.get(bot_id)
            if before is None or before.state != status.state:
                record = self.bots.get(bot_id)  # None for an orphan: admins only see it
                self.events.emit("bot_state", pool=pool_id, bot=bot_id, reason=status.state,
                                 user=record.user_id if record else None,
                                 was=before.state if before else None)  # fmt: skip
                if status.state in DIED:
                    self.alarm.ring()
        if self._deleted_at_gen:
            await self.finalize_deletions(pool_id, confirmed_gen=hb.gen)
        # Taking the condition's lock costs more than the rest of a heartbeat: only when
        # someone waits for a change (a delete awaiting its agent's confirmation).
        if self._waiters:
            async with self.changed:
                self.changed.notify_all()

    async def finalize_deletions(self, pool_id: str, confirmed_gen: int | None = None) -> None:
        """Free the slots of deleted bots that their agent no longer runs.

        confirmed_gen None means the pool's runtime is gone: nothing of it runs anywhere.
        """
        live = self.live.get(pool_id)
        # Only bots awaiting deletion are looked at: this runs on every heartbeat.
        pending = [self.bots[b] for b in self._deleted_at_gen if self.bots[b].pool_id == pool_id]
        for bot in pending:
            gone = confirmed_gen is None or (
                confirmed_gen >= self._deleted_at_gen.get(bot.id, 0)
                and live is not None
                and bot.id not in live.bots
            )
            if gone:
                pool = await self.store.remove_bot(bot.id)
                self.forget_bot(bot.id)
                self.set_pool(pool)
                log.info("bot_deleted", bot=bot.id, pool=pool_id)
                if pool.legacy_of == bot.id and pool.used == 0:
                    # One container per bot: it goes with its bot, in the background (a
                    # container takes up to STOP_TIMEOUT to stop; this runs per heartbeat).
                    task = asyncio.create_task(self.remove_empty(pool))
                    self._removals.add(task)
                    task.add_done_callback(self._removals.discard)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (bounded) until predicate holds after some heartbeat; True if it did."""
        self._waiters += 1
        try:
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
                except TimeoutError:
                    return predicate()
            return True
        finally:
            self._waiters -= 1

    async def close_agents(self) -> None:
        for live in self.live.values():
            if live.ws is not None:
                await live.ws.close(code=1001, message=b"controller shutting down")

    async def request_log(self, pool_id: str, bot_id: str, max_bytes: int) -> bytes | None:
        """The tail of a bot's log, asked of its agent; None when the agent is not connected."""
        live = self.live.get(pool_id)
        if live is None or live.ws is None or live.ws.closed:
            return None
        request_id = next(self._request_ids)
        future: asyncio.Future[LogResponse] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = future
        try:
            await live.ws.send_bytes(encode(LogRequest(request_id, bot_id, max_bytes)))
            response = await asyncio.wait_for(future, 10)
        except (TimeoutError, ConnectionError, RuntimeError):
            raise BotUnavailable(f"agent of {pool_id} did not answer") from None
        finally:
            self._requests.pop(request_id, None)
        if response.error:
            raise BotUnavailable(f"log not available: {response.error}")
        return response.data

    def log_response(self, response: LogResponse) -> None:
        future = self._requests.get(response.id)
        if future is not None and not future.done():
            future.set_result(response)

    def runtime_event(self, pool_id: str, action: str) -> None:
        """The runtime saw the pool die: suspect at once, until its agent connects again."""
        live = self.live.get(pool_id)
        if live is None:
            log.warning("runtime_event_for_unknown_pool", pool=pool_id, action=action)
            return
        live.runtime_event, live.runtime_event_at = action, time.time()
        log.warning("pool_died", pool=pool_id, action=action)
        self.events.emit("pool_died", pool=pool_id, reason=action)
        self.alarm.ring()

    def is_suspect(self, pool_id: str) -> bool:
        live = self.live.get(pool_id)
        if live is None or not live.connected:
            return True
        # A death the runtime reported is cleared by any later word from the agent: an
        # oom-killed bot inside a living container does not silence the pool.
        if live.runtime_event_at > max(live.connected_at, live.last_seen):
            return True
        return time.time() - live.last_seen > self.pool_grace
