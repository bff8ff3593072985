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
    api: Api = await make_api()
    await api.provision(instanceId="b1")
    await api.provision(instanceId="b2")  # pool-1 runs (the fake reports made pools running)
    api.runtime.locations = {"b1": ["pool-1"], "b2": ["pool-1"]}
    api.controller.pools.bots["b2"].pool_id = "pool-2"  # as if the store had moved it
    api.runtime.calls.clear()
    await api.controller.evacuation.finish_interrupted()
    assert not [c for c in api.runtime.calls if c[0] == "move"]
