"""Gauges of the fleet, read from the in-memory view only when /metrics is scraped: pools
by state, bots by status word, slots, agent frames and each pool's heartbeat age."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.states import PoolStatusWord
from controller.bots.limits import (
    CGROUP_V1,
    CGROUP_V2,
    MEASURED,
    NO_LIMITS,
    BotLimits,
    limits_mode,
)
from controller.health.status import bot_status_word
from controller.pools.live import exchange_totals
from controller.pools.manager import PoolManager

# Each pool's market-data proxy, per exchange: (metric, help, counter field). Counters start
# again when a proxy restarts, as Prometheus counters may.
MARKET_DATA_COUNTERS = (
    ("requests", "Bots' exchange requests through their pool's market-data proxy", "requests"),
    ("cache_hits", "Bots' requests answered from the market-data cache", "hits"),
    ("coalesced", "Bots' requests answered by an identical one already in flight", "coalesced"),
    ("upstream_requests", "Requests the market-data proxy sent to the exchange", "upstream"),
    ("passed_through", "Private or untabled requests passed through unchanged", "passthrough"),
    ("refused", "Requests answered 429/418 by the proxy while backing off", "refused"),
    ("errors", "Requests answered 502/504: the exchange unreachable or too slow", "errors"),
    ("backoffs", "Back-offs of the pool after the exchange answered 429 or 418", "backoffs"),
)


class PoolStateCollector(Collector):
    """Pools, bots, slots and heartbeats, as the PoolManager holds them at scrape time."""

    def __init__(self, pools: PoolManager, limits: BotLimits = NO_LIMITS) -> None:
        self.pools = pools
        self.limits = limits

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
        yield CounterMetricFamily(
            "ftpool_pool_fences", "Times an agent reconnected having fenced its pool (stopped "
            "its bots, cut off from the controller for AGENT_FENCE_TIMEOUT)",
            value=self.pools.sessions.fences,
        )  # fmt: skip
        yield from self.backups(now)
        yield from self.bot_memory()
        yield from self.bot_cpu()
        yield from self.market_data()

    def backups(self, now: float) -> Iterator[Metric]:
        """Pools whose backups fail (their target unreachable or full), and each pool's time
        since its last complete backup round."""
        lives = self.pools.registry.live
        failing = sum(1 for live in lives.values() if live.backup and not live.backup.ok)
        yield GaugeMetricFamily(
            "ftpool_backup_failing_pools", "Pools whose backup target fails now", value=failing
        )
        yield CounterMetricFamily(
            "ftpool_backup_failures", "Times a pool's backups began to fail",
            value=self.pools.sessions.backup_failures,
        )  # fmt: skip
        age = GaugeMetricFamily(
            "ftpool_backup_age_seconds",
            "Seconds since each pool's last backup round that wrote everything",
            labels=["pool"],
        )
        for pool_id, live in lives.items():
            if live.backup is not None and live.backup.last_ok:
                age.add_metric([pool_id], round(now - live.backup.last_ok, 3))
        yield age

    def bot_memory(self) -> Iterator[Metric]:
        """Bots over their memory limit now, as their agents last measured them (each bot's
        own figure is in GET /api/bots: metrics carry no per-bot labels)."""
        registry, over = self.pools.registry, 0
        for bot in registry.bots.values():
            limit = self.limits.memory_of(bot)
            status = registry.status_of(bot) if limit else None
            if status is not None and status.uss is not None and status.uss > limit:
                over += 1
        yield GaugeMetricFamily(
            "ftpool_bots_over_memory_limit",
            "Bots whose own memory (USS) is over their limit now, within their grace or not",
            value=over,
        )
        yield CounterMetricFamily(
            "ftpool_bot_oom_kills", "Kernel OOM kills in bots' own cgroups, at their limit",
            value=self.pools.sessions.bot_oom_kills,
        )  # fmt: skip
        modes = GaugeMetricFamily(
            "ftpool_pools_by_limits_mode",
            "Pools by how their bots are limited (cgroup-v1, cgroup-v2, measured)",
            labels=["mode"],
        )
        counted = Tally(limits_mode(live.stats) for live in registry.live.values())
        for mode in (CGROUP_V1, CGROUP_V2, MEASURED):
            modes.add_metric([mode], counted.get(mode, 0))
        yield modes

    def bot_cpu(self) -> Iterator[Metric]:
        """Bots their agents deprioritise now as busy (by the pool's BOT_BUSY_POLICY), and
        bots using 90 % or more of their CPU limit (no per-bot labels)."""
        registry, at_limit = self.pools.registry, 0
        deprioritised: Tally[str] = Tally()
        for bot in registry.bots.values():
            status = registry.status_of(bot)
            if status is None:
                continue
            if status.busy_since is not None:
                live = registry.live.get(bot.pool_id)
                stats = live.stats if live else None
                deprioritised[(stats.busy_policy if stats else None) or "unknown"] += 1
            limit = self.limits.cpu_of(bot)
            if limit and status.cpu >= 90 * limit:
                at_limit += 1
        gauge = GaugeMetricFamily(
            "ftpool_bots_deprioritised",
            "Bots their agent deprioritises now as busy (BOT_BUSY_CPU), by BOT_BUSY_POLICY",
            labels=["policy"],
        )
        for policy in sorted({"idle", "nice", *deprioritised}):
            gauge.add_metric([policy], deprioritised.get(policy, 0))
        yield gauge
        yield CounterMetricFamily(
            "ftpool_bot_deprioritisations", "Times an agent deprioritised a busy bot",
            value=self.pools.sessions.bot_deprioritisations,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "ftpool_bots_at_cpu_limit",
            "Bots using 90 % or more of their CPU limit (their own or BOT_CPU_LIMIT) now",
            value=at_limit,
        )

    def market_data(self) -> Iterator[Metric]:
        """Per pool and exchange, as each pool's agent last reported its proxy."""
        labels = ["pool", "exchange"]
        counters = [
            (CounterMetricFamily(f"ftpool_market_data_{name}", doc, labels=labels), field)
            for name, doc, field in MARKET_DATA_COUNTERS
        ]
        used = GaugeMetricFamily(
            "ftpool_market_data_used_weight",
            "The pool's address's request weight this minute, as the exchange last reported it",
            labels=labels,
        )
        cache = GaugeMetricFamily(
            "ftpool_market_data_cache_bytes", "Bytes the market-data cache holds", labels=["pool"]
        )
        for pool_id, live in self.pools.registry.live.items():
            if live.market_data is None:
                continue
            cache.add_metric([pool_id], live.market_data.cache_bytes)
            for exchange, total in exchange_totals(live.market_data).items():
                for family, field in counters:
                    family.add_metric([pool_id, exchange], getattr(total, field))
                used.add_metric([pool_id, exchange], total.used_weight)
        yield from (family for family, _ in counters)
        yield used
        yield cache
