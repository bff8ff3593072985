"""Evacuation: a bot move cut short by a crash is finished first at start-up, and never
takes files from a pool that still runs. (A whole evacuation is in health/test_monitor.py:
the monitor starts it.)"""

from __future__ import annotations

from tests.unit.controller.apps import Api, ApiFactory


async def test_a_bots_directory_left_in_another_pool_is_brought_to_its_own(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api()
    await api.provision(instanceId="b1")
    await api.provision(instanceId="b2")
    runtime = api.runtime
    # b1's directory is still in pool-9 (a dead pool); b2's is where it belongs; b3 is not
    # a bot of ours.
    runtime.locations = {"b1": ["pool-9"], "b2": ["pool-1"], "b3": ["pool-9"]}
    runtime.calls.clear()
    await api.controller.evacuation.finish_interrupted()
    assert [c for c in runtime.calls if c[0] == "move"] == [("move", "b1:pool-9>pool-1")]


async def test_files_in_a_pool_that_still_runs_are_never_taken(make_api: ApiFactory) -> None:
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1")
    await api.provision(instanceId="b1")  # pool-1, which runs (as every pool the fake made)
    await api.provision(instanceId="b2")  # pool-2
    api.runtime.locations = {"b1": ["pool-1"], "b2": ["pool-1"]}  # b2's files: in pool-1
    api.runtime.calls.clear()
    await api.controller.evacuation.finish_interrupted()
    assert not [c for c in api.runtime.calls if c[0] == "move"]


async def test_a_bot_stopped_for_want_of_its_files_leaves_memory_as_the_store_has_it(
    make_api: ApiFactory,
) -> None:
    """Its stop bumps its new pool's generation in the store; the view must have that very
    generation too (it kept the one from before the stop, so the pool's agent was told an
    older generation than the store's, and a restarted controller a newer one)."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2", POOL_START_ATTEMPTS="1", POOL_GRACE="1")
    for bot_id in ("b1", "b2"):
        await api.provision(instanceId=bot_id)
    api.runtime.launches.pop("pool-1")
    api.runtime.broken.add("pool-1")
    api.runtime.unmovable.add("b2")
    await api.controller.monitor.evaluate()  # one failed start
    api.clock.advance(0.01)
    await api.controller.monitor.evaluate()  # evacuated into pool-2, b2 stopped
    registry = api.controller.pools.registry
    assert registry.bots["b2"].run == "stopped"
    stored, _bots = await api.controller.pools.store.load()
    assert {p.id: p.generation for p in stored if p.id == "pool-2"} == {
        "pool-2": registry.pools["pool-2"].generation
    }
    assert [p for p in stored if p.id == "pool-2"] == [registry.pools["pool-2"]]
