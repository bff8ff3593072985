"""The registry: the controller's one in-memory view of the store's pools and bots, with
each pool's live state, and its only writer.

A store write returns its Change; `apply` takes it into the view as the store has it and
pushes the pools whose desired state moved on (their generation went up) to their agents.
Everyone else reads the view through read-only mappings. Desired state is always built
whole from the records, so a push can be repeated at any time.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

import structlog

from common.protocol import BotStatus, Desired, encode
from controller.pools.desired import DesiredStates
from controller.pools.live import PoolLive
from controller.records import BotRecord, PoolRecord
from controller.runtimes import PoolRuntime
from controller.store.change import Change

log = structlog.get_logger("controller.pools")


class PoolRegistry:
    def __init__(self, runtime: PoolRuntime, desired_states: DesiredStates) -> None:
        self._runtime = runtime  # told each pool's container name
        self.desired_states = desired_states
        self._pools: dict[str, PoolRecord] = {}
        self._bots: dict[str, BotRecord] = {}
        self._live: dict[str, PoolLive] = {}
        self._by_pool: dict[str, set[str]] = {}
        # Pools marked removing in the store: out of the view, their runtime going (slow),
        # their number still taken.
        self._retiring: dict[str, PoolRecord] = {}
        # Bots being deleted, with the generation of their pool that no longer has them:
        # gone once their agent applied it and no longer runs them (pools/lifecycle.py).
        self._deleting: dict[str, int] = {}
        self.pools = MappingProxyType(self._pools)
        self.bots = MappingProxyType(self._bots)
        self.live = MappingProxyType(self._live)
        self.retiring = MappingProxyType(self._retiring)
        self.deleting = MappingProxyType(self._deleting)

    # -- writing the view ------------------------------------------------------------

    def load(self, pools: Iterable[PoolRecord], bots: Iterable[BotRecord]) -> None:
        """Records as the store has them (at start-up); nothing is pushed."""
        pools = list(pools)
        self._take(Change(pools=tuple(p for p in pools if not p.removing), bots=tuple(bots),
                          retired_pools=tuple(p for p in pools if p.removing)))  # fmt: skip

    async def apply(self, change: Change) -> None:
        """Take a store write's change into the view; push the pools whose desired state
        moved on."""
        for pool_id in self._take(change):
            await self.push(pool_id)

    def _take(self, change: Change) -> list[str]:
        moved_on = []
        for pool in change.pools:
            before = self._pools.get(pool.id)
            if before is None or before.generation != pool.generation:
                moved_on.append(pool.id)
            self._pools[pool.id] = pool
            self._runtime.name_pool(pool.id, pool.container_name)
            self._live.setdefault(pool.id, PoolLive())
            self._by_pool.setdefault(pool.id, set())
        for bot in change.bots:
            self._set_bot(bot)
        for bot_id in change.removed_bots:
            self._forget_bot(bot_id)
        for pool in change.retired_pools:
            self._forget_pool(pool.id)
            self._retiring[pool.id] = pool
            self._runtime.name_pool(pool.id, pool.container_name)
        for pool_id in change.removed_pools:
            self._forget_pool(pool_id)
            self._retiring.pop(pool_id, None)
        return [p for p in moved_on if p in self._pools]

    def _set_bot(self, bot: BotRecord) -> None:
        before = self._bots.get(bot.id)
        if before is not None and before.pool_id != bot.pool_id:
            self._by_pool.get(before.pool_id, set()).discard(bot.id)
        if before is not None and before.port != bot.port:
            self.desired_states.forget(bot.id)  # its config names its port
        self._bots[bot.id] = bot
        self._by_pool.setdefault(bot.pool_id, set()).add(bot.id)
        if bot.deleting and bot.id not in self._deleting:
            self._deleting[bot.id] = self._pools[bot.pool_id].generation

    def _forget_bot(self, bot_id: str) -> None:
        bot = self._bots.pop(bot_id, None)
        if bot is not None:
            self._by_pool.get(bot.pool_id, set()).discard(bot_id)
        self.desired_states.forget(bot_id)
        self._deleting.pop(bot_id, None)

    def _forget_pool(self, pool_id: str) -> None:
        self._pools.pop(pool_id, None)
        self._live.pop(pool_id, None)
        self._by_pool.pop(pool_id, None)

    # -- reading it ---------------------------------------------------------------------

    def bots_in(self, pool_id: str) -> list[BotRecord]:
        return sorted((self._bots[b] for b in self._by_pool.get(pool_id, ())),
                      key=lambda b: b.port)  # fmt: skip

    def status_of(self, bot: BotRecord) -> BotStatus | None:
        live = self._live.get(bot.pool_id)
        return live.bots.get(bot.id) if live else None

    def desired_applied(self, pool_id: str) -> bool:
        """Whether the pool's agent has applied the pool's latest desired state."""
        live, pool = self._live.get(pool_id), self._pools.get(pool_id)
        return live is None or pool is None or live.acked_gen >= pool.generation

    def desired(self, pool_id: str) -> Desired:
        return self.desired_states.build(self._pools[pool_id], self.bots_in(pool_id))

    def launch_mode(self, pool: PoolRecord) -> str:
        return self.desired_states.launch_mode(pool)

    async def push(self, pool_id: str) -> bool:
        """Send the pool's desired state to its agent, if it is connected."""
        live = self._live.get(pool_id)
        if live is None or not live.connected:
            return False
        try:
            await live.ws.send_bytes(encode(self.desired(pool_id)))  # type: ignore[union-attr]
        except (ConnectionError, RuntimeError) as exc:
            log.warning("push_failed", pool=pool_id, error=str(exc))
            return False
        return True
