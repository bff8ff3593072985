"""What the pools' side of the controller is built from: how bots are started, how agents
reach the controller, and how long a pool may be silent."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.settings import ControllerSettings


@dataclass(frozen=True, slots=True)
class PoolsConfig:
    bot_command: tuple[str, ...]
    controller_url: str  # where agents dial the controller's WebSocket
    agent_env: dict[str, str] = field(default_factory=dict)  # every pool's agent gets these
    pool_grace: float = 20.0  # seconds of silence after which a pool is suspect
    bot_launch: str = "preload"  # BOT_LAUNCH: a pool's launch unless it has its own

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> PoolsConfig:
        return cls(
            bot_command=settings.bot_command,
            controller_url=agent_url(settings),
            agent_env={
                "HEARTBEAT_INTERVAL": str(settings.heartbeat_interval_ms),
                "AGENT_POLL_INTERVAL": str(settings.poll_interval_ms),
                "BOT_PING_TIMEOUT": str(settings.bot_ping_timeout_ms),
                "LOG_LEVEL": settings.log_level,
                "PRELOAD_MODULES": settings.preload_modules,
            },
            pool_grace=settings.pool_grace_ms / 1000,
            bot_launch=settings.bot_launch,
        )


def agent_url(settings: ControllerSettings) -> str:
    if settings.agent_controller_url:
        return settings.agent_controller_url
    host = settings.controller_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{settings.controller_port}/api/agents/ws"
