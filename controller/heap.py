"""Garbage-collector policy for a long-lived server with a large, steady heap.

A controller that holds 10,000 pools keeps about a million long-lived objects (records,
sessions, metrics). CPython's full (generation-2) collection walks all of them: up to
0.44 s measured, during which the event loop answers nothing, neither heartbeats nor
users' proxied requests. Nearly all of those objects live as long as the controller, so
walking them finds nothing to free.

So the keeper moves what has survived into CPython's permanent generation
(`gc.freeze()`), which collections no longer walk:
- at start-up, after the store is loaded (one full collection first, so no garbage is
  frozen), and
- whenever a full collection took longer than the pause budget, right after it: the heap
  was just collected, so what is frozen is what is alive.

Frozen objects are still freed by reference counting when they are no longer used; only a
reference cycle among them would stay until the controller restarts (bounded: at most
what was alive at a freeze). Young collections run less often than CPython's default (every
`young_threshold` net allocations instead of 700): each is cheap, and most of a
heartbeat's objects die young anyway.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from common.settings import ControllerSettings

log = structlog.get_logger("controller.heap")


@dataclass(frozen=True)
class HeapConfig:
    enabled: bool = True
    pause_budget: float = 0.02  # seconds a full collection may take before a freeze
    min_interval: float = 60.0  # seconds between two freezes after start-up
    young_threshold: int = 10_000  # CPython's default is 700

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> HeapConfig:
        return cls(enabled=settings.gc_freeze, pause_budget=settings.gc_pause_budget_ms / 1000)


def should_freeze(full_pause: float, now: float, last_freeze_at: float, config: HeapConfig) -> bool:
    """Whether to freeze the heap after a full collection that took `full_pause` seconds."""
    return (
        config.enabled
        and full_pause > config.pause_budget
        and now - last_freeze_at >= config.min_interval
    )


class HeapKeeper:
    """Watches the collector and freezes the heap when full collections grow too long.

    The collector's callback only records (it may run in any thread); the freeze happens on
    the event loop, outside any collection, within `poll` seconds."""

    def __init__(self, config: HeapConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.last_freeze_at = float("-inf")
        self.freezes = 0
        self.longest_full = 0.0
        self._started = 0.0
        self._due = False
        self._thresholds = gc.get_threshold()

    def settle(self) -> None:
        """After start-up: one collection, then everything alive is frozen."""
        if not self.config.enabled:
            return
        if self._on_gc not in gc.callbacks:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(self.config.young_threshold, *self._thresholds[1:])
            gc.callbacks.append(self._on_gc)
        gc.collect()
        self._freeze()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.longest_full = max(self.longest_full, pause)
        if should_freeze(pause, self.clock(), self.last_freeze_at, self.config):
            self._due = True

    def _freeze(self) -> None:
        gc.freeze()
        self.last_freeze_at = self.clock()
        self.freezes += 1
        log.info("heap_frozen", objects=gc.get_freeze_count(), freezes=self.freezes)

    async def run(self, poll: float = 1.0) -> None:
        """Freeze when a long full collection asked for it; until cancelled."""
        while True:
            await asyncio.sleep(poll)
            if self._due:
                self._due = False
                self._freeze()

    def close(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
            gc.set_threshold(*self._thresholds)
