"""Held bots a failed move left behind, until their recovery succeeds.

A move that fails lands the bot's staged files in the pool the store has it in and
releases it there (Transfer.recover). When that fails too (the pool's agent not there
within AGENT_TIMEOUT, say) the bot would stay held, its only copy in staging, until a
restart: so it is kept here, and `land_later` (controller/moves/recovery.py) tries its
recovery again, each bot with a backoff of its own, for as long as it takes. One entry
per bot (so at most one per bot of the store); the first failure is an event
(`bot_move_failed`, reason `recovery_failed`), each a log line, and how many wait is the
metric `ftpool_bots_stranded`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.events import EventBus
from controller.records import BotRecord

log = structlog.get_logger("controller.moves")
FIRST_RETRY = 10.0  # seconds after a failure; doubled after each, up to LAST_RETRY
LAST_RETRY = 300.0


def backoff(attempts: int) -> float:
    """Seconds until the next attempt after `attempts` failed ones."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LAST_RETRY)


@dataclass(slots=True)
class Stranded:
    error: str
    attempts: int
    due: float  # monotonic time of its next attempt


class StrandedBots:
    def __init__(self, events: EventBus, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.events = events
        self.monotonic = monotonic
        self.bots: dict[str, Stranded] = {}

    def add(self, bot: BotRecord, error: str, *, failed: bool = True) -> None:
        """The bot's recovery failed (`failed`; else it waits, as staged files wait for
        their pool's agent after a restart): tried again after its backoff."""
        entry = self.bots.get(bot.id)
        attempts = (entry.attempts if entry else 0) + int(failed)
        retry = backoff(attempts) if failed else 0.0
        self.bots[bot.id] = Stranded(error, attempts, self.monotonic() + retry)
        if not failed:
            return
        log.error("bot_move_stranded", bot=bot.id, pool=bot.pool_id, error=error,
                  attempts=attempts, retry=retry)  # fmt: skip
        if attempts == 1:  # its first failure: an event; the next ones are logged
            self.events.emit("bot_move_failed", pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                             reason="recovery_failed", held=True, error=error,
                             retrySeconds=retry)  # fmt: skip

    def done(self, bot_id: str) -> None:
        """Recovered (or no longer this queue's: deleted, released, failed over)."""
        self.bots.pop(bot_id, None)

    def due(self) -> list[str]:
        now = self.monotonic()
        return [bot_id for bot_id, entry in self.bots.items() if entry.due <= now]

    def __contains__(self, bot_id: str) -> bool:
        return bot_id in self.bots

    def __len__(self) -> int:
        return len(self.bots)


class StrandedCollector(Collector):
    def __init__(self, stranded: StrandedBots) -> None:
        self.stranded = stranded

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "ftpool_bots_stranded",
            "Held bots whose move failed and whose recovery is being tried again",
            value=len(self.stranded),
        )
