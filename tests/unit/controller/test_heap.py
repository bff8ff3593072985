"""The controller's garbage-collector policy: when the heap is frozen, and that it is."""

from __future__ import annotations

import asyncio
import gc

from controller.heap import HeapConfig, HeapKeeper, should_freeze

CONFIG = HeapConfig(pause_budget=0.02, min_interval=60.0)


def test_a_long_full_collection_freezes_once_a_minute_at_most() -> None:
    assert should_freeze(0.05, now=100.0, last_freeze_at=0.0, config=CONFIG)
    assert not should_freeze(0.01, now=100.0, last_freeze_at=0.0, config=CONFIG)
    assert not should_freeze(0.05, now=100.0, last_freeze_at=50.0, config=CONFIG)
    off = HeapConfig(enabled=False)
    assert not should_freeze(5.0, now=100.0, last_freeze_at=0.0, config=off)


async def test_settle_freezes_the_heap_and_a_long_full_collection_freezes_it_again() -> None:
    now = [1000.0]
    keeper = HeapKeeper(CONFIG, clock=lambda: now[0])
    thresholds = gc.get_threshold()
    try:
        keeper.settle()
        assert keeper.freezes == 1
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == CONFIG.young_threshold
        # A full collection longer than the budget, a minute later: the keeper's loop
        # freezes what survived it.
        now[0] += 61
        keeper._on_gc("start", {"generation": 2})
        keeper._started -= 0.5  # it took half a second
        keeper._on_gc("stop", {"generation": 2})
        assert keeper.longest_full >= 0.5
        task = asyncio.create_task(keeper.run(poll=0.01))
        for _ in range(100):
            if keeper.freezes == 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        assert keeper.freezes == 2
    finally:
        keeper.close()
        gc.unfreeze()
    assert gc.get_threshold() == thresholds
    assert keeper._on_gc not in gc.callbacks


def test_disabled_keeper_leaves_the_collector_alone() -> None:
    keeper = HeapKeeper(HeapConfig(enabled=False))
    before = gc.get_freeze_count(), gc.get_threshold()
    keeper.settle()
    assert (gc.get_freeze_count(), gc.get_threshold()) == before
    assert keeper._on_gc not in gc.callbacks
