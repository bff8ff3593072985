"""Each bot's pool history in the store (controller/store/history.py): written with its
allocation, each move and its deletion, by time (a reused pool id claims nothing of an
earlier pool's), and seeded for a store from before it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from common.restore_points import stamp_of
from controller.backups.points import STAY_SLACK, RestorePoint, accepted
from controller.errors import Conflict
from controller.records import Stay
from controller.store.allocation import Placement
from controller.store.schema import _MIGRATIONS
from controller.store.store import Store
from tests.unit.controller.store.test_store import allocate, open_store, relocate

SMALL = Placement(max_bots=1, base_port=9000)  # a pool per bot: every move changes pool


def point(pool: str, t: float) -> RestorePoint:
    return RestorePoint("tradesv3.sqlite", stamp_of(t), pool, Path("/x"), 1)


async def test_allocation_begins_a_stay_and_each_move_ends_one_and_begins_the_next(
    store: Store,
) -> None:
    bot, _, _ = await allocate(store, "b", SMALL)
    assert await store.stays("b") == [Stay("pool-1", bot.created_at)]
    await relocate(store, "b", SMALL, held=True)
    await relocate(store, "b", SMALL, held=True)  # back to pool-1, emptied: its number free
    first, second, third = await store.stays("b")
    assert (first.pool_id, second.pool_id, third.pool_id) == ("pool-1", "pool-2", "pool-1")
    assert first.since == bot.created_at and third.until is None
    assert first.since <= first.until == second.since <= second.until == third.since  # type: ignore[operator]
    assert (await store.load())[1][0].pool_id == "pool-1"  # where the store has it


async def test_a_move_that_fails_writes_no_history(store: Store) -> None:
    await allocate(store, "b", SMALL)
    stays = await store.stays("b")
    with pytest.raises(Conflict):  # no such pool with a free slot
        await store.relocate("b", SMALL, "hash", held=True, into="pool-9")
    assert await store.stays("b") == stays


async def test_deletion_forgets_the_history_and_a_bot_with_the_same_id_starts_afresh(
    store: Store,
) -> None:
    await allocate(store, "b", SMALL)
    await relocate(store, "b", SMALL, held=True)
    await allocate(store, "other", SMALL)
    await store.remove_bot("b")
    assert await store.stays("b") == []
    assert len(await store.stays("other")) == 1  # untouched
    again, _, _ = await allocate(store, "b", SMALL)
    assert await store.stays("b") == [Stay(again.pool_id, again.created_at)]


async def test_a_reused_pool_id_does_not_claim_an_earlier_pools_bots(store: Store) -> None:
    """b lived in pool-1 and left it; pool-1 is removed and a later pool-1 made for c. The
    later pool-1 is not in b's history after b left it: its points for b are not b's."""
    await allocate(store, "b", SMALL)  # pool-1
    await relocate(store, "b", SMALL, held=True)  # pool-2; pool-1 emptied
    assert (await store.retire_pool("pool-1")) and (await store.remove_pool("pool-1"))
    c, _, made = await allocate(store, "c", SMALL)
    assert (c.pool_id, made) == ("pool-1", True)  # the number taken again
    old, _ = stays = await store.stays("b")
    assert old.pool_id == "pool-1" and old.until is not None
    later = old.until + STAY_SLACK + 60  # the later pool-1's time, for b
    planted, own = point("pool-1", later), point("pool-2", later)
    earlier = point("pool-1", old.since + 0.01)
    assert accepted([planted, own, earlier], stays, old.since, {}) == [own, earlier]
    # The later pool-1 has the directory: b's points of its stay in the earlier one could
    # be its forgeries, and go too.
    pools, _ = await store.load()
    made = {p.id: p.created_at for p in pools}
    assert made["pool-1"] > old.until  # type: ignore[operator]
    assert accepted([planted, own, earlier], stays, old.since, made) == [own]


async def test_an_older_store_seeds_each_bots_history_from_its_current_pool(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v14.sqlite3"
    db = sqlite3.connect(path)
    for version in range(1, 15):
        db.executescript(_MIGRATIONS[version])
    db.execute("INSERT INTO meta VALUES ('schema_version', '14')")
    db.execute(
        "INSERT INTO pools (id, num, port_start, capacity, used, token_hash, created_at)"
        " VALUES ('pool-3', 3, 9020, 10, 1, 'h', 100)"
    )
    db.execute(
        "INSERT INTO bots (id, user_id, pool_id, slot, port, strategy, strategy_source,"
        " config, secrets, run, created_at) VALUES ('b', 'alice', 'pool-3', 0, 9020, 'S',"
        " x'', '{}', '{}', 'running', 1234.5)"
    )
    db.commit()
    db.close()
    s = await open_store(path)
    assert await s.stays("b") == [Stay("pool-3", 1234.5)]
    await s.close()
