"""What a pool's agent last told the controller, kept in memory only."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field, fields

from aiohttp import web

from common.protocol import BackupState, BotStatus, MarketDataStats, PoolStats, UpstreamStats
from common.states import ProcessState


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    """Whether `token` is the pool token whose hash is `token_hash` (constant time)."""
    return hmac.compare_digest(hash_token(token), token_hash)


@dataclass
class PoolLive:
    """What the pool's agent last told us; reset when it reconnects."""

    ws: web.WebSocketResponse | None = None
    # The runtime's last word about the pool dying (die, oom, kill, destroy) and when.
    runtime_event: str = ""
    runtime_event_at: float = 0.0
    agent_version: str = ""
    freqtrade_version: str = ""  # from the agent's hello; "" from agents before it
    connected_at: float = 0.0
    disconnected_at: float = field(default_factory=time.time)
    last_seen: float = 0.0
    # The same two moments on the sessions' monotonic clock: the wait before a pool may be
    # replaced is measured on it too, so a step of the wall clock cannot shorten it.
    closed_mono: float = field(default_factory=time.monotonic)
    heard_mono: float = 0.0
    seq: int = 0
    acked_gen: int = 0
    bots: dict[str, BotStatus] = field(default_factory=dict)
    stats: PoolStats | None = None
    preloader: ProcessState = ProcessState.ABSENT
    market_data: MarketDataStats | None = None  # the pool's market-data proxy, if it runs one
    market_data_taken: bool = False  # a stranger held its port, and the proxy has not since
    backup: BackupState | None = None  # the pool's backups, if it makes any
    features: frozenset[str] = frozenset()  # from the agent's hello (AGENT_FEATURES)
    # The agent's own AGENT_FENCE_TIMEOUT in seconds, from its hello (0: it did not say);
    # kept once it is gone: the controller waits for the longer of it and its own.
    fence_timeout: float = 0.0

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    @property
    def contact_ended(self) -> float:
        """Since when its agent may have heard nothing from this controller, for the wait
        before its pool may be replaced (meaningful once its connection is gone): when that
        connection ended (a silent one is closed within 1.5 ping periods, the agent's
        period, common/fencing.py), or its last heartbeat if later, or the controller's
        start. Not the last heartbeat alone: pings keep a connection, and so the contact
        the agent's fence counts from, alive without heartbeats (a hung supervisord)."""
        return max(self.last_seen, self.disconnected_at)

    @property
    def contact_ended_mono(self) -> float:
        """`contact_ended` on the sessions' monotonic clock."""
        return max(self.heard_mono, self.closed_mono)


# Per exchange, these are the largest of its upstreams', not their sum.
_LARGEST = ("used_weight", "backoff_s")


def exchange_totals(stats: MarketDataStats) -> dict[str, UpstreamStats]:
    """A proxy's counters per exchange, over its upstream origins."""
    totals: dict[str, UpstreamStats] = {}
    for upstream in stats.upstreams:
        total = totals.setdefault(upstream.exchange, UpstreamStats(upstream.exchange, "*"))
        for f in fields(UpstreamStats)[2:]:
            ours, theirs = getattr(total, f.name), getattr(upstream, f.name)
            setattr(total, f.name, max(ours, theirs) if f.name in _LARGEST else ours + theirs)
    return totals
