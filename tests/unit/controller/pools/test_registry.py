"""The registry: the one in-memory view, written only by applying a store write's change;
and a heartbeat, which only records live state, after which the lifecycle acts."""

from __future__ import annotations

import dataclasses

import pytest

from common.protocol import BotStatus, Heartbeat, PoolStats, decode
from controller.store.change import Change
from tests.unit.controller.apps import AgentSocket, Api, connect


def sent(api: Api, pool_id: str = "pool-1") -> list[int]:
    """The generations of the desired states pushed to the pool's agent so far."""
    ws = api.controller.pools.registry.live[pool_id].ws
    assert isinstance(ws, AgentSocket)
    return [decode(frame).gen for frame in ws.frames]  # type: ignore[union-attr]


async def test_the_view_is_read_only_to_everyone_but_the_registry(api: Api) -> None:
    await api.provision(instanceId="b1")
    registry = api.controller.pools.registry
    with pytest.raises(TypeError):
        registry.bots["b2"] = registry.bots["b1"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del registry.pools["pool-1"]  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.pools["pool-1"].generation = 99  # type: ignore[misc]


async def test_a_change_is_pushed_when_the_desired_state_moved_on(api: Api) -> None:
    await api.provision(instanceId="b1")
    connect(api)
    registry, store = api.controller.pools.registry, api.controller.pools.store
    gen = registry.pools["pool-1"].generation
    await registry.apply(await store.update_bot("b1", nonce=1))
    assert sent(api) == [gen + 1] and registry.bots["b1"].nonce == 1
    await registry.apply(await store.set_pool_token("pool-1", "new-hash"))
    assert sent(api) == [gen + 1]  # the same desired state: nothing to tell the agent
    assert registry.pools["pool-1"].token_hash == "new-hash"
    await registry.apply(await store.update_bot("b1", nonce=2))
    assert sent(api) == [gen + 1, gen + 2]
    assert registry.pools["pool-1"].generation == gen + 2


async def test_a_bot_moved_to_another_port_gets_its_config_anew(api: Api) -> None:
    await api.provision(instanceId="b1")
    registry = api.controller.pools.registry
    before = registry.desired("pool-1").bots[0].files["config.json"]
    moved = dataclasses.replace(registry.bots["b1"], slot=5, port=21005)
    await registry.apply(Change(bots=(moved,)))
    after = registry.desired("pool-1").bots[0].files["config.json"]
    assert b"21000" in before and b"21005" in after


async def test_a_heartbeat_records_live_state_and_the_lifecycle_finishes_deletions(
    api: Api,
) -> None:
    await api.provision(instanceId="b1")
    assert (await api.call("DELETE", "/api/bots/b1"))[0] == 202  # no agent to confirm yet
    connect(api)
    pools = api.controller.pools
    gen = pools.registry.pools["pool-1"].generation
    assert pools.registry.deleting == {"b1": gen}
    report = pools.sessions.record("pool-1", Heartbeat(1, gen, [], PoolStats()))
    assert report is not None and (report.pool_id, report.applied_gen) == ("pool-1", gen)
    assert "b1" in pools.registry.bots  # recording changes live state only
    assert pools.sessions.record("pool-1", Heartbeat(1, gen, [], PoolStats())) is None  # replay
    await pools.lifecycle.settle(report)
    assert "b1" not in pools.registry.bots and not pools.registry.deleting
    (stored,), bots = await pools.store.load()
    assert bots == [] and stored == pools.registry.pools["pool-1"]


async def test_a_heartbeat_reports_the_bots_whose_state_changed(api: Api) -> None:
    await api.provision(instanceId="b1")
    await api.provision(instanceId="b2")
    connect(api)
    sessions = api.controller.pools.sessions
    running = [BotStatus("b1", "RUNNING"), BotStatus("b2", "RUNNING")]  # type: ignore[arg-type]
    first = sessions.record("pool-1", Heartbeat(1, 1, running, PoolStats()))
    assert first is not None and first.changed == ("b1", "b2")
    exited = [BotStatus("b1", "RUNNING"), BotStatus("b2", "EXITED")]  # type: ignore[arg-type]
    second = sessions.record("pool-1", Heartbeat(2, 1, exited, PoolStats()))
    assert second is not None and second.changed == ("b2",)
