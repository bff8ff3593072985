"""The controller's settings: one frozen dataclass of the settings of every domain module, the
values derived from them, and the checks across domains.

The fields keep their order of old (errors and `describe` list settings in it), so domains
interleave here; each field's variable, default, parser and description live in its domain's
module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.settings import (
    backups,
    bots,
    core,
    health,
    heap,
    limits,
    market_data,
    pools,
    runtimes,
    ui,
)
from common.settings.loading import _build, load_env
from common.settings.parsing import SettingsError, size
from common.settings.pools import FENCE_TIMEOUT_AUTO, FENCE_TIMEOUT_MULTI_HOST_MS
from common.settings.runtimes import MULTI_HOST_RUNTIMES


@dataclass(frozen=True)
class ControllerSettings:
    pool_mode_enabled: bool = pools.pool_mode_enabled()
    max_bots_per_container: int = pools.max_bots_per_container()
    pool_base_port: int = pools.pool_base_port()
    health_check_interval_ms: int = health.health_check_interval_ms()
    bot_ping_timeout_ms: int = health.bot_ping_timeout_ms()
    max_restart_attempts: int = health.max_restart_attempts()
    restart_cooldown_ms: int = health.restart_cooldown_ms()
    restart_backoff_ms: int = health.restart_backoff_ms()
    restart_cycles: int = health.restart_cycles()
    restart_reset_after_ms: int = health.restart_reset_after_ms()
    pool_start_attempts: int = health.pool_start_attempts()
    bot_unresponsive_ms: int = health.bot_unresponsive_ms()
    bot_base_dir: Path = core.bot_base_dir()
    controller_host: str = core.controller_host()
    controller_port: int = core.controller_port()
    pool_runtime: str = runtimes.pool_runtime()
    swarm_network: str = runtimes.swarm_network()
    swarm_node_labels: str = runtimes.swarm_node_labels()
    pool_storage: str = runtimes.pool_storage()
    pool_image: str = runtimes.pool_image()
    pool_network: str = runtimes.pool_network()
    pool_memory_limit: str = runtimes.pool_memory_limit()
    bot_memory_limit: int = limits.bot_memory_limit()
    bot_memory_grace_ms: int = limits.bot_memory_grace_ms()
    bot_busy_cpu: int = limits.bot_busy_cpu()
    bot_busy_window_ms: int = limits.bot_busy_window_ms()
    bot_busy_policy: str = limits.bot_busy_policy()
    user_max_bots: int = limits.user_max_bots()
    user_max_cpu: float = limits.user_max_cpu()
    pool_oom_score_adj: int = runtimes.pool_oom_score_adj()
    pool_cgroups: str = runtimes.pool_cgroups()
    pool_cgroup_root: Path = runtimes.pool_cgroup_root()
    pool_cgroup_view: str = runtimes.pool_cgroup_view()
    bot_cpu_limit: float = limits.bot_cpu_limit()
    pool_publish_ports: bool = runtimes.pool_publish_ports()
    pool_publish_ip: str = runtimes.pool_publish_ip()
    pool_host_dir: str = runtimes.pool_host_dir()
    agent_controller_url: str = runtimes.agent_controller_url()
    database: str = core.database()
    admin_token: str = core.admin_token()
    jwt_secret: str = core.jwt_secret()
    heartbeat_interval_ms: int = pools.heartbeat_interval_ms()
    poll_interval_ms: int = pools.poll_interval_ms()
    pool_grace_ms: int = pools.pool_grace_ms()
    fence_timeout_setting: int = pools.fence_timeout_setting()
    fence_margin_ms: int = pools.fence_margin_ms()
    pool_cleanup_grace_ms: int = pools.pool_cleanup_grace_ms()
    bot_command: tuple[str, ...] = bots.bot_command()
    bot_launch: str = bots.bot_launch()
    preload_modules: str = bots.preload_modules()
    preload_markets: str = bots.preload_markets()
    preload_immortal: str = bots.preload_immortal()
    market_data_proxy: bool = market_data.market_data_proxy()
    market_data_base_port: int = market_data.market_data_base_port()
    market_data_quote_ttl_ms: int = market_data.market_data_quote_ttl_ms()
    market_data_candle_ttl_ms: int = market_data.market_data_candle_ttl_ms()
    market_data_cache_bytes: int = market_data.market_data_cache_bytes()
    strategies_dir: str = bots.strategies_dir()
    default_strategy: str = bots.default_strategy()
    pool_tenancy: str = pools.pool_tenancy()
    placement: str = pools.placement()
    proxy_timeout_ms: int = core.proxy_timeout_ms()
    max_body_bytes: int = core.max_body_bytes()
    metrics_public: bool = core.metrics_public()
    events_max: int = core.events_max()
    backup_dir: str = backups.backup_dir()
    backup_host_dir: str = backups.backup_host_dir()
    backup_transport_setting: str = backups.backup_transport()
    backup_interval_ms: int = backups.backup_interval_ms()
    backup_retention_days: int = backups.backup_retention_days()
    backup_s3_bucket: str = backups.backup_s3_bucket()
    backup_s3_url: str = backups.backup_s3_url()
    backup_s3_prefix: str = backups.backup_s3_prefix()
    backup_s3_region: str = backups.backup_s3_region()
    backup_s3_access_key_id: str = backups.backup_s3_access_key_id()
    backup_s3_secret_access_key: str = backups.backup_s3_secret_access_key()
    backup_s3_credentials_file: str = backups.backup_s3_credentials_file()
    gc_freeze: bool = heap.gc_freeze()
    gc_pause_budget_ms: int = heap.gc_pause_budget_ms()
    event_loop: str = heap.event_loop()
    ui_session_ttl_ms: int = ui.ui_session_ttl_ms()
    ui_cookie_secure: bool = ui.ui_cookie_secure()
    frequi_url: str = ui.frequi_url()
    legacy_container_memory: int = limits.legacy_container_memory()
    log_level: str = core.log_level()

    @property
    def fence_timeout_ms(self) -> int:
        """AGENT_FENCE_TIMEOUT in ms, `auto` resolved by the runtime's name (0: off)."""
        if self.fence_timeout_setting != FENCE_TIMEOUT_AUTO:
            return self.fence_timeout_setting
        return FENCE_TIMEOUT_MULTI_HOST_MS if self.pool_runtime in MULTI_HOST_RUNTIMES else 0

    @property
    def backups_path(self) -> Path | None:
        """The backup target; None when backups are off."""
        if self.backup_dir == "off":
            return None
        return (
            Path(self.backup_dir).absolute() if self.backup_dir else self.bot_base_dir / "backups"
        )

    @property
    def database_path(self) -> Path:
        return (
            Path(self.database).absolute()
            if self.database
            else (self.bot_base_dir / "ftpool.sqlite3")
        )

    @property
    def pool_memory_bytes(self) -> int:
        """POOL_MEMORY_LIMIT in bytes (0: none)."""
        return size(self.pool_memory_limit)

    @property
    def default_bot_memory(self) -> int:
        """A bot's memory limit unless it has its own (0: none)."""
        if self.bot_memory_limit == limits.NO_BOT_MEMORY_LIMIT:
            return 0
        if self.bot_memory_limit:
            return self.bot_memory_limit
        return self.pool_memory_bytes // self.max_bots_per_container

    @property
    def node_storage(self) -> bool:
        """Pools' directories on their node's own disk, which the controller cannot see."""
        auto = self.pool_storage == "auto" and self.pool_runtime == "swarm"
        return self.pool_storage == "node" or auto

    @property
    def backup_transport(self) -> str:
        """BACKUP_TRANSPORT, `auto` resolved: the agents send their snapshots to the
        controller where pools are on their node's own disk (it cannot share BACKUP_DIR)."""
        if self.backup_transport_setting != "auto":
            return self.backup_transport_setting
        return "controller" if self.pool_runtime == "swarm" and self.node_storage else "mount"

    @property
    def pools_dir(self) -> Path:
        return self.bot_base_dir / "pools"

    @property
    def strategies_path(self) -> Path:
        if self.strategies_dir:
            return Path(self.strategies_dir).absolute()
        return Path(__file__).resolve().parents[2] / "controller" / "strategies"

    @property
    def host_pools_dir(self) -> Path:
        return Path(self.pool_host_dir) if self.pool_host_dir else self.pools_dir

    @property
    def host_backups_dir(self) -> Path | None:
        """The backup target as the Docker host sees it: BACKUP_HOST_DIR, or beside
        POOL_HOST_DIR when both are under BOT_BASE_DIR (the default), or BACKUP_DIR."""
        if self.backup_host_dir:
            return Path(self.backup_host_dir)
        if self.pool_host_dir and not self.backup_dir:
            return Path(self.pool_host_dir).parent / "backups"
        return self.backups_path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ControllerSettings:
        settings: ControllerSettings = _build(cls, load_env() if env is None else env)
        bridge = settings.pool_runtime == "docker" and settings.pool_network != "host"
        if (bridge or settings.pool_runtime == "swarm") and not settings.agent_controller_url:
            raise SettingsError(
                "invalid settings: AGENT_CONTROLLER_URL must be set when POOL_NETWORK is a "
                "bridge network or POOL_RUNTIME is swarm (agents cannot reach the "
                "controller's loopback address)"
            )
        if settings.pool_storage == "node" and settings.pool_runtime != "swarm":
            raise SettingsError(
                "invalid settings: POOL_STORAGE=node needs POOL_RUNTIME=swarm (the local and "
                "docker runtimes' pools are on the controller's own host)"
            )
        if settings.backup_host_dir and not Path(settings.backup_host_dir).is_absolute():
            raise SettingsError("invalid settings: BACKUP_HOST_DIR must be an absolute path")
        custom_backups = settings.backup_dir not in ("", "off")
        if settings.pool_host_dir and custom_backups and not settings.backup_host_dir:
            raise SettingsError(
                "invalid settings: BACKUP_HOST_DIR must be set when POOL_HOST_DIR and "
                "BACKUP_DIR are (the controller runs in a container: where is BACKUP_DIR on "
                "the Docker host?)"
            )
        try:
            settings.pool_memory_bytes  # noqa: B018 - checked here, used later
        except ValueError as exc:
            raise SettingsError(f"invalid settings: POOL_MEMORY_LIMIT {exc}") from None
        if settings.pool_host_dir and not Path(settings.pool_host_dir).is_absolute():
            raise SettingsError("invalid settings: POOL_HOST_DIR must be an absolute path")
        if settings.market_data_proxy and settings.market_data_base_port >= settings.pool_base_port:
            raise SettingsError(
                "invalid settings: MARKET_DATA_BASE_PORT must be below POOL_BASE_PORT (pools' "
                "market-data proxies take the ports from it upwards, one per pool)"
            )
        return settings
