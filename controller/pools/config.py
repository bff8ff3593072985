"""What the pools' side of the controller is built from: how bots are started, how agents
reach the controller, and how long a pool may be silent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.settings import ControllerSettings
from common.settings.bots import BASE64, encode_markets


@dataclass(frozen=True, slots=True)
class PoolsConfig:
    bot_command: tuple[str, ...]
    controller_url: str  # where agents dial the controller's WebSocket
    agent_env: dict[str, str] = field(default_factory=dict)  # every pool's agent gets these
    pool_grace: float = 20.0  # seconds of silence after which a pool is suspect
    bot_launch: str = "preload"  # BOT_LAUNCH: a pool's launch unless it has its own
    # Pool N's market-data proxy listens on this + N - 1 (below pool_base_port); None: off.
    market_data_base_port: int | None = None
    pool_base_port: int = 9000
    backups_dir: Path | None = None  # BACKUP_DIR; pool P's target is <it>/pools/P
    # BACKUP_TRANSPORT: mount (each pool writes its target), or controller (sent to it)
    backup_transport: str = "mount"
    bot_memory: int = 0  # a bot's memory limit unless it has its own (0: none)
    bot_cpu: float = 0.0  # BOT_CPU_LIMIT: CPUs per bot where bots have cgroups (0: none)
    fence_timeout: float = 0.0  # AGENT_FENCE_TIMEOUT in seconds, 0: agents do not fence

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
                "PRELOAD_MARKETS": BASE64 + encode_markets(settings.preload_markets)
                if settings.preload_markets
                else "",
                "PRELOAD_IMMORTAL": settings.preload_immortal,
                "MARKET_DATA_PROXY": "on" if settings.market_data_proxy else "off",
                "MARKET_DATA_QUOTE_TTL": str(settings.market_data_quote_ttl_ms),
                "MARKET_DATA_CANDLE_TTL": str(settings.market_data_candle_ttl_ms),
                "MARKET_DATA_CACHE_BYTES": str(settings.market_data_cache_bytes),
                "BACKUP_INTERVAL": str(settings.backup_interval_ms),
                "BACKUP_RETENTION": str(settings.backup_retention_days),
                "BOT_BUSY_CPU": str(settings.bot_busy_cpu),
                "BOT_BUSY_WINDOW": str(settings.bot_busy_window_ms),
                "BOT_BUSY_POLICY": settings.bot_busy_policy,
                "AGENT_FENCE_TIMEOUT": str(settings.fence_timeout_ms),
                "AGENT_FENCE_MARGIN": str(settings.fence_margin_ms),
            },
            pool_grace=settings.pool_grace_ms / 1000,
            fence_timeout=settings.fence_timeout_ms / 1000,
            bot_launch=settings.bot_launch,
            bot_memory=settings.default_bot_memory,
            bot_cpu=settings.bot_cpu_limit,
            market_data_base_port=settings.market_data_base_port
            if settings.market_data_proxy
            else None,
            pool_base_port=settings.pool_base_port,
            backups_dir=settings.backups_path,
            backup_transport=settings.backup_transport,
        )

    def market_data_env(self, pool_num: int) -> dict[str, str]:
        """What pool `pool_num`'s agent is told of its market-data proxy: its port, or off
        when there is none to give (the proxies' ports would reach the bots' blocks)."""
        port = market_data_port(self.market_data_base_port, pool_num, self.pool_base_port)
        if port is None:
            return {"MARKET_DATA_PROXY": "off"}
        return {"MARKET_DATA_PORT": str(port)}


def pool_backup_dir(backups_dir: Path | None, pool_id: str) -> Path | None:
    """Where pool `pool_id` writes its bots' backups (None: backups are off): a directory of
    its own, so that a pool can only write its own bots' backups."""
    return None if backups_dir is None else backups_dir / "pools" / pool_id


def market_data_port(base: int | None, pool_num: int, pool_base_port: int) -> int | None:
    """Pool `pool_num`'s market-data proxy port: base + num - 1, if that stays below the
    bots' ports; None when the proxy is off or no port is left."""
    if base is None:
        return None
    port = base + pool_num - 1
    return port if port < pool_base_port else None


def agent_url(settings: ControllerSettings) -> str:
    if settings.agent_controller_url:
        return settings.agent_controller_url
    host = settings.controller_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{settings.controller_port}/api/agents/ws"
