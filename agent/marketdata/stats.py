"""What the proxy did, per exchange and upstream origin, for the agent's heartbeat.

Origins come from bots' configs, so the tables are bounded: past MAX_ORIGINS, further
origins are counted together under OVERFLOW (and budgets of idle origins are forgotten).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from agent.marketdata.budget import Budget

MAX_ORIGINS = 64
OVERFLOW = "other"


@dataclass(slots=True)
class Counters:
    requests: int = 0  # bots' requests
    hits: int = 0  # answered from the cache
    coalesced: int = 0  # answered by another bot's request in flight
    upstream: int = 0  # sent upstream (shared public fetches and passed-through requests)
    passthrough: int = 0  # of those, private or not in the table: never shared
    refused: int = 0  # answered here: backing off, or over the public share of the budget
    errors: int = 0  # upstream unreachable, too slow or too large: answered 502/504
    weight: int = 0  # the table's weight of the public requests sent upstream


class Stats:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], Counters] = {}

    def of(self, exchange: str, origin: str) -> Counters:
        key = (exchange, origin)
        counters = self._counters.get(key)
        if counters is None:
            if len(self._counters) >= MAX_ORIGINS:
                key = (exchange, OVERFLOW)
            counters = self._counters.setdefault(key, Counters())
        return counters

    def snapshot(
        self, budgets: dict[str, Budget], now: float, cache_bytes: int, cache_entries: int
    ) -> dict[str, Any]:
        upstreams = []
        for (exchange, origin), counters in sorted(self._counters.items()):
            budget = budgets.get(origin, Budget())
            current = budget.minute == int(now // 60)
            upstreams.append({
                "exchange": exchange, "origin": origin, **asdict(counters),
                "used_weight": budget.used if current else 0, "backoffs": budget.backoffs,
                "backoff_s": round(max(0.0, budget.backoff_until - now), 1),
            })  # fmt: skip
        return {"cache": {"bytes": cache_bytes, "entries": cache_entries}, "upstreams": upstreams}


def forget_idle(budgets: dict[str, Budget], now: float) -> None:
    """Keep the budgets bounded: past MAX_ORIGINS, forget those not backing off."""
    if len(budgets) <= MAX_ORIGINS:
        return
    for origin in [o for o, b in budgets.items() if b.backoff_until <= now]:
        del budgets[origin]
        if len(budgets) <= MAX_ORIGINS // 2:
            return
