"""A node's drain: the plan (pure) and the loop that moves pools one at a time."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import pytest

from controller.errors import Conflict, NotFound
from controller.moves.drain import NodeDrain, drain_plan
from controller.moves.guard import MoveGuard
from controller.moves.transfer import StepFailed
from controller.runtimes.swarm import SwarmRuntime
from controller.runtimes.swarm_nodes import Node


def test_pools_with_bots_move_fewest_bots_first_empty_ones_go_unknown_ones_stay():
    plan = drain_plan(["p3", "p1", "p2", "x", "p4"], {"p1": 3, "p2": 1, "p3": 1, "p4": 0, "p9": 2})
    assert plan.move == ("p2", "p3", "p1")  # then by id
    assert plan.remove == ("p4",)
    assert plan.unknown == ("x",)
    assert not plan.done


def test_a_failed_pool_is_not_tried_again_and_an_empty_node_is_done():
    assert drain_plan(["p1"], {"p1": 2}, failed={"p1"}).done
    assert drain_plan([], {"p1": 2}).done
    assert drain_plan(["x"], {}).done  # only what the store does not know: left alone


class FakeSwarm(SwarmRuntime):
    """The swarm as the drain sees it: nodes, and which pool is on which."""

    def __init__(self, pools_on: dict[str, list[str]]) -> None:
        self.pools_on = pools_on
        self.marked: list[str] = []
        self.unmarked: list[str] = []

    async def node_census(self):
        nodes = [Node(i, f"host-{i}", "ready", "active", 1 << 30, "10.0.0.1", {}) for i in "ab"]
        return nodes, {k: list(v) for k, v in self.pools_on.items()}

    async def mark_drained(self, node_id: str, drained: bool = True) -> None:
        (self.marked if drained else self.unmarked).append(node_id)


class FakeMover:
    """Moves a pool's bots to a fresh pool on node b (the move's outcome, not its steps)."""

    def __init__(self, swarm: FakeSwarm, registry: FakeRegistry, fail: set[str]) -> None:
        self.swarm, self.registry, self.fail = swarm, registry, fail
        self.moved: list[str] = []
        self.running = 0

    async def move_all(self, entry, image, timeout, step) -> None:
        assert image is None  # the configured image
        self.running += 1
        assert self.running == 1  # one pool at a time
        await asyncio.sleep(0)
        self.running -= 1
        if entry.pool in self.fail:
            raise StepFailed(f"a bot of {entry.pool} did not answer; it is back")
        fresh = f"{entry.pool}-new"
        entry.to_pool = fresh
        self.registry.bots[fresh] = self.registry.bots.pop(entry.pool)
        self.swarm.pools_on["a"].remove(entry.pool)
        self.swarm.pools_on["b"].append(fresh)
        self.moved.append(entry.pool)


class FakeRegistry:
    def __init__(self, bots: dict[str, int]) -> None:
        self.bots = bots

    @property
    def pools(self) -> dict[str, object]:
        return {p: SimpleNamespace(id=p) for p in self.bots}

    def bots_in(self, pool_id: str) -> list[str]:
        return ["bot"] * self.bots[pool_id]


def drain_of(pools_on, bots, fail=()) -> tuple[NodeDrain, FakeSwarm, FakeMover]:
    swarm, registry = FakeSwarm(pools_on), FakeRegistry(bots)
    removed: list[str] = []

    async def remove_empty(pool) -> bool:
        registry.bots.pop(pool.id)
        swarm.pools_on["a"].remove(pool.id)
        removed.append(pool.id)
        return True

    pools = SimpleNamespace(runtime=swarm, registry=registry,
                            lifecycle=SimpleNamespace(remove_empty=remove_empty))  # fmt: skip
    mover = FakeMover(swarm, registry, set(fail))
    ticks = iter(range(100))
    return NodeDrain(pools, mover, MoveGuard(), clock=lambda: float(next(ticks))), swarm, mover


async def finished(drain: NodeDrain) -> None:
    await asyncio.gather(*drain._tasks)


async def test_every_pool_moves_off_the_node_one_at_a_time():
    drain, swarm, mover = drain_of({"a": ["p1", "p2", "p0", "x"], "b": []},
                                   {"p1": 2, "p2": 1, "p0": 0})  # fmt: skip
    status = await drain.start("host-a")  # by hostname
    assert swarm.marked == ["a"] and status.state == "running"
    await finished(drain)
    assert mover.moved == ["p2", "p1"]
    assert status.removed == ["p0"]
    assert [(m["pool"], m["to"], m["bots"]) for m in status.moved] == [
        ("p2", "p2-new", 1), ("p1", "p1-new", 2)]  # fmt: skip
    assert all(m["seconds"] > 0 for m in status.moved)  # the injected clock's
    assert status.state == "done" and status.left == ["x"]  # a service the store does not know
    assert swarm.pools_on["b"] == ["p2-new", "p1-new"]


async def test_a_node_with_only_its_pools_ends_done():
    drain, _, _ = drain_of({"a": ["p1"], "b": []}, {"p1": 1})
    status = await drain.start("a")
    await finished(drain)
    assert status.state == "done" and status.left == [] and status.finished_at is not None


async def test_a_failed_move_stops_the_drain_with_the_rest_left():
    drain, _, mover = drain_of({"a": ["p1", "p2"], "b": []}, {"p1": 1, "p2": 2}, {"p1"})
    status = await drain.start("a")
    await finished(drain)
    assert mover.moved == [] and status.state == "failed"
    assert status.left == ["p1", "p2"] and "did not answer" in status.error


async def test_an_unknown_node_and_a_second_drain_are_refused():
    drain, _, _ = drain_of({"a": ["p1"], "b": []}, {"p1": 1})
    with pytest.raises(NotFound):
        await drain.start("nope")
    await drain.start("a")
    with pytest.raises(Conflict):
        await drain.start("a")
    await finished(drain)


async def test_a_hostname_two_nodes_share_is_refused():
    drain, swarm, _ = drain_of({"a": ["p1"], "b": []}, {"p1": 1})
    census = swarm.node_census

    async def twins():
        nodes, pools_on = await census()
        return [replace(n, hostname="twin") for n in nodes], pools_on

    swarm.node_census = twins
    with pytest.raises(Conflict, match="2 nodes are named twin"):
        await drain.start("twin")
    assert swarm.marked == []


async def test_a_runtime_without_nodes_is_refused():
    drain = NodeDrain(SimpleNamespace(runtime=SimpleNamespace(name="docker")), None, MoveGuard())
    with pytest.raises(Conflict, match="docker runtime has no nodes"):
        await drain.start("a")


async def test_a_drain_that_hits_an_unexpected_error_ends_failed_and_can_be_started_again():
    drain, _, mover = drain_of({"a": ["p1"], "b": []}, {"p1": 1})

    async def crashes(entry, image, timeout, step) -> None:
        raise KeyError("pool-9")  # a bug, say: not one of the errors a move expects

    mover.move_all = crashes
    status = await drain.start("a")
    await finished(drain)
    assert status.state == "failed" and "pool-9" in status.error
    assert status.finished_at is not None
    second = await drain.start("a")  # not refused as "being drained already"
    assert second is not status
    await finished(drain)


async def test_the_moves_lock_is_let_go_between_pools_for_a_failover():
    drain, _, mover = drain_of({"a": ["p1", "p2"], "b": []}, {"p1": 2, "p2": 1})
    order: list[str] = []
    move_all = mover.move_all

    async def failover_waits_meanwhile() -> None:
        async with drain.guard.lock:
            order.append("failover")

    async def moving(entry, image, timeout, step) -> None:
        if not order:  # a failover comes while the first pool moves: it waits for it only
            asyncio.get_running_loop().create_task(failover_waits_meanwhile())
            await asyncio.sleep(0)
        await move_all(entry, image, timeout, step)
        order.append(entry.pool)

    mover.move_all = moving
    status = await drain.start("a")
    await finished(drain)
    assert status.state == "done" and order == ["p2", "failover", "p1"]


async def test_a_node_is_undrained_by_an_admin_but_not_while_its_drain_runs():
    drain, swarm, mover = drain_of({"a": ["p1"], "b": []}, {"p1": 1}, fail={"p1"})
    gate = asyncio.Event()
    move_all = mover.move_all

    async def slow(entry, image, timeout, step) -> None:
        await gate.wait()
        await move_all(entry, image, timeout, step)

    mover.move_all = slow
    await drain.start("host-a")
    with pytest.raises(Conflict, match="being drained"):
        await drain.undrain("a")
    gate.set()
    await finished(drain)
    assert drain.drains["a"].state == "failed" and swarm.unmarked == []
    assert await drain.undrain("host-a") == "a"  # placement picks it again
    assert swarm.unmarked == ["a"] and drain.drains["a"].state == "failed"  # still shown
    # A controller restart forgets drains; the label stays, and goes the same way.
    fresh = NodeDrain(drain.pools, mover, MoveGuard())
    assert await fresh.undrain("a") == "a" and swarm.unmarked == ["a", "a"]
    with pytest.raises(NotFound):
        await fresh.undrain("nope")
