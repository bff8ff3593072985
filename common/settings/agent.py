"""A pool agent's settings: which pool it is and how it reaches the controller, where its
pool lives, and the settings it shares with the controller (from their domain modules)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from common.ids import ID_PATTERN, is_valid_id
from common.settings import backups, bots, core, health, limits, market_data, pools
from common.settings.loading import _build, load_env
from common.settings.parsing import MS, SettingsError, absolute_path, choice, integer, setting, text


def health_socket() -> Any:
    return setting(
        "AGENT_HEALTH_SOCKET", text, "", "unix socket answering health checks (empty: none)"
    )


@dataclass(frozen=True)
class AgentSettings:
    controller_url: str = setting(
        "CONTROLLER_URL", text, "ws://127.0.0.1:5000/api/agents/ws", "controller's agent socket"
    )
    pool_id: str = setting("POOL_ID", text, "", "this pool's id")
    pool_token: str = setting("POOL_TOKEN", text, "", "this pool's secret token")
    pool_token_file: str = setting(
        "POOL_TOKEN_FILE", text, "", "file holding the pool token (read when POOL_TOKEN is empty)"
    )
    pool_dir: Path = setting(
        "POOL_DIR", absolute_path, "/pool", "pool root: bots/, programs/, archive/"
    )
    log_dir: Path = setting(
        "LOG_DIR", absolute_path, "/var/log/supervisor", "where supervisord writes bot logs"
    )
    supervisor_socket: Path = setting(
        "SUPERVISOR_SOCKET", absolute_path, "/var/run/supervisor.sock", "supervisord's unix socket"
    )
    capacity: int = setting("POOL_CAPACITY", integer(1, 1000), "10", "slots in this pool")
    port_start: int = setting("POOL_PORT_START", integer(1, 65535), "9000", "first port of block")
    heartbeat_interval_ms: int = pools.heartbeat_interval_ms()
    bot_ping_timeout_ms: int = health.bot_ping_timeout_ms()
    poll_interval_ms: int = pools.poll_interval_ms()
    max_backoff_ms: int = setting("AGENT_MAX_BACKOFF", MS, "10000", "cap of the reconnect backoff")
    fence_timeout_ms: int = setting(
        "AGENT_FENCE_TIMEOUT", integer(0, 24 * 3600 * 1000), "0",
        "ms without the controller after which the agent stops every bot (0: never)",
    )  # fmt: skip
    fence_margin_ms: int = setting(
        "AGENT_FENCE_MARGIN", integer(0, 24 * 3600 * 1000), "0",
        "ms the controller waits past AGENT_FENCE_TIMEOUT: a fence that ends later is logged "
        "as late (0: not checked)",
    )  # fmt: skip
    preload_modules: str = bots.preload_modules()
    preload_markets: str = bots.preload_markets()
    preload_immortal: str = bots.preload_immortal()
    market_data_proxy: bool = market_data.market_data_proxy()
    market_data_port: int = setting(
        "MARKET_DATA_PORT", integer(0, 65535), "0",
        "this pool's market-data proxy's port on 127.0.0.1 (0: the pool runs none)",
    )  # fmt: skip
    market_data_quote_ttl_ms: int = market_data.market_data_quote_ttl_ms()
    market_data_candle_ttl_ms: int = market_data.market_data_candle_ttl_ms()
    market_data_cache_bytes: int = market_data.market_data_cache_bytes()
    market_data_user: str = setting(
        "MARKET_DATA_USER", text, "", "user the market-data proxy runs as (empty: the agent's)"
    )
    bot_user_prefix: str = setting(
        "BOT_USER_PREFIX", text, "", "run slot s's bot as user <prefix><s> (empty: as the agent)"
    )
    health_socket: str = health_socket()
    bot_oom_score_adj: int = setting(
        "BOT_OOM_SCORE_ADJ", integer(-1000, 1000), "500",
        "oom_score_adj the agent gives each bot, so the kernel kills a bot, not the pool",
    )  # fmt: skip
    bot_busy_cpu: int = limits.bot_busy_cpu()
    bot_busy_window_ms: int = limits.bot_busy_window_ms()
    bot_busy_policy: str = limits.bot_busy_policy()
    pool_cgroup: str = setting(
        "POOL_CGROUP", choice("", "v1", "v2"), "",
        "each bot in a cgroup of its own: v1 (the pool's parent bound at /cgroup), v2 (a "
        "delegated /sys/fs/cgroup), empty: none (the controller sets it, POOL_CGROUPS)",
    )  # fmt: skip
    pool_cgroup_parent: str = setting(
        "POOL_CGROUP_PARENT", text, "",
        "v1: the cgroup parent the pool's container runs under, e.g. /ftpool/pool-1 (set by "
        "the controller)",
    )  # fmt: skip
    pool_metrics: str = setting(
        "POOL_METRICS",
        choice("processes", "cgroup"),
        "processes",
        "pool memory/CPU from the bots' processes or from the pool's cgroup",
    )
    backup_dir: str = setting(
        "BACKUP_DIR", text, "", "this pool's backup directory (empty: no backups)"
    )
    backup_transport: str = setting(
        "BACKUP_TRANSPORT",
        choice("mount", "controller"),
        "mount",
        "where this pool's snapshots go: mount (BACKUP_DIR), controller (sent to the "
        "controller over the network, as the controller says)",
    )
    backup_interval_ms: int = backups.backup_interval_ms()
    backup_retention_days: int = backups.backup_retention_days()
    log_level: str = core.log_level()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        settings: AgentSettings = _build(cls, load_env() if env is None else env)
        if not settings.pool_token and settings.pool_token_file:
            try:
                token = Path(settings.pool_token_file).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"POOL_TOKEN_FILE cannot be read: {exc.strerror}") from None
            settings = replace(settings, pool_token=token)
        problems = []
        if not is_valid_id(settings.pool_id):
            problems.append(f"POOL_ID must match {ID_PATTERN}")
        if not settings.pool_token:
            problems.append("POOL_TOKEN must be set")
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return settings


@dataclass(frozen=True)
class HealthcheckSettings:
    """What `python -m agent.healthcheck` reads: where its agent answers (no pool id or
    token needed to ask it)."""

    health_socket: str = health_socket()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HealthcheckSettings:
        settings: HealthcheckSettings = _build(cls, load_env() if env is None else env)
        return settings
