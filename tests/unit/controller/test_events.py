"""The event bus over a real store: ids, order, bounded history, listeners, subscribers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller import events as events_module
from controller.events import EventBus
from controller.records import Event
from controller.store.schema import SCHEMA_VERSION
from controller.store.store import Store
from tests.support import wait_for


@pytest.fixture
async def bus(store: Store) -> AsyncIterator[EventBus]:
    b = EventBus(store, keep=1000)
    b.start()
    yield b
    await b.close()


def collect(bus: EventBus) -> list[Event]:
    got: list[Event] = []
    bus.add_listener(got.append)
    return got


async def test_events_get_increasing_ids_and_arrive_in_order(bus: EventBus) -> None:
    got = collect(bus)
    for i in range(5):
        bus.emit("bot_state", pool="pool-1", bot=f"b{i}", user="alice", reason="RUNNING", was=None)
    await wait_for(lambda: len(got) == 5, timeout=5)
    assert [e.bot_id for e in got] == [f"b{i}" for i in range(5)]
    assert [e.id for e in got] == list(range(got[0].id, got[0].id + 5))
    assert got[0].detail == {"was": None}
    stored = await bus.recent(10)
    assert stored == got


async def test_history_keeps_only_the_last_events(store: Store) -> None:
    bus = EventBus(store, keep=3)
    bus.start()
    for i in range(10):
        bus.emit("pool_died", pool=f"pool-{i}", reason="die")
    await bus.close()
    kept = await store.events(100, None, None)
    assert [e.pool_id for e in kept] == ["pool-7", "pool-8", "pool-9"]
    assert [e.id for e in kept] == [8, 9, 10]


async def test_reading_after_an_id_or_the_last_n_and_by_user(bus: EventBus) -> None:
    got = collect(bus)
    bus.emit("bot_state", bot="a1", user="alice", reason="RUNNING")
    bus.emit("agent_connected", pool="pool-1")
    bus.emit("bot_state", bot="b1", user="bob", reason="RUNNING")
    bus.emit("bot_restart", bot="a1", user="alice", reason="bot_not_running", attempt=1)
    await wait_for(lambda: len(got) == 4, timeout=5)
    first = got[0].id
    assert [e.type for e in await bus.recent(2)] == ["bot_state", "bot_restart"]
    assert [e.id for e in await bus.recent(2, since_id=first)] == [first + 1, first + 2]
    assert [e.reason for e in await bus.recent(10, user="alice")] == [
        "RUNNING",
        "bot_not_running",
    ]
    assert await bus.recent(10, user="carol") == []


async def test_a_failing_listener_does_not_stop_the_others(bus: EventBus) -> None:
    seen_async: list[int] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("listener bug")

    async def slow(event: Event) -> None:
        await asyncio.sleep(0)
        seen_async.append(event.id)

    async def broken_async(_event: Event) -> None:
        raise ValueError("async listener bug")

    bus.add_listener(broken)
    bus.add_listener(broken_async)
    bus.add_listener(slow)
    got = collect(bus)
    bus.emit("pool_suspect", pool="pool-1", reason="exited")
    bus.emit("pool_recovery", pool="pool-1", reason="restart", ok=True)
    await wait_for(lambda: len(got) == 2, timeout=5)
    assert seen_async == [e.id for e in got]


async def test_a_removed_listener_is_not_called_again(bus: EventBus) -> None:
    got: list[Event] = []
    remove = bus.add_listener(got.append)
    last = collect(bus)
    bus.emit("agent_connected", pool="pool-1")
    await wait_for(lambda: len(last) == 1, timeout=5)
    remove()
    remove()  # twice is harmless
    bus.emit("agent_disconnected", pool="pool-1")
    await wait_for(lambda: len(last) == 2, timeout=5)
    assert [e.type for e in got] == ["agent_connected"]


async def test_a_subscriber_sees_its_users_events_in_order(bus: EventBus) -> None:
    with bus.subscribe("alice") as alice, bus.subscribe() as admin:
        bus.emit("bot_state", bot="a1", user="alice", reason="STARTING")
        bus.emit("pool_died", pool="pool-1", reason="oom")
        bus.emit("bot_state", bot="b1", user="bob", reason="RUNNING")
        bus.emit("bot_state", bot="a1", user="alice", reason="RUNNING")
        mine = [await asyncio.wait_for(anext(alice), 5) for _ in range(2)]
        everything = [await asyncio.wait_for(anext(admin), 5) for _ in range(4)]
    assert [e.reason for e in mine] == ["STARTING", "RUNNING"]
    assert [e.type for e in everything] == ["bot_state", "pool_died", "bot_state", "bot_state"]


async def test_a_slow_subscriber_is_ended_after_what_was_queued(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "SUBSCRIBER_QUEUE", 3)
    got = collect(bus)
    with bus.subscribe() as slow:
        for i in range(10):
            bus.emit("agent_connected", pool=f"pool-{i}")
        await wait_for(lambda: len(got) == 10, timeout=5)
        assert slow.dropped
        received = [e.pool_id async for e in slow]
    assert received == ["pool-0", "pool-1", "pool-2"]


async def test_ending_streams_ends_every_subscription(bus: EventBus) -> None:
    with bus.subscribe() as sub:
        bus.end_streams()
        assert [e async for e in sub] == []
        assert not sub.dropped


async def test_close_stores_what_is_pending_and_later_events_are_only_logged(
    store: Store,
) -> None:
    bus = EventBus(store)
    bus.start()
    bus.emit("pool_died", pool="pool-1", reason="kill")
    bus.emit("pool_suspect", pool="pool-1", reason="exited")
    await bus.close()
    bus.emit("agent_connected", pool="pool-1")  # after close: no error, not stored
    assert [e.type for e in await store.events(10, None, None)] == ["pool_died", "pool_suspect"]


async def test_emit_never_raises_and_keeps_odd_detail_as_text(bus: EventBus) -> None:
    got = collect(bus)
    bus.emit("pool_recovery", pool="pool-1", reason="restart", ok=False, error=RuntimeError("x"))
    await wait_for(lambda: got, timeout=5)
    (stored,) = await bus.recent(1)
    assert stored.detail == {"ok": False, "error": "x"}


async def test_a_bus_without_a_store_only_logs() -> None:
    bus = EventBus(None)
    bus.emit("agent_connected", pool="pool-1")
    assert await bus.recent(10) == []
    await bus.close()


async def test_a_version_2_store_gains_the_events_table_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    from controller.store.schema import _SCHEMA_V1, _SCHEMA_V2

    path = tmp_path / "v2.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_V1 + _SCHEMA_V2)
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.execute(
        "INSERT INTO pools (id, num, port_start, capacity, used, token_hash, created_at, launch)"
        " VALUES ('pool-1', 1, 9000, 10, 0, 'h', 0, 'exec')"
    )
    db.commit()
    db.close()
    store = Store(path)
    await store.open()
    (pool,), _ = await store.load()
    assert (pool.id, pool.launch) == ("pool-1", "exec")
    assert await store.add_events([Event(0, 1.0, "pool_died", "pool-1", None, None, "die")], 10)
    assert [e.type for e in await store.events(10, None, None)] == ["pool_died"]
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    assert db.execute("SELECT count(*) FROM events").fetchone() == (1,)
    db.close()


async def test_a_failed_store_write_loses_only_its_batch(
    bus: EventBus, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.add_events
    calls = 0

    async def flaky(events: list[Event], keep: int) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return await real(events, keep)

    monkeypatch.setattr(store, "add_events", flaky)
    got = collect(bus)
    bus.emit("pool_died", pool="pool-1", reason="die")
    await wait_for(lambda: calls == 1, timeout=5)
    bus.emit("agent_connected", pool="pool-1")
    await wait_for(lambda: got, timeout=5)
    assert [e.type for e in got] == ["agent_connected"]
