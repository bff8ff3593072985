"""Prometheus metrics of one controller, in a registry of its own.

Event metrics (proxy requests, allocations, restarts, recoveries) are counted where they
happen. State metrics (pools, bots, slots, heartbeats) are read from the in-memory view
only when scraped (controller/health/gauges.py), so the heartbeat path pays nothing for
them. Labels are bounded: status classes, states, reasons, and the pool id only for the
heartbeat age.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.registry import Collector

# Proxied requests answer in about a millisecond; bots that compute can take seconds.
PROXY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)
# An allocation is one store transaction, plus a runtime's creation for a new pool.
ALLOCATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)


class Metrics:
    """The instruments the controller updates, and the registry /metrics renders."""

    def __init__(self, collectors: Iterable[Collector] = ()) -> None:
        """`collectors` read state when scraped (controller/health/gauges.py: the fleet)."""
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
        self.bot_memory_limits = Counter(
            "ftpool_bot_memory_limit", "Bots over their memory limit for the grace period, "
            "by what was done (restart, or stopped once failed)",
            ["action"], registry=self.registry,
        )  # fmt: skip
        self.pool_recoveries = Counter(
            "ftpool_pool_recoveries", "Pool recovery actions by the monitor, by action and result",
            ["action", "result"], registry=self.registry,
        )  # fmt: skip
        # Children made once: labels() takes a lock and a dict lookup on every call.
        self._proxy_by_class = {c: self.proxy_requests.labels(f"{c}xx") for c in range(1, 6)}
        for collector in collectors:
            self.registry.register(collector)

    def proxied(self, status: int, seconds: float) -> None:
        self._proxy_by_class[min(max(status // 100, 1), 5)].inc()
        self.proxy_seconds.observe(seconds)
