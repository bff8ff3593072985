"""Draining a Swarm node: every pool on it moves to other nodes, one pool at a time.

The node is first labelled (DRAIN_LABEL), so placement picks it for no new pool, its
pools included. Then, pool by pool, the upgrade's `move` method (controller/upgrade/
moving.py) makes a fresh pool (placed on another node) and moves each bot into it with the
transfer every move takes (held and confirmed stopped, staged, relocated, landed,
released, verified through its API): never two copies of a bot, each with its directory,
its trade database included. The emptied pool is removed, its service with it. A pool
without bots is removed at once; a service the store does not know is left alone (and
reported). A bot that does not answer in its fresh pool goes back, and the drain stops
there (failed), the node still labelled.

`drain_plan` decides (pure); `NodeDrain` acts, under the moves' lock (no evacuation,
migration or upgrade beside it) taken for one pool at a time (a failover of a lost node's
pool goes in between), with an injected clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from controller.errors import Conflict, FtpoolError, NotFound
from controller.moves.guard import MoveGuard
from controller.pools.manager import PoolManager
from controller.runtimes.swarm import SwarmRuntime
from controller.runtimes.swarm_nodes import Node
from controller.upgrade.moving import PoolMove
from controller.upgrade.state import PoolUpgrade

log = structlog.get_logger("controller.moves")
BOT_TIMEOUT = 180.0  # for a moved bot to answer in its fresh pool


@dataclass(frozen=True, slots=True)
class DrainPlan:
    move: tuple[str, ...]  # pools with bots, in the order they move (fewest bots first)
    remove: tuple[str, ...]  # the store's pools without bots: removed
    unknown: tuple[str, ...]  # services the store does not know: left alone

    @property
    def done(self) -> bool:
        return not self.move and not self.remove


def drain_plan(
    on_node: Iterable[str], bots: Mapping[str, int], failed: Collection[str] = ()
) -> DrainPlan:
    """What is left to do for the pools on a node (`bots`: the store's pools → their
    number of bots; `failed`: pools whose move failed in this drain, not tried again)."""
    on_node = set(on_node)
    known = [p for p in on_node if p in bots and p not in failed]
    return DrainPlan(
        move=tuple(sorted((p for p in known if bots[p]), key=lambda p: (bots[p], p))),
        remove=tuple(sorted(p for p in known if not bots[p])),
        unknown=tuple(sorted(p for p in on_node if p not in bots)),
    )


@dataclass(slots=True)
class DrainStatus:
    node: str
    started_at: float  # the injected clock's
    state: str = "running"  # running, done (no pool of the store left), failed
    finished_at: float | None = None
    moved: list[dict[str, Any]] = field(default_factory=list)  # pool, to, bots, seconds
    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # pools still on the node at the end
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def no_step(_step: str) -> None:
    """A drain keeps no per-step record (the upgrade's is in its run)."""


class NodeDrain:
    def __init__(
        self,
        pools: PoolManager,
        mover: PoolMove,
        guard: MoveGuard,
        clock: Callable[[], float] = time.time,
        bot_timeout: float = BOT_TIMEOUT,
    ) -> None:
        self.pools = pools
        self.mover = mover
        self.guard = guard
        self.clock = clock
        self.bot_timeout = bot_timeout
        self.drains: dict[str, DrainStatus] = {}  # node id → its last drain
        self._tasks: set[asyncio.Task[None]] = set()

    def _swarm(self) -> SwarmRuntime:
        runtime = self.pools.runtime
        if not isinstance(runtime, SwarmRuntime):
            raise Conflict(f"the {runtime.name} runtime has no nodes to drain")
        return runtime

    async def _node(self, runtime: SwarmRuntime, name: str) -> Node:
        """The node `name` (its id or hostname) names; Conflict while a drain of it runs."""
        nodes, _ = await runtime.node_census()
        found = [n for n in nodes if n.id == name] or [n for n in nodes if n.hostname == name]
        if not found:
            raise NotFound(f"the swarm has no node {name}")
        if len(found) > 1:
            raise Conflict(f"{len(found)} nodes are named {name}; give the node's id")
        running = self.drains.get(found[0].id)
        if running is not None and running.state == "running":
            raise Conflict(f"node {name} is being drained")
        return found[0]

    async def undrain(self, name: str) -> str:
        """Take the drain label off the node `name` (a drain that failed, or one from before
        a controller restart: drains are kept in memory only), so placement picks it again;
        its id. Its last drain, if any, stays to be seen."""
        runtime = self._swarm()
        node = await self._node(runtime, name)
        await runtime.mark_drained(node.id, False)
        log.info("node_undrained", node=node.id, hostname=node.hostname)
        return node.id

    async def start(self, name: str) -> DrainStatus:
        """Label the node `name` (its id or hostname) and start moving its pools away."""
        runtime = self._swarm()
        node = await self._node(runtime, name)
        if self.guard.lock.locked():
            raise Conflict("bots are being moved (a migration, upgrade or drain); try later")
        await runtime.mark_drained(node.id)
        status = self.drains[node.id] = DrainStatus(node.id, self.clock())
        task = asyncio.create_task(self._drain(runtime, status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("node_drain_started", node=node.id, hostname=node.hostname)
        return status

    async def plan(self, runtime: SwarmRuntime, node_id: str, failed: set[str]) -> DrainPlan:
        _, pools_on = await runtime.node_census()
        registry = self.pools.registry
        bots = {pool_id: len(registry.bots_in(pool_id)) for pool_id in registry.pools}
        return drain_plan(pools_on.get(node_id, []), bots, failed)

    async def _drain(self, runtime: SwarmRuntime, status: DrainStatus) -> None:
        failed: set[str] = set()
        try:
            plan = await self.plan(runtime, status.node, failed)
            # Bounded: each round removes or moves one pool, or marks it failed. The moves'
            # lock is taken per pool: a failover of a lost node's pool waits for one pool's
            # move, not for the whole drain.
            for _ in range(len(plan.move) + len(plan.remove) + 1):
                async with self.guard.lock:
                    plan = await self.plan(runtime, status.node, failed)
                    if plan.done or failed:
                        break
                    await self._one(status, plan, failed)
                    plan = await self.plan(runtime, status.node, failed)
            status.left = sorted((*plan.move, *plan.remove, *plan.unknown, *failed))
            status.state = "done" if plan.done and not failed else "failed"
        except Exception as exc:  # any failure ends it (else "running" for ever: every later
            # drain of the node refused); a cancellation (shutdown) is no Exception
            status.state, status.error = "failed", str(exc) or type(exc).__name__
            if not isinstance(exc, (FtpoolError, OSError)):
                log.exception("node_drain_crashed", node=status.node)
        finally:
            status.finished_at = self.clock()
        log.info("node_drain_ended", node=status.node, state=status.state, left=status.left,
                 error=status.error or None)  # fmt: skip

    async def _one(self, status: DrainStatus, plan: DrainPlan, failed: set[str]) -> None:
        """Remove the first empty pool, or move the first pool with bots."""
        registry = self.pools.registry
        if plan.remove:
            pool_id = plan.remove[0]
            if await self.pools.lifecycle.remove_empty(registry.pools[pool_id]):
                status.removed.append(pool_id)
            else:
                failed.add(pool_id)  # it gained a bot meanwhile: the next drain moves it
            return
        pool_id, started = plan.move[0], self.clock()
        entry = PoolUpgrade(pool_id, "", "", len(registry.bots_in(pool_id)), method="move")
        try:
            with self.guard.pool_moving(pool_id):
                await self.mover.move_all(entry, None, self.bot_timeout, no_step)
        except (FtpoolError, OSError) as exc:
            failed.add(pool_id)
            status.error = f"{pool_id}: {exc}"
            log.error("node_drain_pool_failed", node=status.node, pool=pool_id, error=str(exc))
            return
        status.moved.append({"pool": pool_id, "to": entry.to_pool, "bots": entry.bots,
                             "seconds": round(self.clock() - started, 2)})  # fmt: skip

    async def shutdown(self) -> None:
        """Cancel a drain in flight (the moves' crash recovery releases a held bot)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
