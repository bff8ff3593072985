"""What a pool's agent last told the controller, kept in memory only."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from aiohttp import web

from common.protocol import BotStatus, PoolStats
from common.states import ProcessState


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class PoolLive:
    """What the pool's agent last told us; reset when it reconnects."""

    ws: web.WebSocketResponse | None = None
    # The runtime's last word about the pool dying (die, oom, kill, destroy) and when.
    runtime_event: str = ""
    runtime_event_at: float = 0.0
    agent_version: str = ""
    connected_at: float = 0.0
    disconnected_at: float = field(default_factory=time.time)
    last_seen: float = 0.0
    seq: int = 0
    acked_gen: int = 0
    bots: dict[str, BotStatus] = field(default_factory=dict)
    stats: PoolStats | None = None
    preloader: ProcessState = ProcessState.ABSENT
    features: frozenset[str] = frozenset()  # from the agent's hello (AGENT_FEATURES)

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed
