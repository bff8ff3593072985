"""Prometheus metrics of one controller, in a registry of its own.

Event metrics (proxy requests, allocations, restarts, recoveries) are counted where they
happen. State metrics (pools, bots, slots, heartbeats) are read from the in-memory view
only when scraped, so the heartbeat path pays nothing for them. Labels are bounded:
status classes, states, reasons, and the pool id only for the heartbeat age.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.states import PoolStatusWord
from controller.health.status import bot_status_word
from controller.pools.manager import PoolManager

# Proxied requests answer in about a millisecond; bots that compute can take seconds.
PROXY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)
# An allocation is one store transaction, plus a runtime's creation for a new pool.
ALLOCATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)


class PoolStateCollector(Collector):
    """Pools, bots, slots and heartbeats, as the PoolManager holds them at scrape time."""

    def __init__(self, pools: PoolManager) -> None:
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        pools = self.pools
        now = time.time()
        pool_states = GaugeMetricFamily("ftpool_pools", "Pools by state", labels=["state"])
        suspect = sum(1 for p in pools.registry.pools if pools.sessions.is_suspect(p))
        pool_states.add_metric([PoolStatusWord.RUNNING], len(pools.registry.pools) - suspect)
        pool_states.add_metric([PoolStatusWord.SUSPECT], suspect)
        yield pool_states
        bot_states = GaugeMetricFamily(
            "ftpool_bots", "Bots by status, as GET /api/bots reports it", labels=["status"]
        )
        statuses = Tally(bot_status_word(pools, b) for b in pools.registry.bots.values())
        for status, count in sorted(statuses.items()):
            bot_states.add_metric([status], count)
        yield bot_states
        used = sum(p.used for p in pools.registry.pools.values())
        capacity = sum(p.capacity for p in pools.registry.pools.values())
        yield GaugeMetricFamily("ftpool_slots_used", "Bot slots taken in all pools", value=used)
        yield GaugeMetricFamily(
            "ftpool_slots_free", "Bot slots free in existing pools", value=capacity - used
        )
        yield CounterMetricFamily(
            "ftpool_agent_frames_received",
            "Frames received from agents after their hello (heartbeats, log answers)",
            value=pools.sessions.frames_received,
        )
        yield CounterMetricFamily(
            "ftpool_agent_frames_rejected",
            "Agent frames refused: malformed, unexpected, or a hello without a valid token",
            value=pools.sessions.frames_rejected,
        )
        age = GaugeMetricFamily(
            "ftpool_pool_heartbeat_age_seconds",
            "Seconds since each pool's agent was last heard from (pools never heard from: absent)",
            labels=["pool"],
        )
        for pool_id, live in pools.registry.live.items():
            if live.last_seen:
                age.add_metric([pool_id], round(now - live.last_seen, 3))
        yield age


class Metrics:
    """The instruments the controller updates, and the registry /metrics renders."""

    def __init__(self, pools: PoolManager) -> None:
        self.registry = CollectorRegistry()
        self.proxy_requests = Counter(
            "ftpool_proxy_requests", "Proxied bot API requests by status class",
            ["status"], registry=self.registry,
        )  # fmt: skip
        self.proxy_seconds = Histogram(
            "ftpool_proxy_request_seconds", "Time to answer a proxied bot API request",
            buckets=PROXY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.allocation_seconds = Histogram(
            "ftpool_allocation_seconds", "Time to provision a bot (allocation and push)",
            buckets=ALLOCATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.bot_restarts = Counter(
            "ftpool_bot_restarts", "Automatic bot restarts by the monitor, by reason",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.pool_recoveries = Counter(
            "ftpool_pool_recoveries", "Pool recovery actions by the monitor, by action and result",
            ["action", "result"], registry=self.registry,
        )  # fmt: skip
        # Children made once: labels() takes a lock and a dict lookup on every call.
        self._proxy_by_class = {c: self.proxy_requests.labels(f"{c}xx") for c in range(1, 6)}
        self.registry.register(PoolStateCollector(pools))

    def proxied(self, status: int, seconds: float) -> None:
        self._proxy_by_class[min(max(status // 100, 1), 5)].inc()
        self.proxy_seconds.observe(seconds)
