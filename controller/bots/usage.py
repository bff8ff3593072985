"""Each bot's memory and CPU over the last hour, for the dashboard's chart.

A sample every STEP seconds of what the bots' agents last reported (the first within TICK
seconds of a bot's process appearing), kept in memory for WINDOW seconds: at most
WINDOW / STEP + 1 samples a bot (121), so a thousand bots cost about 121,000 small
tuples. The controller does not keep them across a restart. The history decides what to
keep (pure, clock given); UsageSampler is the loop that feeds it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from controller.pools.registry import PoolRegistry

WINDOW = 3600.0
STEP = 30.0
TICK = 5.0


class UsageHistory:
    def __init__(self, window: float = WINDOW, step: float = STEP) -> None:
        self.window = window
        self.step = step
        self.limit = int(window / step) + 1
        self._samples: dict[str, deque[tuple[float, int, float]]] = {}

    def record(self, now: float, readings: Mapping[str, tuple[int, float] | None]) -> None:
        """One round: each existing bot's (resident bytes, CPU percent), or None while it has
        no process (its history stays). Bots not in the round (deleted) are forgotten."""
        for bot_id in set(self._samples) - set(readings):
            del self._samples[bot_id]
        for bot_id, reading in readings.items():
            samples = self._samples.get(bot_id)
            if reading is not None:
                if samples is None:
                    samples = self._samples[bot_id] = deque(maxlen=self.limit)
                # Rounds come every TICK: a bot's first sample is taken soon after its
                # process appears, the next ones a step apart.
                if not samples or now - samples[-1][0] >= self.step:
                    samples.append((now, *reading))
            while samples and now - samples[0][0] > self.window:
                samples.popleft()

    def series(self, bot_id: str) -> list[dict[str, Any]]:
        return [
            {"t": round(t, 1), "memoryBytes": rss, "cpuPercent": cpu}
            for t, rss, cpu in self._samples.get(bot_id, ())
        ]


class UsageSampler:
    """Every TICK seconds, offers the history what the registry holds of each bot."""

    def __init__(self, registry: PoolRegistry, history: UsageHistory, clock: Callable[[], float]):
        self.registry = registry
        self.history = history
        self.clock = clock

    def sample(self) -> None:
        readings: dict[str, tuple[int, float] | None] = {}
        for bot in self.registry.bots.values():
            status = self.registry.status_of(bot)
            alive = status is not None and status.pid > 0
            readings[bot.id] = (status.rss, status.cpu) if alive else None
        self.history.record(self.clock(), readings)

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(TICK)
