"""The pool manager: a pool's failed creation leaves nothing in the way of the next, and a
slow removal holds up no provisioning."""

from __future__ import annotations

import asyncio

import pytest

from controller.errors import RuntimeFailure
from controller.runtimes import PoolLaunch
from tests.unit.controller.apps import Api, ApiFactory


async def test_what_a_failed_creation_made_goes_and_its_number_is_taken_again(api: Api) -> None:
    api.runtime.half_made.add("pool-1")
    status, body, _ = await api.call("POST", "/api/bots", json={"instanceId": "b1"})
    assert status == 502 and "never came up" in body["error"]
    assert "pool-1" not in api.runtime.launches  # discarded
    api.runtime.half_made.clear()
    assert (await api.provision(instanceId="b2"))["poolId"] == "pool-1"


async def test_a_leftover_that_would_not_go_goes_before_its_pool_is_made_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    discard = api.runtime.discard

    async def daemon_away(pool_id: str) -> None:
        raise RuntimeFailure("docker: Connection aborted.")

    monkeypatch.setattr(api.runtime, "discard", daemon_away)
    api.runtime.half_made.add("pool-1")
    assert (await api.call("POST", "/api/bots", json={"instanceId": "b1"}))[0] == 502
    assert "pool-1" in api.runtime.launches  # still there: the runtime could not discard it
    monkeypatch.setattr(api.runtime, "discard", discard)
    api.runtime.half_made.clear()
    assert (await api.provision(instanceId="b2"))["poolId"] == "pool-1"


async def test_a_pool_this_creation_did_not_make_is_left_alone(api: Api) -> None:
    someone_elses = PoolLaunch("pool-1", 10, 21000, "t" * 64, "ws://elsewhere")
    api.runtime.launches["pool-1"] = someone_elses
    status, body, _ = await api.call("POST", "/api/bots", json={"instanceId": "b1"})
    assert status == 502 and "left alone" in body["error"]
    assert api.runtime.launches["pool-1"] is someone_elses
    assert ("discard", "pool-1") not in api.runtime.calls


async def empty_pool_1(make_api: ApiFactory) -> Api:
    """pool-1, made for a bot that was deleted: empty, and old enough for cleanup."""
    api: Api = await make_api(POOL_CLEANUP_GRACE="0", MAX_BOTS_PER_CONTAINER="1")
    await api.provision(instanceId="b1")
    assert (await api.call("DELETE", "/api/bots/b1"))[0] == 202  # no agent to confirm
    await api.controller.pools.lifecycle.finish_deletions("pool-1")  # its runtime says: gone
    assert api.controller.pools.registry.pools["pool-1"].used == 0
    return api


async def test_a_slow_pool_removal_holds_up_no_provisioning(make_api: ApiFactory) -> None:
    api = await empty_pool_1(make_api)
    removed = api.runtime.gates["remove"] = asyncio.Event()
    cleanup = asyncio.create_task(api.call("POST", "/api/pool/cleanup"))
    async with asyncio.timeout(5):
        while ("remove", "pool-1") not in api.runtime.calls:
            await asyncio.sleep(0.01)
    # Its container is stopping (up to 90 s): a bot that needs a new pool gets one at once,
    # and not pool-1's number, which stays taken until the old pool is gone.
    created = await asyncio.wait_for(api.provision(instanceId="b2"), 2)
    assert created["poolId"] == "pool-2"
    assert not cleanup.done()
    removed.set()
    status, body, _ = await cleanup
    assert status == 200 and body["removedPools"] == 1
    assert (await api.provision(instanceId="b3"))["poolId"] == "pool-1"  # free again


async def test_a_removal_cut_short_is_finished_by_the_next_cleanup(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await empty_pool_1(make_api)

    async def daemon_away(pool_id: str, **_: object) -> None:
        raise RuntimeFailure("docker: Connection aborted.")

    monkeypatch.setattr(api.runtime, "remove", daemon_away)
    assert (await api.call("POST", "/api/pool/cleanup"))[0] == 502
    # A new controller over the same store: the pool is still being removed, not unknown.
    again: Api = await make_api(POOL_CLEANUP_GRACE="0", MAX_BOTS_PER_CONTAINER="1")
    again.runtime.launches["pool-1"] = api.runtime.launches["pool-1"]
    assert await again.controller.pools.lifecycle.adopt() == []
    assert (await again.provision(instanceId="b2"))["poolId"] == "pool-2"
    status, body, _ = await again.call("POST", "/api/pool/cleanup")
    assert status == 200 and body["removedPools"] == 1
    assert "pool-1" not in again.runtime.launches
    assert (await again.provision(instanceId="b3"))["poolId"] == "pool-1"


async def test_a_pools_launch_names_its_incarnation_the_same_at_every_start(
    make_api: ApiFactory,
) -> None:
    """Its record's creation travels with every launch (a recreate of the same record
    included: the same volume on swarm), and a later pool of the same number has its own."""
    api = await empty_pool_1(make_api)
    first = api.controller.pools.registry.pools["pool-1"]
    assert api.runtime.launches["pool-1"].created_at == first.created_at > 0
    await api.runtime.discard("pool-1")  # its runtime gone: made anew from the same record
    await api.controller.pools.lifecycle.recreate(first)
    assert api.runtime.launches["pool-1"].created_at == first.created_at
    status, body, _ = await api.call("POST", "/api/pool/cleanup")
    assert status == 200 and body["removedPools"] == 1
    assert (await api.provision(instanceId="b2"))["poolId"] == "pool-1"  # the number reused
    later = api.controller.pools.registry.pools["pool-1"]
    assert api.runtime.launches["pool-1"].created_at == later.created_at > first.created_at
