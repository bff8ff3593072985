"""The one interface every pool runtime implements."""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class RuntimeState(enum.StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class PoolLaunch:
    """Everything a runtime needs to start a pool's supervisord and agent."""

    pool_id: str
    capacity: int
    port_start: int
    token: str = field(repr=False)
    controller_url: str
    agent_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoolUsage:
    memory_bytes: int
    memory_limit: int
    cpu_percent: float | None  # None where the runtime cannot tell without sampling twice


class PoolRuntime(abc.ABC):
    name: str

    @abc.abstractmethod
    async def create(self, launch: PoolLaunch) -> None:
        """Create and start the pool; idempotent for a pool that already runs."""

    @abc.abstractmethod
    async def inspect(self, pool_id: str) -> RuntimeState: ...

    @abc.abstractmethod
    async def restart(self, pool_id: str) -> None:
        """Start an exited pool again (or restart a running one) with its existing token."""

    @abc.abstractmethod
    async def restart_agent(self, pool_id: str) -> None:
        """Restart only the pool's agent (its supervisord program); the bots keep running."""

    @abc.abstractmethod
    async def remove(self, pool_id: str) -> None:
        """Stop the pool and delete it; bot archives are kept under BOT_BASE_DIR/archive."""

    @abc.abstractmethod
    async def stats(self, pool_id: str) -> PoolUsage | None: ...

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Ids of the pools this runtime finds, known to the controller or not."""

    @abc.abstractmethod
    def bot_host(self, pool_id: str) -> str:
        """The host the controller uses to reach the bots of a pool."""

    def display_host(self, pool_id: str) -> str:
        """The bot host shown to users (/api/pool/bot); by default where the controller goes."""
        return self.bot_host(pool_id)

    @property
    @abc.abstractmethod
    def bot_listen_ip(self) -> str:
        """The address bots bind inside their pool."""

    @abc.abstractmethod
    def watch(self, on_event: Callable[[str, str], None]) -> None:
        """Call on_event(pool_id, action) from the event loop when a pool dies."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release clients; pools keep running."""
