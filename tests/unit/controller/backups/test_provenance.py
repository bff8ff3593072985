"""Whose restore points a bot's are (review finding 15): each pool's agent, root in its
container, may write anything under its own pool's directory of the backup target
(BACKUP_TRANSPORT=mount). A point it plants there for a bot of another pool, future-dated
and marked checked, is neither listed, nor restored, nor staged for a failover or an
evacuation; a moved bot keeps the points each of its pools made while it lived there."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from common.restore_points import CHECKED, time_of
from controller.moves.restore_points import FromBackups
from tests.unit.controller.apps import Api, ApiFactory, obey, obey_new_pools
from tests.unit.controller.backups.test_api import ALICE, BOB, alices_bot
from tests.unit.controller.backups.test_points import DB, snapshot

FUTURE = time.time() + 86400.0  # a day ahead: newer than anything the bot's pool made


def trades_in(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM trades").fetchone()[0])
    finally:
        db.close()


def plant(root: Path, pool: str, bot: str, t: float) -> str:
    """A fabricated point for `bot` in `pool`'s own directory, as that pool's root could
    write it: 99 trades, marked checked up to now."""
    point = snapshot(root, pool, bot, t, 99)
    mark = root / "pools" / pool / bot / DB / CHECKED
    mark.write_text(point.partition("@")[2])
    return point


async def listed(api: Api) -> list[str]:
    status, body, _ = await api.call("GET", "/api/bots/b1/backups", ALICE)
    assert status == 200, body
    return [p["id"] for p in body["restorePoints"]]


async def bobs_pool(api: Api) -> str:
    """Bob's bot in a pool of his own (POOL_TENANCY=per-user): pool-2."""
    await api.provision(BOB, instanceId="b2")
    pool = api.controller.pools.registry.bots["b2"].pool_id
    obey(api, pool)
    return pool


async def test_a_point_planted_in_another_pools_directory_is_never_the_bots(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    api = await make_api(POOL_TENANCY="per-user")
    agent, own = await alices_bot(api)  # b1 in pool-1, one point of 4 trades
    pool = await bobs_pool(api)
    assert pool != "pool-1"
    root = api.controller.settings.bot_base_dir / "backups"
    planted = plant(root, pool, "b1", FUTURE)
    assert await listed(api) == [own]

    by_id = {"restorePoint": planted}
    assert (await api.call("POST", "/api/bots/b1/restore", ALICE, json=by_id))[0] == 404
    latest = {"time": "2100-01-01T00:00:00Z"}
    status, body, _ = await api.call("POST", "/api/bots/b1/restore", ALICE, json=latest)
    assert status == 200 and body["restorePoint"]["id"] == own, body
    assert agent.seen == ["b1 held", f"restore {own}", "b1 running"]
    assert not (root / "pools" / "pool-1" / "b1" / DB / planted.partition("@")[2]).exists()

    # A failover or an evacuation from restore points stages the bot's own newest.
    staging = tmp_path / "staging"
    moves = FromBackups(api.controller.backups, staging, time.time)
    staged = await moves.stage(api.controller.pools.registry.bots["b1"])
    assert [p.id for p in staged] == [own]
    assert trades_in(staging / "b1" / DB) == 4
    fields = await moves.fields(staged, time.time())
    assert fields["restorePoint"] == own


async def test_a_moved_bot_keeps_each_pools_points_of_its_stay_there_only(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await make_api()
    obey_new_pools(api, monkeypatch)
    _agent, first = await alices_bot(api)  # pool-1, made while b1 lives there
    transfer, registry = api.controller.transfer, api.controller.pools.registry
    held = await transfer.hold(registry.bots["b1"])
    await transfer.move(held, api.controller.bots.placement)  # never into its own pool
    moved = registry.bots["b1"]
    assert moved.pool_id != "pool-1"
    stays = await api.controller.pools.store.stays("b1")
    assert [s.pool_id for s in stays] == ["pool-1", moved.pool_id]
    root = api.controller.settings.bot_base_dir / "backups"
    second = snapshot(root, moved.pool_id, "b1", time_of(first.partition("@")[2]) + 1, 5)
    plant(root, "pool-1", "b1", FUTURE)  # pool-1's, long after b1 left it
    assert await listed(api) == [second, first]  # newest first


async def test_a_later_pool_with_a_left_pools_id_has_no_say_in_the_bots_points(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b1 left pool-1, which was removed; bob's new pool is pool-1 again, with its
    directory: nothing under it is b1's any more, however it is dated."""
    api = await make_api(POOL_TENANCY="per-user")
    obey_new_pools(api, monkeypatch)
    _agent, first = await alices_bot(api)  # pool-1
    transfer, registry = api.controller.transfer, api.controller.pools.registry
    store = api.controller.pools.store
    await transfer.move(await transfer.hold(registry.bots["b1"]), api.controller.bots.placement)
    moved = registry.bots["b1"]
    root = api.controller.settings.bot_base_dir / "backups"
    second = snapshot(root, moved.pool_id, "b1", time_of(first.partition("@")[2]) + 1, 5)
    assert await listed(api) == [second, first]
    await registry.apply(await store.retire_pool("pool-1"))
    await registry.apply(await store.remove_pool("pool-1"))
    api.runtime.launches.pop("pool-1")  # its container gone, as a pool's removal leaves it
    await api.provision(BOB, instanceId="b2")
    assert registry.bots["b2"].pool_id == "pool-1"  # the number taken again
    plant(root, "pool-1", "b1", time_of(first.partition("@")[2]) + 0.5)  # within b1's stay
    assert await listed(api) == [second]
