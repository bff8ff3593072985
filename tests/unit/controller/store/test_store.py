"""The SQLite store: allocation of slots and port blocks, and refusing bad files."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from controller.errors import BadRequest, CapacityExhausted, Conflict, NotFound, StoreError
from controller.records import BotRecord, BotSecrets, PoolRecord
from controller.store.allocation import NewBot, Placement
from controller.store.schema import SCHEMA_VERSION
from controller.store.store import Store

FILL = Placement(max_bots=10, base_port=9000)
SECRETS = BotSecrets("ftpool", "pw-secret", "jwt-secret", "ws-secret")


def new_bot(bot_id: str, user: str = "alice") -> NewBot:
    return NewBot(bot_id, user, "SampleStrategy", b"source", {"max_open_trades": 1}, SECRETS)


async def allocate(
    store: Store, bot_id: str, placement: Placement = FILL, user: str = "alice"
) -> tuple[BotRecord, PoolRecord, bool]:
    """The bot as placed, its pool, and whether the pool was made for it."""
    change = await store.allocate(new_bot(bot_id, user), placement, "hash")
    bot = change.bot(bot_id)
    return bot, change.pool(bot.pool_id), bot.pool_id in change.created


async def removed(store: Store, bot_id: str) -> PoolRecord:
    """The pool of a bot removed from the store, as the removal left it."""
    [pool] = (await store.remove_bot(bot_id)).pools
    return pool


async def relocate(
    store: Store, bot_id: str, placement: Placement, held: bool
) -> tuple[BotRecord, PoolRecord, bool, PoolRecord]:
    """The bot in its new slot, its new pool, whether that was made, and its old pool."""
    change = await store.relocate(bot_id, placement, "hash", held=held)
    bot = change.bot(bot_id)
    [old] = [p for p in change.pools if p.id != bot.pool_id]
    return bot, change.pool(bot.pool_id), bot.pool_id in change.created, old


async def test_allocation_fills_pool_1_then_pool_2(store: Store) -> None:
    placed = [await allocate(store, f"b{i}") for i in range(12)]
    for i, (bot, pool, created) in enumerate(placed[:10]):
        assert (bot.pool_id, bot.slot, bot.port) == ("pool-1", i, 9000 + i)
        assert created is (i == 0)
        assert pool.used == i + 1
    for i, (bot, pool, created) in enumerate(placed[10:]):
        assert (bot.pool_id, bot.slot, bot.port) == ("pool-2", i, 9010 + i)
        assert created is (i == 0)
        assert (pool.num, pool.port_start, pool.capacity) == (2, 9010, 10)
    bot, _pool, _ = placed[0]
    assert bot.secrets == SECRETS
    assert bot.config == {"max_open_trades": 1}
    assert bot.strategy_source == b"source"
    assert bot.run == "running"


async def test_each_allocation_bumps_the_pool_generation(store: Store) -> None:
    _, first, _ = await allocate(store, "a")
    _, second, _ = await allocate(store, "b")
    assert second.generation > first.generation


async def test_concurrent_allocations_never_share_a_slot_or_port(store: Store) -> None:
    results = await asyncio.gather(*(allocate(store, f"bot{i}") for i in range(50)))
    bots = [bot for bot, _, _ in results]
    assert len({b.port for b in bots}) == 50
    assert len({(b.pool_id, b.slot) for b in bots}) == 50
    assert sorted(b.port for b in bots) == list(range(9000, 9050))
    assert sum(created for _, _, created in results) == 5
    pools, stored = await store.load()
    assert [(p.id, p.used) for p in pools] == [(f"pool-{n}", 10) for n in range(1, 6)]
    assert len(stored) == 50


async def test_a_duplicate_bot_id_is_refused_and_rolled_back(store: Store) -> None:
    await allocate(store, "same")
    with pytest.raises(Conflict):
        await allocate(store, "same")
    pools, bots = await store.load()
    assert [p.used for p in pools] == [1]
    assert len(bots) == 1


async def test_a_freed_slot_is_reused(store: Store) -> None:
    for i in range(5):
        await allocate(store, f"b{i}")
    pool = await removed(store, "b2")
    assert pool.used == 4
    assert pool.emptied_at is None
    bot, _, created = await allocate(store, "new")
    assert (bot.pool_id, bot.slot, bot.port, created) == ("pool-1", 2, 9002, False)


async def test_an_emptied_pool_frees_its_number_and_port_block(store: Store) -> None:
    for i in range(25):
        await allocate(store, f"b{i}")
    for i in range(10, 20):
        pool = await removed(store, f"b{i}")
    assert pool.id == "pool-2"
    assert pool.used == 0
    assert pool.emptied_at is not None
    assert await store.remove_pool("pool-2")
    pools, _ = await store.load()
    assert [p.id for p in pools] == ["pool-1", "pool-3"]
    # pool-3 has room and is the fullest: fill placement uses it first.
    bot, _, created = await allocate(store, "x")
    assert (bot.pool_id, bot.port, created) == ("pool-3", 9025, False)
    for i in range(4):
        await allocate(store, f"fill{i}")
    bot, pool, created = await allocate(store, "reuse")
    assert created
    assert (pool.id, pool.num, pool.port_start) == ("pool-2", 2, 9010)
    assert (bot.slot, bot.port) == (0, 9010)


async def test_a_pool_with_bots_is_not_removed(store: Store) -> None:
    await allocate(store, "b")
    assert not await store.remove_pool("pool-1")
    pools, _ = await store.load()
    assert [p.id for p in pools] == ["pool-1"]


async def test_per_user_placement_keeps_users_apart(store: Store) -> None:
    per_user = Placement(max_bots=10, base_port=9000, per_user=True)
    a1, pa, _ = await allocate(store, "a1", per_user, "alice")
    b1, pb, _ = await allocate(store, "b1", per_user, "bob")
    a2, _, _ = await allocate(store, "a2", per_user, "alice")
    assert a1.pool_id == a2.pool_id == "pool-1"
    assert b1.pool_id == "pool-2"
    assert (pa.owner, pb.owner) == ("alice", "bob")
    # Shared placement never uses a user's own pool.
    shared, _, created = await allocate(store, "s1", FILL, "carol")
    assert created
    assert shared.pool_id == "pool-3"


async def test_spread_placement_uses_the_emptiest_pool(store: Store) -> None:
    for i in range(12):
        await allocate(store, f"b{i}")  # pool-1 full, pool-2 has 2
    await store.remove_bot("b0")
    await store.remove_bot("b1")
    await store.remove_bot("b2")  # pool-1: 7 bots, pool-2: 2 bots
    spread = Placement(max_bots=10, base_port=9000, fill=False)
    bot, _, _ = await allocate(store, "spread", spread)
    assert bot.pool_id == "pool-2"
    bot, _, _ = await allocate(store, "fill", FILL)
    assert bot.pool_id == "pool-1"


async def test_unpooled_mode_gives_every_bot_its_own_pool(store: Store) -> None:
    legacy = Placement(max_bots=10, base_port=9000, pooled=False)
    placed = [await allocate(store, f"b{i}", legacy) for i in range(3)]
    assert [(b.pool_id, b.port, c) for b, _, c in placed] == [
        ("pool-1", 9000, True),
        ("pool-2", 9010, True),
        ("pool-3", 9020, True),
    ]
    assert all(p.capacity == 1 for _, p, _ in placed)
    # Each is its bot's legacy pool (container freqtrade-<id>); pooled bots never land there.
    assert [(p.legacy_of, p.owner, p.container_name) for _, p, _ in placed] == [
        (f"b{i}", "alice", f"freqtrade-b{i}") for i in range(3)
    ]
    bot, pool, _ = await allocate(store, "pooled")
    assert (bot.pool_id, pool.legacy_of) == ("pool-4", None)
    assert pool.container_name == "freqtrade-pool-pool-4"


LEGACY = Placement(max_bots=10, base_port=9000, pooled=False)


async def test_relocate_moves_a_bot_between_legacy_and_pooled_slots(store: Store) -> None:
    await allocate(store, "keep")  # pool-1, pooled
    _bot, legacy_pool, _ = await allocate(store, "mover", LEGACY)  # pool-2
    assert legacy_pool.legacy_of == "mover"
    bot, pool, created, old = await relocate(store, "mover", FILL, held=True)
    assert (bot.pool_id, bot.slot, bot.port, bot.held) == ("pool-1", 1, 9001, True)
    assert not created and pool.used == 2
    # The legacy pool is empty but still the bot's: a way back finds it again.
    assert (old.id, old.used, old.legacy_of) == ("pool-2", 0, "mover")
    assert old.generation > legacy_pool.generation and old.emptied_at is not None
    bot, pool, created, old = await relocate(store, "mover", LEGACY, held=False)
    assert (bot.pool_id, bot.port, bot.held, created) == ("pool-2", 9010, False, False)
    assert (old.id, old.used) == ("pool-1", 1)
    with pytest.raises(Conflict):
        await store.relocate("mover", LEGACY, "hash", held=False)  # there already
    with pytest.raises(NotFound):
        await store.relocate("nobody", FILL, "hash", held=False)
    pools, bots = await store.load()
    assert {b.id: b.pool_id for b in bots} == {"keep": "pool-1", "mover": "pool-2"}
    assert {p.id: p.used for p in pools} == {"pool-1": 1, "pool-2": 1}


async def test_plan_is_the_allocation_that_would_happen_and_writes_nothing(store: Store) -> None:
    small = Placement(max_bots=2, base_port=9000)
    await allocate(store, "a", small)  # pool-1 slot 0
    await allocate(store, "leg", LEGACY)  # pool-2, legacy
    before = await store.load()
    plan = await store.plan([("x", "alice"), ("y", "bob"), ("leg", "alice")], small)
    assert plan == [("pool-1", 9001, False), ("pool-3", 9004, True), ("pool-3", 9005, False)]
    assert await store.load() == before
    # The real allocations land exactly where the plan said.
    assert [(b.pool_id, b.port, c) for b, _p, c in [
        await allocate(store, "x", small), await allocate(store, "y", small),
    ]] == [(p, port, new) for p, port, new in plan[:2]]  # fmt: skip


async def test_a_lost_legacy_pools_bot_gets_a_legacy_pool_again(store: Store) -> None:
    await allocate(store, "shared")  # pool-1
    await allocate(store, "leg", LEGACY)  # pool-2
    # Evacuated (its pool drained) in pool mode, the legacy bot still gets a container of
    # its own, which stands for it from now on.
    await store.set_draining("pool-2", True)
    bot, pool, created, old = await relocate(store, "leg", LEGACY, held=True)
    assert (bot.pool_id, pool.legacy_of, pool.capacity, created) == ("pool-3", "leg", 1, True)
    assert pool.container_name == "freqtrade-leg"
    assert (old.legacy_of, old.used, old.capacity, old.draining) == (None, 0, 1, True)


async def test_a_draining_pool_takes_no_bot_until_it_drains_no_more(store: Store) -> None:
    small = Placement(max_bots=2, base_port=9000)
    _bot, before, _created = await allocate(store, "a", small)  # pool-1
    [pool] = (await store.set_draining("pool-1", True)).pools
    assert pool.draining and pool.generation == before.generation  # the same desired state
    bot, pool, created = await allocate(store, "b", small)
    assert (bot.pool_id, created) == ("pool-2", True)
    # Its bot leaves it, and its freed slot stays empty.
    moved, _pool, _created, old = await relocate(store, "a", small, held=True)
    assert (moved.pool_id, old.used, old.emptied_at is not None) == ("pool-2", 0, True)
    assert (await allocate(store, "c", small))[0].pool_id == "pool-3"
    assert await store.plan([("d", "alice")], small) == [("pool-3", 9005, False)]
    await store.set_draining("pool-1", False)
    assert [(await allocate(store, b, small))[0].pool_id for b in ("d", "e")] == [
        "pool-3", "pool-1"
    ]  # fmt: skip
    pools, _bots = await store.load()
    assert not any(p.draining for p in pools)


async def test_held_is_stored_with_the_bot(store: Store) -> None:
    await allocate(store, "h")
    assert (await store.update_bot("h", held=1)).bot("h").held is True
    _pools, bots = await store.load()
    assert bots[0].held is True
    assert (await store.allocate(new_bot("h2"), FILL, "hash", held=True)).bot("h2").held


async def test_allocation_stops_at_the_last_port_block(tmp_path: Path, store: Store) -> None:
    from controller.errors import CapacityExhausted

    near_end = Placement(max_bots=10, base_port=65516)
    await allocate(store, "a", near_end)
    for i in range(9):
        await allocate(store, f"fill{i}", near_end)
    await allocate(store, "b", near_end)  # pool-2: 65526..65535
    for i in range(9):
        await allocate(store, f"more{i}", near_end)
    with pytest.raises(CapacityExhausted):
        await allocate(store, "c", near_end)


async def test_update_bot_changes_desired_state(store: Store) -> None:
    _, pool, _ = await allocate(store, "b")
    change = await store.update_bot("b", run="stopped", nonce=3)
    bot = change.bot("b")
    assert (bot.run, bot.nonce) == ("stopped", 3)
    assert change.pool(pool.id).generation == pool.generation + 1
    with pytest.raises(ValueError):
        await store.update_bot("b", port=1)
    with pytest.raises(ValueError):
        await store.update_bot("b")


async def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    s = Store(path)
    await s.open()
    await s.allocate(new_bot("keep"), FILL, "hash")
    await s.close()
    s = Store(path)
    await s.open()
    pools, bots = await s.load()
    await s.close()
    assert [p.id for p in pools] == ["pool-1"]
    assert [(b.id, b.port, b.secrets) for b in bots] == [("keep", 9000, SECRETS)]


async def test_check_layout_refuses_a_changed_layout_while_pools_exist(store: Store) -> None:
    await store.check_layout(10, 9000)
    await store.check_layout(10, 9000)  # unchanged: fine
    await allocate(store, "b")
    with pytest.raises(StoreError, match="MAX_BOTS_PER_CONTAINER"):
        await store.check_layout(20, 9000)
    with pytest.raises(StoreError):
        await store.check_layout(10, 9500)
    await store.check_layout(10, 9000)


async def test_check_layout_accepts_a_change_without_pools(store: Store) -> None:
    await store.check_layout(10, 9000)
    await store.check_layout(20, 9100)
    await allocate(store, "b")
    with pytest.raises(StoreError):
        await store.check_layout(10, 9000)


async def open_store(path: Path) -> Store:
    s = Store(path)
    try:
        await s.open()
    except BaseException:
        s._executor.shutdown(wait=True)
        raise
    return s


async def test_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.sqlite3"
    data = random.Random(3).randbytes(8192)
    path.write_bytes(data)
    with pytest.raises(StoreError):
        await open_store(path)
    assert path.read_bytes() == data  # never replaced by an empty store


async def test_a_damaged_ftpool_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "damaged.sqlite3"
    s = await open_store(path)
    await s.allocate(new_bot("b"), FILL, "hash")
    await s.close()
    raw = bytearray(path.read_bytes())
    assert len(raw) > 3 * 4096
    raw[4096 : 4096 + 8] = b"\xff" * 8  # garble the b-tree header of page 2
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError):
        await open_store(path)


async def test_a_database_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO customers (name) VALUES ('x')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not ftpool"):
        await open_store(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM customers").fetchall() == [("x",)]
    # Refusing it did not change it either (no switch to WAL journaling).
    assert db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "delete"
    db.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite3"
    s = await open_store(path)
    await s.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        await open_store(path)


async def test_an_unreadable_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a-directory"
    path.mkdir()
    with pytest.raises(StoreError):
        await open_store(path)


def wal_file_exists(path: Path) -> bool:
    return os.path.exists(f"{path}-wal")


async def test_wal_mode_and_schema_version(store: Store, tmp_path: Path) -> None:
    await allocate(store, "b")
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    db.close()
    assert wal_file_exists(store.path)


async def test_using_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    s = Store(tmp_path / "never-opened.sqlite3")
    with pytest.raises(StoreError):
        await s.load()
    await s.close()


async def test_a_version_1_store_is_upgraded_with_its_pools_and_bots(tmp_path: Path) -> None:
    from controller.store.schema import _SCHEMA_V1

    path = tmp_path / "v1.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_V1)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO pools (id, num, port_start, capacity, used, token_hash, created_at)"
        " VALUES ('pool-1', 1, 9000, 10, 0, 'h', 0)"
    )
    db.commit()
    db.close()
    s = await open_store(path)
    (pool,), bots = await s.load()
    assert (pool.id, pool.launch, pool.preloader_nonce, bots) == ("pool-1", None, 0, [])
    await s.close()


async def test_a_pools_launch_and_preloader_nonce_change_its_generation(store: Store) -> None:
    _, pool, _ = await allocate(store, "b")
    changed = (await store.update_pool(pool.id, launch="exec")).pool(pool.id)
    assert (changed.launch, changed.generation) == ("exec", pool.generation + 1)
    changed = (await store.update_pool(pool.id, launch=None, preloader_nonce=1)).pool(pool.id)
    assert (changed.launch, changed.preloader_nonce) == (None, 1)
    (loaded,), _ = await store.load()
    assert loaded == changed
    with pytest.raises(sqlite3.IntegrityError):
        await store.update_pool(pool.id, launch="fork")
    with pytest.raises(NotFound):
        await store.update_pool("pool-9", launch="exec")
    with pytest.raises(ValueError):
        await store.update_pool(pool.id, used=0)


async def test_a_full_disk_reports_itself_not_a_failed_rollback(store: Store) -> None:
    """SQLITE_FULL rolls the transaction back by itself: its error is the one raised, and
    the store goes on once there is room."""
    await allocate(store, "small")
    store.db.execute(
        f"PRAGMA max_page_count = {store.db.execute('PRAGMA page_count').fetchone()[0]}"
    )
    huge = NewBot("huge", "alice", "SampleStrategy", os.urandom(1 << 20), {}, SECRETS)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        await store.allocate(huge, FILL, "h")
    assert not store.db.in_transaction
    store.db.execute("PRAGMA max_page_count = 1073741823")
    await allocate(store, "after")
    assert [b.id for b in (await store.load())[1]] == ["small", "after"]


async def test_a_rollback_that_fails_never_hides_why_it_was_needed(store: Store) -> None:
    def fails(db: sqlite3.Connection) -> None:
        db.execute("ROLLBACK")  # whatever ended the transaction already
        raise ValueError("the real problem")

    with pytest.raises(ValueError, match="the real problem"):
        await store._run(store._tx, fails)
    await allocate(store, "next")


async def test_a_pool_being_removed_takes_no_bot_and_keeps_its_number(store: Store) -> None:
    await allocate(store, "a")
    await store.remove_bot("a")
    [retired] = (await store.retire_pool("pool-1")).retired_pools
    assert retired.removing
    assert (await allocate(store, "b"))[1].id == "pool-2"  # not into it, not its number
    assert not await store.retire_pool("pool-2")  # it has a bot: no change
    legacy = Placement(max_bots=10, base_port=9000, pooled=False)
    await allocate(store, "leg", legacy)
    await store.remove_bot("leg")
    assert (await store.retire_pool("pool-3")).retired_pools[0].removing
    with pytest.raises(Conflict, match="being removed"):  # its container has that name
        await allocate(store, "leg", legacy)
    assert await store.remove_pool("pool-1") and await store.remove_pool("pool-3")
    assert (await allocate(store, "c"))[1].id == "pool-2"  # fill: the fullest first
    assert (await allocate(store, "leg", legacy))[1].id == "pool-1"


async def test_a_write_of_what_the_store_does_not_have(store: Store) -> None:
    assert not await store.set_pool_token("pool-9", "hash")  # nothing to change
    with pytest.raises(NotFound):
        await store.update_bot("nobody", run="stopped")
    with pytest.raises(NotFound):
        await store.set_draining("pool-9", True)


MIB = 1 << 20
SIZED = Placement(max_bots=4, base_port=9000, pool_memory=400 * MIB, bot_memory=100 * MIB)


async def place_sized(store: Store, bot_id: str, memory: int | None = None) -> str:
    bot = replace(new_bot(bot_id), memory_limit=memory)
    return (await store.allocate(bot, SIZED, "hash")).bot(bot_id).pool_id


async def test_a_pool_takes_a_bot_only_while_its_bots_limits_fit_its_memory(store: Store) -> None:
    # 250 + 100 of 400 MiB: a third bot at the default would not fit, though slots are free.
    assert [await place_sized(store, "big", 250 * MIB), await place_sized(store, "d1")] == [
        "pool-1", "pool-1",
    ]  # fmt: skip
    assert await place_sized(store, "d2") == "pool-2"
    assert await place_sized(store, "small", 50 * MIB) == "pool-1"  # 400 of 400: it fits
    assert await place_sized(store, "tiny", 64 * MIB) == "pool-2"
    # A bot gone gives its memory back.
    await store.remove_bot("big")
    assert await place_sized(store, "d3") == "pool-1"
    # Without a pool limit only slots count, as before.
    unsized = replace(SIZED, pool_memory=0)
    placed = await store.allocate(replace(new_bot("free"), memory_limit=10_000 * MIB), unsized, "h")
    assert placed.bot("free").pool_id == "pool-1"


async def test_a_bot_larger_than_a_pool_is_refused(store: Store) -> None:
    with pytest.raises(BadRequest, match="larger than a pool"):
        await place_sized(store, "huge", 500 * MIB)
    assert (await store.load()) == ([], [])


async def test_a_moved_bot_needs_its_memory_in_its_new_pool(store: Store) -> None:
    await place_sized(store, "a", 300 * MIB)  # pool-1
    await place_sized(store, "b", 300 * MIB)  # pool-2
    await place_sized(store, "c", 100 * MIB)  # pool-1: 400 of 400
    change = await store.relocate("b", SIZED, "hash", held=False)
    assert change.bot("b").pool_id == "pool-3"  # pool-1 has a slot but not 300 MiB


async def test_an_upgrades_fresh_pool_takes_bots_only_when_moved_into_it(store: Store) -> None:
    for bot_id in ("a", "b", "c"):
        await allocate(store, bot_id)  # pool-1, ports 9000..9002
    [fresh] = (change := await store.new_pool(FILL, "hash", None, 10)).pools
    assert (fresh.id, fresh.port_start, fresh.used, fresh.draining) == ("pool-2", 9010, 0, True)
    assert change.created == {"pool-2"}
    await store.set_draining("pool-1", True)
    # Placement passes both by: a new bot gets a pool of its own.
    assert (await allocate(store, "new"))[1].id == "pool-3"
    # A move into it takes its first free slot, and so a port of its block.
    moved = (await store.relocate("b", FILL, "hash", held=True, into="pool-2")).bot("b")
    assert (moved.pool_id, moved.slot, moved.port, moved.held) == ("pool-2", 0, 9010, True)
    back = (await store.relocate("b", FILL, "hash", held=True, into="pool-1")).bot("b")
    assert (back.pool_id, back.port) == ("pool-1", 9001)  # its old slot was free again
    with pytest.raises(Conflict, match="pool pool-9 has no free slot"):
        await store.relocate("a", FILL, "hash", held=True, into="pool-9")


async def test_a_fresh_pool_is_no_larger_than_a_port_block(store: Store) -> None:
    with pytest.raises(CapacityExhausted):
        await store.new_pool(FILL, "hash", None, 11)


async def test_signed_out_sessions_are_kept_until_they_would_have_expired(store: Store) -> None:
    await store.sign_out_session("s1", expires=200.0, now=100.0)
    await store.sign_out_session("s2", expires=400.0, now=100.0)
    assert await store.signed_out_sessions(now=150.0) == {"s1": 200.0, "s2": 400.0}
    assert await store.signed_out_sessions(now=200.0) == {"s2": 400.0}
    # Each sign-out deletes those past their expiry.
    await store.sign_out_session("s3", expires=600.0, now=300.0)
    rows = store.db.execute("SELECT sid FROM ui_signed_out ORDER BY sid").fetchall()
    assert [r[0] for r in rows] == ["s2", "s3"]


async def test_an_upgrades_fresh_pool_keeps_the_old_pools_own_switches(store: Store) -> None:
    [fresh] = (await store.new_pool(FILL, "hash", None, 10, "exec", False)).pools
    assert (fresh.launch, fresh.market_data) == ("exec", False)
    [plain] = (await store.new_pool(FILL, "hash", None, 10)).pools
    assert (plain.launch, plain.market_data) == (None, None)


async def test_an_abandoned_pool_holds_its_bots_has_a_new_token_and_its_mark_goes_with_it(
    store: Store,
) -> None:
    small = Placement(max_bots=2, base_port=9000)
    await allocate(store, "a", small)
    _bot, before, _created = await allocate(store, "b", small)  # both in pool-1
    change = await store.abandon_pool("pool-1", "new-hash")
    pool = change.pool("pool-1")
    assert (pool.abandoned, pool.draining, pool.token_hash) == (True, True, "new-hash")
    assert pool.generation == before.generation + 1  # its agent would be told: all held
    assert {(b.id, b.held) for b in change.bots} == {("a", True), ("b", True)}
    pools, bots = await store.load()  # kept across a restart
    assert pools[0].abandoned and all(b.held for b in bots)
    with pytest.raises(NotFound):
        await store.abandon_pool("pool-9", "x")
    # Emptied and removed, its number is taken again by a pool like any other.
    for bot_id in ("a", "b"):
        await removed(store, bot_id)
    await store.retire_pool("pool-1")
    await store.remove_pool("pool-1")
    _bot, again, created = await allocate(store, "c", small)
    assert (again.id, created, again.abandoned, again.draining) == ("pool-1", True, False, False)
