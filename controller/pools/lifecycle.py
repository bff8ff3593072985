"""Pools' runtimes and the changes that follow what agents report: creating a pool's
runtime (once, cleaning up after a failed creation), making a lost one anew, adopting
what the runtime runs at start-up, removing empty pools, finishing deletions, and the
pool-wide desired-state changes (launch mode, preloader restart).

Each record change is a store write whose Change the registry applies; slow runtime
work (a container stopping) runs outside the lock, so it holds up no other pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import structlog

from controller.errors import Conflict, NotFound, PoolExists, RuntimeFailure
from controller.pools.config import PoolsConfig, pool_backup_dir
from controller.pools.live import hash_token
from controller.pools.registry import PoolRegistry
from controller.pools.sessions import HeartbeatReport
from controller.records import PoolRecord
from controller.runtimes import PoolLaunch, PoolRuntime, RuntimeState
from controller.store.store import Store

log = structlog.get_logger("controller.pools")


class PoolLifecycle:
    def __init__(
        self, store: Store, runtime: PoolRuntime, registry: PoolRegistry, config: PoolsConfig
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.registry = registry
        self.config = config
        self.unknown_pools: list[str] = []  # the runtime's pools the store does not know
        self._creating: dict[str, asyncio.Task[None]] = {}
        self._retirements: dict[str, asyncio.Task[None]] = {}  # removals under way
        # Pools whose failed creation left something that could not be discarded then: it
        # is discarded before the next creation of that pool.
        self._leftovers: set[str] = set()
        self._removals: set[asyncio.Task[bool]] = set()
        # Pools whose runtime a rolling upgrade is replacing (controller/upgrade/): the
        # health monitor leaves them alone meanwhile, as it does a pool being made.
        self.upgrading: set[str] = set()
        # Runtimes made or removed so far: the image census asks again after each one,
        # whatever its age (controller/upgrade/census.py).
        self.runtime_changes = 0
        # Serializes making runtimes, and marking pools removing: no pool is marked while
        # it is being made, and none is made once marked. (The removal itself runs outside
        # it: a removed pool keeps its number until its runtime is gone.)
        self.lock = asyncio.Lock()

    async def load(self) -> None:
        self.registry.load(*await self.store.load())

    # -- making runtimes ------------------------------------------------------------------

    def new_token(self) -> tuple[str, str]:
        token = secrets.token_hex(32)
        return token, hash_token(token)

    def launch(self, pool: PoolRecord, token: str, image: str = "") -> PoolLaunch:
        market_data = self.config.market_data_env(pool.num)
        if market_data.get("MARKET_DATA_PROXY") == "off" and self.config.market_data_base_port:
            log.warning("pool_without_market_data_proxy", pool=pool.id,
                        reason="its proxy's port would reach POOL_BASE_PORT")  # fmt: skip
        backup_dir = pool_backup_dir(self.config.backups_dir, pool.id)
        backup = {"BACKUP_DIR": str(backup_dir)} if backup_dir else {}
        if backup_dir is not None and self.config.backup_transport == "controller":
            # Nothing of BACKUP_DIR in the pool: its agent sends its points over the network.
            backup, backup_dir = {"BACKUP_TRANSPORT": "controller"}, None
        return PoolLaunch(
            pool_id=pool.id, capacity=pool.capacity, port_start=pool.port_start,
            token=token, controller_url=self.config.controller_url,
            agent_env={**self.config.agent_env, **market_data, **backup}, image=image,
            backup_dir=backup_dir, created_at=pool.created_at,
        )  # fmt: skip

    async def create_runtime(self, pool: PoolRecord, token: str, image: str = "") -> None:
        """Create the pool's runtime once (of `image`, by default the configured one);
        concurrent callers wait for the same creation."""
        task = self._creating.get(pool.id)
        if task is None:
            task = asyncio.create_task(self._locked_create(self.launch(pool, token, image)))
            self._creating[pool.id] = task
            task.add_done_callback(lambda _t: self._creating.pop(pool.id, None))
        await asyncio.shield(task)

    def creating(self, pool_id: str) -> bool:
        """Its runtime is being made (or replaced by an upgrade): nothing to judge yet."""
        return pool_id in self._creating or pool_id in self.upgrading

    async def _locked_create(self, launch: PoolLaunch) -> None:
        pool_id = launch.pool_id
        async with self.lock:
            if pool_id in self.registry.retiring:
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
            finally:
                self.runtime_changes += 1

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

    async def recreate(self, pool: PoolRecord, image: str = "") -> None:
        """A pool whose runtime is missing gets a new one (of `image`, by default the
        configured one), with a new token."""
        token, token_hash = self.new_token()
        await self.registry.apply(await self.store.set_pool_token(pool.id, token_hash))
        await self.create_runtime(pool, token, image)

    async def adopt(self) -> list[str]:
        """Match the runtime's pools with the store's; return the ids it has that we don't.

        Moves cut short by a crash are recovered before (controller/moves/recovery.py)."""
        found = await self.runtime.list()
        known = self.registry.pools.keys() | self.registry.retiring.keys()
        unknown = self.unknown_pools = [p for p in found if p not in known]
        for pool_id in unknown:
            log.warning("unknown_pool_left_alone", pool=pool_id)
        # What removed pools left on the host (their cgroup parents): not a pool of ours nor
        # a container the runtime has, ours or not.
        await self.runtime.sweep(known | set(found))
        for pool in list(self.registry.pools.values()):
            if pool.abandoned:  # left on a lost node: the monitor takes its failover up again
                log.warning("pool_abandoned_left_alone", pool=pool.id)
                continue
            state = await self.runtime.inspect(pool.id)
            bots = self.registry.bots_in(pool.id)
            log.info("pool_adopted", pool=pool.id, state=state, bots=len(bots))
            # An unreachable pool is the monitor's: replaced once its agent has fenced.
            if state not in (RuntimeState.RUNNING, RuntimeState.UNREACHABLE) and bots:
                try:
                    await (self.recreate(pool) if state == RuntimeState.MISSING
                           else self.runtime.restart(pool.id))  # fmt: skip
                except RuntimeFailure as exc:
                    log.error("pool_start_failed", pool=pool.id, error=str(exc))
        return unknown

    # -- removing pools --------------------------------------------------------------------

    async def remove_empty(self, pool: PoolRecord) -> bool:
        """Remove a pool without bots: its agent's connection, its runtime (its directory's
        leftovers go to the archive), then its record. False if it gained a bot meanwhile.

        Only marking it removing waits for the lock; the slow part (a container stopping)
        holds up no other pool's creation."""
        async with self.lock:
            change = await self.store.retire_pool(pool.id)
            if not change:
                return False
            live = self.registry.live.get(pool.id)
            await self.registry.apply(change)
        if live is not None and live.ws is not None:
            await live.ws.close(code=4410, message=b"pool removed")
        await self.finish_removal(change.retired_pools[0])
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
        try:
            await self.runtime.remove(pool.id, bots=len(self.registry.bots_in(pool.id)),
                                      abandoned=pool.abandoned)  # fmt: skip
        finally:
            self.runtime_changes += 1
        await self.registry.apply(await self.store.remove_pool(pool.id))
        log.info("pool_removed", pool=pool.id, legacy_of=pool.legacy_of)

    async def cleanup(self, grace: float) -> int:
        """Remove the pools empty for `grace` seconds, and finish the removals a failure or
        a restart cut short; returns how many pools went."""
        removed = 0
        await self.runtime.sweep()  # what a removal found busy before
        for pool in list(self.registry.retiring.values()):
            await self.finish_removal(pool)
            removed += 1
        now = time.time()
        for pool in list(self.registry.pools.values()):
            empty_since = pool.emptied_at or pool.created_at
            if pool.used or pool.id in self.upgrading or now - empty_since < grace:
                continue
            if await self.remove_empty(pool):
                removed += 1
                log.info("pool_cleaned_up", pool=pool.id)
        return removed

    # -- acting on what agents report ----------------------------------------------------

    async def settle(self, report: HeartbeatReport) -> None:
        """What follows a heartbeat: deleted bots its agent no longer runs are forgotten."""
        if self.registry.deleting:
            await self.finish_deletions(report.pool_id, report.applied_gen)

    async def finish_deletions(self, pool_id: str, confirmed_gen: int | None = None) -> None:
        """Free the slots of deleted bots that their agent no longer runs.

        confirmed_gen None means the pool's runtime is gone: nothing of it runs anywhere.
        """
        live = self.registry.live.get(pool_id)
        bots, deleting = self.registry.bots, self.registry.deleting
        # Only bots awaiting deletion are looked at: this runs on every heartbeat.
        pending = [b for b in deleting if bots[b].pool_id == pool_id]
        for bot_id in pending:
            gone = confirmed_gen is None or (
                confirmed_gen >= deleting.get(bot_id, 0)
                and live is not None
                and bot_id not in live.bots
            )
            if not gone:
                continue
            change = await self.store.remove_bot(bot_id)
            await self.registry.apply(change)
            log.info("bot_deleted", bot=bot_id, pool=pool_id)
            pool = change.pool(pool_id)
            if pool.legacy_of == bot_id and pool.used == 0:
                # One container per bot: it goes with its bot, in the background (a
                # container takes up to STOP_TIMEOUT to stop; this runs per heartbeat).
                task = asyncio.create_task(self.remove_empty(pool))
                self._removals.add(task)
                task.add_done_callback(self._removals.discard)

    # -- pool-wide desired state ------------------------------------------------------

    async def set_launch(self, pool_id: str, launch: str | None) -> PoolRecord:
        """Preload or exec this pool's bots (None: the default); its agent restarts them."""
        self._known(pool_id)
        change = await self.store.update_pool(pool_id, launch=launch)
        await self.registry.apply(change)
        pool = change.pool(pool_id)
        log.info("pool_launch_set", pool=pool_id, launch=launch,
                 effective=self.registry.launch_mode(pool))  # fmt: skip
        return pool

    async def set_market_data(self, pool_id: str, on: bool | None) -> PoolRecord:
        """Turn this pool's market-data proxy on or off (None: MARKET_DATA_PROXY's choice);
        its agent restarts its running bots with their new configs. Conflict for a connected
        agent from before the switch, which would ignore it."""
        self._known(pool_id)
        live = self.registry.live.get(pool_id)
        if live is not None and live.connected and "market_data_switch" not in live.features:
            raise Conflict(
                f"the agent of {pool_id} ({live.agent_version}) cannot switch its market-data "
                "proxy; upgrade that pool to the current pool image first"
            )
        change = await self.store.update_pool(pool_id, market_data=on)
        await self.registry.apply(change)
        log.info("pool_market_data_set", pool=pool_id, on=on)
        return change.pool(pool_id)

    async def restart_preloader(self, pool_id: str) -> PoolRecord:
        """Have the agent stop the pool's bots, restart its preloader, start them again."""
        current = self._known(pool_id)
        if self.registry.launch_mode(current) != "preload":
            raise Conflict(f"pool {pool_id} does not preload its bots")
        nonce = current.preloader_nonce + 1
        change = await self.store.update_pool(pool_id, preloader_nonce=nonce)
        await self.registry.apply(change)
        log.info("preloader_restart_requested", pool=pool_id, nonce=nonce)
        return change.pool(pool_id)

    def _known(self, pool_id: str) -> PoolRecord:
        pool = self.registry.pools.get(pool_id)
        if pool is None:
            raise NotFound(f"pool {pool_id} does not exist")
        return pool
