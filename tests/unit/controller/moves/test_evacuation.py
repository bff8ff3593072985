"""Evacuation: each bot of a lost pool moves by the transfer (hold, stage, relocate, land,
release). (A whole evacuation started by the monitor is in health/test_monitor.py; one cut
short by a crash in test_recovery.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from controller.errors import CapacityExhausted
from controller.store.change import Change
from tests.unit.controller.apps import (
    Api,
    ApiFactory,
    bot_dirs,
    obey,
    obey_new_pools,
    write_bot_dir,
)


def lose(api: Api, pool_id: str) -> None:
    """The pool's container is gone, and none can be made where it was."""
    api.runtime.launches.pop(pool_id)
    api.runtime.broken.add(pool_id)


async def test_a_bot_stopped_for_want_of_its_files_leaves_memory_as_the_store_has_it(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its stop bumps its new pool's generation in the store; the view must have that very
    generation too (it kept the one from before the stop, so the pool's agent was told an
    older generation than the store's, and a restarted controller a newer one)."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2", POOL_START_ATTEMPTS="1", POOL_GRACE="1")
    for bot_id in ("b1", "b2"):
        await api.provision(instanceId=bot_id)
    obey_new_pools(api, monkeypatch)
    write_bot_dir(api, "pools/pool-1/bots/b2")
    write_bot_dir(api, "migrating/b2")  # a stale copy in the way: b2 cannot be staged
    lose(api, "pool-1")
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


async def test_a_legacy_bot_of_a_lost_pool_gets_a_container_of_its_own_again(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api: Api = await make_api(POOL_MODE_ENABLED="false", POOL_START_ATTEMPTS="1", POOL_GRACE="1")
    await api.provision(instanceId="leg-1")  # pool-1: a container of its own
    obey_new_pools(api, monkeypatch)
    write_bot_dir(api, "pools/pool-1/bots/leg-1")
    lose(api, "pool-1")
    await api.controller.monitor.evaluate()
    api.clock.advance(0.01)
    await api.controller.monitor.evaluate()
    registry = api.controller.pools.registry
    bot = registry.bots["leg-1"]
    pool = registry.pools[bot.pool_id]
    assert (bot.pool_id, bot.held, pool.legacy_of, pool.capacity) == ("pool-2", False, "leg-1", 1)
    assert pool.container_name == "freqtrade-leg-1"
    assert bot_dirs(api, "leg-1") == ["pools/pool-2/bots/leg-1: trades of leg-1"]
    assert "pool-1" not in registry.pools and ("remove", "pool-1") in api.runtime.calls


async def test_a_step_that_fails_leaves_the_bot_released_where_the_store_has_it(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b1 has moved; b2 cannot (no port block left for a new pool). It is released in the
    lost pool with its files back there, as the crash recovery would leave it; that pool
    stays draining, and the next evacuation tries again."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2")
    for bot_id in ("b1", "b2", "b3"):
        await api.provision(instanceId=bot_id)  # pool-1: b1, b2; pool-2: b3
    obey(api, "pool-2")
    for bot_id in ("b1", "b2"):
        write_bot_dir(api, f"pools/pool-1/bots/{bot_id}")
    store = api.controller.pools.store
    relocate = store.relocate

    async def no_block_for_b2(bot_id: str, *args: Any, **kw: Any) -> Change:
        if bot_id == "b2":
            raise CapacityExhausted("no port block left for another pool")
        return await relocate(bot_id, *args, **kw)

    monkeypatch.setattr(store, "relocate", no_block_for_b2)
    api.runtime.launches.pop("pool-1")
    evacuation = api.controller.evacuation
    registry = api.controller.pools.registry
    with pytest.raises(CapacityExhausted):
        await evacuation.evacuate(registry.pools["pool-1"])
    assert [(b.id, b.pool_id, b.held) for b in registry.bots.values()] == [
        ("b1", "pool-2", False), ("b2", "pool-1", False), ("b3", "pool-2", False),
    ]  # fmt: skip
    assert bot_dirs(api, "b1") == ["pools/pool-2/bots/b1: trades of b1"]
    assert bot_dirs(api, "b2") == ["pools/pool-1/bots/b2: trades of b2"]
    assert registry.pools["pool-1"].draining and not evacuation.guard.lock.locked()
    monkeypatch.setattr(store, "relocate", relocate)
    obey_new_pools(api, monkeypatch)
    await evacuation.evacuate(registry.pools["pool-1"])
    assert registry.bots["b2"].pool_id == "pool-3" and "pool-1" not in registry.pools
    assert bot_dirs(api, "b2") == ["pools/pool-3/bots/b2: trades of b2"]


async def test_a_users_change_waits_while_a_move_has_the_bot(api: Api) -> None:
    """Held by a move (an evacuation's bot already out of its old pool, or one a crash
    left held), or in a pool being emptied: 409 until the move is done."""
    for bot_id in ("b1", "b2"):
        await api.provision(instanceId=bot_id)
    registry, store = api.controller.pools.registry, api.controller.pools.store
    await registry.apply(await store.update_bot("b1", held=1))
    status, body, _ = await api.call("POST", "/api/bots/b1/stop")
    assert status == 409 and "being moved to another pool" in body["error"], body
    with api.controller.guard.pool_moving("pool-1"):
        status, body, _ = await api.call("DELETE", "/api/bots/b2")
        assert status == 409 and "being moved to another pool" in body["error"], body
    with api.controller.guard.bot_moving("b2"):
        status, body, _ = await api.call("POST", "/api/bots/b2/restart")
        assert status == 409 and "being migrated" in body["error"], body
    assert (await api.call("POST", "/api/bots/b2/stop"))[0] == 200
