"""Records the controller keeps in SQLite and mirrors in memory."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.states import RunState


@dataclass(frozen=True, slots=True)
class RestartRecord:
    """What the store keeps of a bot's automatic restarts (it survives the controller);
    the restart policy (controller/health/restarts.py) decides over it."""

    attempts: int = 0  # in the current cycle
    cycles: int = 0  # completed cycles, each ended by a cooldown
    last: float = 0.0  # epoch seconds of the last automatic restart
    failed: bool = False
    memory: int = 0  # of the restarts since the record was clean: over its memory limit


@dataclass(frozen=True, slots=True)
class BotSecrets:
    """A bot's own API credentials; they never leave the controller and its pool."""

    username: str = field(repr=False)
    password: str = field(repr=False)
    jwt_secret: str = field(repr=False)
    ws_token: str = field(repr=False)

    def basic_auth(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class BotRecord:
    id: str
    user_id: str
    pool_id: str
    slot: int
    port: int
    strategy: str
    strategy_source: bytes = field(repr=False)
    config: dict[str, Any] = field(repr=False)
    secrets: BotSecrets
    run: RunState = RunState.RUNNING
    nonce: int = 0
    deleting: bool = False
    purge: bool = False
    created_at: float = 0.0
    held: bool = False  # being moved to another pool (moves/): no agent runs it
    restarts: RestartRecord = field(default_factory=RestartRecord)
    memory_limit: int | None = None  # its own memory limit in bytes; None: the default
    cpu_limit: float | None = None  # its own CPU limit in CPUs; None: the default

    def memory_limit_or(self, default: int) -> int:
        """Its memory limit in bytes: its own, or else `default` (0: none)."""
        return default if self.memory_limit is None else self.memory_limit

    def cpu_limit_or(self, default: float) -> float:
        """Its CPU limit in CPUs: its own, or else `default` (0: none)."""
        return default if self.cpu_limit is None else self.cpu_limit


@dataclass(frozen=True, slots=True)
class Stay:
    """A bot's time in one pool (the store's bot_pools): from `since` until `until` (None:
    it lives there now), by the controller's clock."""

    pool_id: str
    since: float
    until: float | None = None


@dataclass(frozen=True, slots=True)
class PoolRecord:
    id: str
    num: int
    port_start: int
    capacity: int
    owner: str | None
    used: int
    generation: int
    token_hash: str = field(repr=False)
    created_at: float
    emptied_at: float | None = None
    launch: str | None = None  # None: the controller's BOT_LAUNCH
    preloader_nonce: int = 0
    legacy_of: str | None = None  # a legacy pool: the one bot it was made for
    removing: bool = False  # its runtime is being removed; it takes no bot meanwhile
    draining: bool = False  # its bots are being moved out (evacuation): it takes no bot
    market_data: bool | None = None  # its market-data proxy on or off (None: the setting's)
    abandoned: bool = False  # left on a lost node by a failover (draining too): never run again

    @property
    def container_name(self) -> str:
        # A legacy bot's container keeps the name one container per bot always had.
        return f"freqtrade-{self.legacy_of}" if self.legacy_of else f"freqtrade-pool-{self.id}"


@dataclass(frozen=True, slots=True)
class Event:
    """A health or recovery event (controller/events.py), as the store keeps it."""

    id: int  # assigned by the store; 0 until stored
    ts: float
    type: str
    pool_id: str | None
    bot_id: str | None
    user_id: str | None  # the bot's owner; None for pool events, which only admins see
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def visible_to(self, user_id: str | None) -> bool:
        """Whether a user sees this event; None stands for an admin, who sees all."""
        return user_id is None or self.user_id == user_id

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "poolId": self.pool_id,
            "instanceId": self.bot_id, "reason": self.reason,
            "timestamp": datetime.fromtimestamp(self.ts, UTC).isoformat(),
            "detail": self.detail,
        }  # fmt: skip
