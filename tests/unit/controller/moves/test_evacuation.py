"""Evacuation: each bot of a lost pool moves by the transfer (hold, stage, relocate, land,
release). (A whole evacuation started by the monitor is in health/test_monitor.py; one cut
short by a crash in test_recovery.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.errors import CapacityExhausted, Conflict
from controller.moves.evacuation import BACKUP, FILES, STOPPED, evacuation_source
from controller.moves.transfer import Transfer
from controller.records import BotRecord
from controller.runtimes.base import hand_over
from controller.store.change import Change
from tests.unit.controller.apps import (
    Api,
    ApiFactory,
    bot_dirs,
    events_of,
    obey,
    obey_new_pools,
    write_bot_dir,
)
from tests.unit.controller.moves.test_failover import DB, bot_db, write_point


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


@pytest.mark.parametrize(
    ("on_node", "nothing_runs", "points", "start"),
    [
        (False, True, True, FILES),  # shared storage: its own directory, always
        (False, False, False, FILES),
        (True, True, True, BACKUP),  # on its node's disk, its pool gone: the restore point
        (True, True, False, STOPPED),  # no restore point: never without its trades
        (True, False, True, STOPPED),  # a task of its pool may run: never a second copy
    ],
)
def test_where_an_evacuated_bot_starts_from(
    on_node: bool, nothing_runs: bool, points: bool, start: str
) -> None:
    assert evacuation_source(on_node, nothing_runs, points) == start


def through_agents(api: Api, monkeypatch: pytest.MonkeyPatch) -> Transfer:
    """POOL_STORAGE=node: no agent of the lost pool can send a bot's files; a new pool's
    agent receives staged files (done here on the controller's disk, as the agent would)."""
    transfer: Transfer = api.controller.transfer
    transfer.files = object()  # type: ignore[assignment]

    async def place(bot: BotRecord) -> None:
        hand_over(transfer.staging / bot.id, transfer.bot_dir(bot))

    monkeypatch.setattr(transfer, "place_staged", place)
    return transfer


async def test_on_node_storage_a_lost_pools_bots_start_from_their_newest_restore_points(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their directories are on the lost pool's node, whose agent cannot start: b1 starts in
    pool-2 from its newest restore point (bot_failed_over, reason pool_lost, with the
    point's age and lostSeconds); b2, with none, moves stopped (bot_move_failed, no_backup)."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2", POOL_START_ATTEMPTS="1", POOL_GRACE="1")
    for bot_id in ("b1", "b2"):
        await api.provision(instanceId=bot_id)
    obey_new_pools(api, monkeypatch)
    through_agents(api, monkeypatch)
    api.clock.advance(100)  # points of the bot since it was made
    write_point(api, "pool-1", "b1", api.clock() - 60, "b1's older backup")
    newest = write_point(api, "pool-1", "b1", api.clock() - 5, "b1's backup")
    live = api.controller.pools.registry.live["pool-1"]
    live.last_seen = live.disconnected_at = api.clock()
    lose(api, "pool-1")
    await api.controller.monitor.evaluate()  # one failed start
    api.clock.advance(0.01)
    await api.controller.monitor.evaluate()  # evacuated into pool-2
    registry = api.controller.pools.registry
    b1, b2 = registry.bots["b1"], registry.bots["b2"]
    assert (b1.pool_id, b1.run, b1.held) == ("pool-2", "running", False)
    assert (b2.pool_id, b2.run, b2.held) == ("pool-2", "stopped", False)
    assert bot_db(api, "b1") == "b1's backup"
    assert not registry.bots_in("pool-1")  # kept: b2's directory is in its node's volume
    [moved] = await events_of(api, "bot_failed_over", 1)
    assert (moved.bot_id, moved.pool_id, moved.reason) == ("b1", "pool-2", "pool_lost")
    assert moved.detail["restorePoint"] == newest and moved.detail["fromPool"] == "pool-1"
    assert moved.detail["lostSeconds"] == 5.0  # its pool was last heard 5 s after the point
    [failed] = await events_of(api, "bot_move_failed", 1)
    assert (failed.bot_id, failed.reason) == ("b2", "no_backup")


async def test_on_node_storage_a_bot_that_could_not_move_waits_in_its_lost_pool(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No port block for a new pool: the copy of b1's restore point is dropped (no agent of
    the lost pool could take it back), b1 is released there, and the next evacuation
    stages it again and moves it."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1")
    await api.provision(instanceId="b1")
    through_agents(api, monkeypatch)
    api.clock.advance(100)
    write_point(api, "pool-1", "b1", api.clock() - 5, "b1's backup")
    store = api.controller.pools.store
    relocate = store.relocate

    async def no_block(bot_id: str, *args: Any, **kw: Any) -> Change:
        raise CapacityExhausted("no port block left for another pool")

    monkeypatch.setattr(store, "relocate", no_block)
    api.runtime.launches.pop("pool-1")
    evacuation = api.controller.evacuation
    registry = api.controller.pools.registry
    with pytest.raises(CapacityExhausted):
        await evacuation.evacuate(registry.pools["pool-1"])
    b1 = registry.bots["b1"]
    assert (b1.pool_id, b1.held) == ("pool-1", False)
    assert not (api.controller.transfer.staging / "b1").exists()
    monkeypatch.setattr(store, "relocate", relocate)
    obey_new_pools(api, monkeypatch)
    await evacuation.evacuate(registry.pools["pool-1"])
    assert registry.bots["b1"].pool_id == "pool-2" and bot_db(api, "b1") == "b1's backup"


async def test_an_evacuation_waits_for_a_running_move(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration or one pool of a drain holds the moves' lock: the evacuation waits its
    turn (as a failover does), and gives up with Conflict only after the wait."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2")
    await api.provision(instanceId="b1")
    obey_new_pools(api, monkeypatch)
    write_bot_dir(api, "pools/pool-1/bots/b1")
    api.runtime.launches.pop("pool-1")
    evacuation = api.controller.evacuation
    pool = api.controller.pools.registry.pools["pool-1"]
    guard = evacuation.guard
    await guard.lock.acquire()
    waiting = asyncio.create_task(evacuation.evacuate(pool))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # waits, not refused
    guard.lock.release()
    await waiting
    assert api.controller.pools.registry.bots["b1"].pool_id == "pool-2"
    async with guard.lock:
        with pytest.raises(Conflict, match="once the running move ends"):
            async with guard.locked("busy: once the running move ends", wait=0.01):
                pass


async def test_on_node_storage_a_directory_an_export_staged_moves_as_it_is(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pool's agent exported b1 (that copy gone), then the move was cut short and the
    pool could not start again: staging holds the newest copy, never replaced by an older
    restore point, and it moves with it (bot_moved)."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1", POOL_START_ATTEMPTS="1", POOL_GRACE="1")
    await api.provision(instanceId="b1")
    obey_new_pools(api, monkeypatch)
    transfer = through_agents(api, monkeypatch)
    api.clock.advance(100)
    write_point(api, "pool-1", "b1", api.clock() - 5, "b1's older backup")
    staged = transfer.staging / "b1"
    staged.mkdir(parents=True)
    (staged / DB).write_text("b1 as exported")
    registry, store = api.controller.pools.registry, api.controller.pools.store
    await registry.apply(await store.update_bot("b1", held=1))
    lose(api, "pool-1")
    await api.controller.monitor.evaluate()  # one failed start
    api.clock.advance(0.01)
    await api.controller.monitor.evaluate()  # evacuated into pool-2
    b1 = registry.bots["b1"]
    assert (b1.pool_id, b1.run, b1.held) == ("pool-2", "running", False)
    assert bot_db(api, "b1") == "b1 as exported"
    assert not staged.exists()
    [moved] = await events_of(api, "bot_moved", 1)
    assert (moved.bot_id, moved.reason) == ("b1", "pool_lost")
