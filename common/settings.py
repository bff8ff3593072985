"""Settings from the environment and a `.env` file.

The environment wins over `.env`. Every value is parsed and range-checked at
start-up; one bad value stops the process with a message naming the variable.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from common.ids import ID_PATTERN, is_valid_id
from common.logging import is_secret_name
from common.units import parse_bytes


class SettingsError(ValueError):
    """One or more settings are invalid; the message names each variable."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("must be an integer") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _text(raw: str) -> str:
    return raw.strip()


def _web_url(raw: str) -> str:
    """An http(s) URL to a web page, or empty: no credentials, query or fragment in it."""
    value = raw.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not hold credentials, a query or a fragment")
    return value


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("must not be empty")
    return Path(raw.strip()).expanduser().absolute()


def _command(raw: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(raw))
    except ValueError as exc:
        raise ValueError(f"is not a valid command line: {exc}") from None
    if not argv:
        raise ValueError("must not be empty")
    return argv


def _secret(raw: str) -> str:
    value = raw.strip()
    if value and len(value) < 32:
        raise ValueError("must be at least 32 characters")
    return value


def _bucket_name(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value):
        raise ValueError("must be an S3 bucket name (3 to 63 of a-z, 0-9, '.', '-')")
    return value


def _key_prefix(raw: str) -> str:
    """An S3 key prefix: empty, or words of [A-Za-z0-9._-] joined by '/', ending in '/'."""
    value = raw.strip().strip("/")
    if not value:
        return ""
    if not all(re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", p) for p in value.split("/")):
        raise ValueError("must be words of A-Z, a-z, 0-9, '.', '_', '-' joined by '/'")
    return value + "/"


def _size(raw: str) -> int:
    """A size such as 512m; empty is 0 (none)."""
    return parse_bytes(raw) if raw.strip() else 0


_MS = _int(1, 24 * 3600 * 1000)
# What a bot imports, as far as one process can import it ahead: everything a
# `freqtrade webserver` or `trade` bot loads after start (measured by diffing sys.modules)
# that is left out here is a private copy in every bot. Missing modules are skipped. Some
# also get a warm-up in the preloader (`warm_up` in agent/preloader.py): the database
# models, the candle conversion, and each ccxt exchange module listed (binance's REST, async
# and websocket classes here; list `ccxt.<id>`, `ccxt.async_support.<id>` and
# `ccxt.pro.<id>` for the exchanges your bots use).
FREQTRADE_MODULES = ",".join([
    "freqtrade.main", "freqtrade.commands", "freqtrade.freqtradebot", "freqtrade.worker",
    "freqtrade.exchange", "freqtrade.exchange.check_exchange", "freqtrade.persistence",
    "freqtrade.data.converter",
    "freqtrade.rpc.api_server.webserver", "freqtrade.rpc.api_server.api_v1",
    *(f"freqtrade.rpc.api_server.{m}" for m in (
        "api_auth", "api_trading", "api_webserver", "api_ws", "api_backtest", "api_analysis",
        "api_pair_history", "api_download_data", "api_background_tasks", "web_ui",
    )),
    "pandas", "numpy", "ccxt", "sqlalchemy", "fastapi", "uvicorn", "talib", "uvloop", "jwt",
    "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.lifespan.on",
    # What a trading bot imports besides: SQLite and its SQLAlchemy dialect, uvicorn's
    # protocol choice, anyio's streams, systemd's notifier, pandas' conversions to Arrow.
    "sqlite3", "sqlalchemy.dialects.sqlite", "uvicorn.protocols.http.auto",
    "uvicorn.protocols.websockets.auto", "anyio._backends._asyncio", "anyio.streams.memory",
    "anyio.streams.stapled", "anyio.streams.tls", "fastapi.telemetry._runtime", "sdnotify",
    "pyarrow.pandas_compat", "pyarrow.vendored.version",
    *(f"{package}.binance" for package in ("ccxt", "ccxt.async_support", "ccxt.pro")),
])  # fmt: skip


# docs/benchmarks.md, "Memory: pooled vs. one container per bot": one legacy container
# with one dry-run trading bot (20 pairs, 2,000 markets), `docker stats` after 5 minutes.
MEASURED_LEGACY_CONTAINER = "273m"


def setting(env: str, parse: Callable[[str], Any], default: str, doc: str) -> Any:
    """A dataclass field read from the variable `env`; `default` is in env syntax."""
    return field(metadata={"env": env, "parse": parse, "default": default, "doc": doc})


# AGENT_FENCE_TIMEOUT=auto: fencing on (this long) where pools run on several hosts (the
# `swarm` runtime), off on one host, where a controller restart must change nothing.
FENCE_TIMEOUT_AUTO = -1
FENCE_TIMEOUT_MULTI_HOST_MS = 30_000
MULTI_HOST_RUNTIMES = frozenset({"swarm"})


def _fence_timeout(raw: str) -> int:
    """AGENT_FENCE_TIMEOUT of the controller: ms, `off` (0) or `auto`."""
    value = raw.strip().lower()
    if value == "auto":
        return FENCE_TIMEOUT_AUTO
    if value in ("off", "0"):
        return 0
    try:
        return _MS(value)
    except ValueError:
        raise ValueError("must be auto, off or a number of ms") from None


def _log_level() -> Any:
    return setting("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info", "log level")


def _heartbeat_interval() -> Any:
    return setting("HEARTBEAT_INTERVAL", _MS, "5000", "agent heartbeat period")


def _poll_interval() -> Any:
    return setting(
        "AGENT_POLL_INTERVAL", _MS, "1000",
        "agents' poll of supervisord, the safety net of its process-state events",
    )  # fmt: skip


def _bot_ping_timeout() -> Any:
    return setting("BOT_PING_TIMEOUT", _MS, "5000", "agent's timeout for a bot's /api/v1/ping")


def _preload_modules() -> Any:
    return setting(
        "PRELOAD_MODULES", _text, FREQTRADE_MODULES, "modules the preloader imports first"
    )


def _bot_busy_cpu() -> Any:
    return setting(
        "BOT_BUSY_CPU", _int(0, 10_000), "90",
        "percent of a core a bot may use over BOT_BUSY_WINDOW before it runs at nice 19 (0: off)",
    )  # fmt: skip


def _bot_busy_window() -> Any:
    return setting("BOT_BUSY_WINDOW", _MS, "30000", "the window a bot's CPU use is judged over")


def _market_data_proxy() -> Any:
    return setting(
        "MARKET_DATA_PROXY", _bool, "true",
        "bots reach their exchange's public market data through their pool's shared cache",
    )  # fmt: skip


def _market_data_quote_ttl() -> Any:
    return setting(
        "MARKET_DATA_QUOTE_TTL", _int(0, 3_600_000), "2000",
        "how long the market-data proxy shares tickers and order books (0: in flight only)",
    )  # fmt: skip


def _market_data_candle_ttl() -> Any:
    return setting(
        "MARKET_DATA_CANDLE_TTL", _int(0, 3_600_000), "5000",
        "how long it shares candles while the newest is open (closed ones: for good)",
    )  # fmt: skip


def _market_data_cache_bytes() -> Any:
    return setting(
        "MARKET_DATA_CACHE_BYTES", _int(1 << 20, 1 << 34), str(64 << 20),
        "memory the market-data proxy of each pool may keep answers in",
    )  # fmt: skip


def _backup_interval() -> Any:
    return setting(
        "BACKUP_INTERVAL", _int(1000, 3_600_000), "5000",
        "how often each bot's changed trade database is copied to the backup target: the "
        "recovery point (measured by bench/backup)",
    )  # fmt: skip


def _backup_retention() -> Any:
    return setting(
        "BACKUP_RETENTION", _int(0, 3650), "30",
        "days a deleted bot's backups are kept (and daily restore points of every bot)",
    )  # fmt: skip


def load_env(dotenv: Path | None = None) -> dict[str, str]:
    """The process environment over the values of `.env` (or ENV_FILE)."""
    path = dotenv or Path(os.environ.get("ENV_FILE", ".env"))
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    values.update(os.environ)
    return values


def _build(cls: type, env: Mapping[str, str]) -> Any:
    values: dict[str, Any] = {}
    errors: list[str] = []
    for f in fields(cls):
        meta = f.metadata
        raw = env.get(meta["env"], meta["default"])
        try:
            values[f.name] = meta["parse"](raw)
        except ValueError as exc:
            errors.append(f"{meta['env']} {exc} ({_shown(meta['env'], raw)})")
    if errors:
        raise SettingsError("invalid settings: " + "; ".join(errors))
    return cls(**values)


def _shown(env: str, raw: str) -> str:
    """What an error says of a rejected value: never a secret's, even an invalid one."""
    if is_secret_name(env):
        return f"got {len(raw.strip())} characters; the value is not shown"
    # A URL's user and password (refused by _web_url) are not repeated either.
    return f"got {re.sub(r'(?<=://)[^/@]*@', '***@', raw)!r}"


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting of `cls`; used by docs and tests."""
    return [(f.metadata["env"], f.metadata["default"], f.metadata["doc"]) for f in fields(cls)]


@dataclass(frozen=True)
class ControllerSettings:
    pool_mode_enabled: bool = setting(
        "POOL_MODE_ENABLED", _bool, "true", "false gives every new bot a pool of its own"
    )
    max_bots_per_container: int = setting(
        "MAX_BOTS_PER_CONTAINER", _int(1, 1000), "10", "bots per pool; also the port block size"
    )
    pool_base_port: int = setting(
        "POOL_BASE_PORT", _int(1024, 65000), "9000", "first port of pool 1's block"
    )
    health_check_interval_ms: int = setting(
        "HEALTH_CHECK_INTERVAL", _MS, "30000", "how often the monitor evaluates pools and bots"
    )
    bot_ping_timeout_ms: int = _bot_ping_timeout()
    max_restart_attempts: int = setting(
        "MAX_RESTART_ATTEMPTS", _int(0, 100), "3", "automatic restarts of a bot before cooldown"
    )
    restart_cooldown_ms: int = setting(
        "RESTART_COOLDOWN", _MS, "60000", "pause after MAX_RESTART_ATTEMPTS before trying again"
    )
    restart_backoff_ms: int = setting(
        "RESTART_BACKOFF", _MS, "1000", "wait before a bot's 2nd restart; doubles each attempt"
    )
    restart_cycles: int = setting(
        "RESTART_CYCLES", _int(1, 1000), "3", "cooldown cycles before a bot is marked failed"
    )
    restart_reset_after_ms: int = setting(
        "RESTART_RESET_AFTER", _MS, "600000", "healthy run time that clears a bot's restarts"
    )
    pool_start_attempts: int = setting(
        "POOL_START_ATTEMPTS", _int(1, 100), "3",
        "starts of a lost pool before its bots are moved to other pools",
    )  # fmt: skip
    bot_unresponsive_ms: int = setting(
        "BOT_UNRESPONSIVE_TIMEOUT", _MS, "60000", "failing pings for this long: restart the bot"
    )
    bot_base_dir: Path = setting(
        "BOT_BASE_DIR", _path, "./data", "root of pools, archives, secrets and the default store"
    )
    controller_host: str = setting(
        "CONTROLLER_HOST", _text, "127.0.0.1", "address the controller listens on"
    )
    controller_port: int = setting(
        "CONTROLLER_PORT", _int(1, 65535), "5000", "port the controller listens on"
    )
    pool_runtime: str = setting(
        "POOL_RUNTIME", _choice("local", "docker", "swarm"), "local", "how pools are run"
    )
    swarm_network: str = setting(
        "SWARM_NETWORK", _text, "ftpool",
        "attachable overlay network of the pools (swarm; made when missing)",
    )  # fmt: skip
    swarm_node_labels: str = setting(
        "SWARM_NODE_LABELS", _text, "",
        "nodes that may run pools (swarm): comma-separated key=value or key (the node must "
        "have it) and !key=value or !key (it must not)",
    )  # fmt: skip
    pool_image: str = setting(
        "POOL_IMAGE", _text, "freqtrade-pool:latest", "image of pool containers (docker)"
    )
    pool_network: str = setting(
        "POOL_NETWORK", _text, "host", "host, or a user-defined bridge network (docker)"
    )
    pool_memory_limit: str = setting(
        "POOL_MEMORY_LIMIT", _text, "", "memory limit per pool container, e.g. 4g (docker)"
    )
    bot_memory_limit: int = setting(
        "BOT_MEMORY_LIMIT", _size, "",
        "each bot's own memory (USS) limit, e.g. 512m; default POOL_MEMORY_LIMIT / "
        "MAX_BOTS_PER_CONTAINER when that is set, else none",
    )  # fmt: skip
    bot_memory_grace_ms: int = setting(
        "BOT_MEMORY_GRACE", _MS, "30000",
        "how long a bot may stay over its memory limit before it is restarted",
    )  # fmt: skip
    bot_busy_cpu: int = _bot_busy_cpu()
    bot_busy_window_ms: int = _bot_busy_window()
    user_max_bots: int = setting(
        "USER_MAX_BOTS", _int(0, 1_000_000), "0",
        "bots one user may have (0: no limit); the admin API sets a user's own",
    )  # fmt: skip
    pool_oom_score_adj: int = setting(
        "POOL_OOM_SCORE_ADJ", _int(-1000, 1000), "0",
        "oom_score_adj of pool containers' machinery (docker; -999 where the daemon may set it)",
    )  # fmt: skip
    pool_publish_ports: bool = setting(
        "POOL_PUBLISH_PORTS",
        _bool,
        "false",
        "publish bot ports of bridge pools (docker) or on each pool's node (swarm)",
    )
    pool_publish_ip: str = setting(
        "POOL_PUBLISH_IP", _text, "127.0.0.1", "host address published ports bind (docker)"
    )
    pool_host_dir: str = setting(
        "POOL_HOST_DIR", _text, "", "BOT_BASE_DIR/pools as the Docker host sees it (docker)"
    )
    agent_controller_url: str = setting(
        "AGENT_CONTROLLER_URL", _text, "", "URL agents use to reach the controller's WebSocket"
    )
    database: str = setting(
        "DATABASE", _text, "", "SQLite store file (default BOT_BASE_DIR/ftpool.sqlite3)"
    )
    admin_token: str = setting(
        "ADMIN_TOKEN", _secret, "", "bearer token with the admin role (default: generated)"
    )
    jwt_secret: str = setting(
        "JWT_SECRET", _secret, "", "HS256 key for user tokens (default: generated)"
    )
    heartbeat_interval_ms: int = _heartbeat_interval()
    poll_interval_ms: int = _poll_interval()
    pool_grace_ms: int = setting(
        "POOL_GRACE", _MS, "20000", "silence after which a pool is suspect"
    )
    fence_timeout_setting: int = setting(
        "AGENT_FENCE_TIMEOUT", _fence_timeout, "auto",
        "ms an agent may be cut off from the controller before it stops its bots (`off`; "
        "`auto`: 30000 with the swarm runtime, else off)",
    )  # fmt: skip
    fence_margin_ms: int = setting(
        "AGENT_FENCE_MARGIN", _MS, "60000",
        "with fencing, a silent pool is lost (its bots may start elsewhere) only after "
        "AGENT_FENCE_TIMEOUT plus this",
    )  # fmt: skip
    pool_cleanup_grace_ms: int = setting(
        "POOL_CLEANUP_GRACE",
        _int(0, 30 * 24 * 3600 * 1000),
        "300000",
        "age an empty pool must reach before /api/pool/cleanup removes it",
    )
    bot_command: tuple[str, ...] = setting(
        "BOT_COMMAND", _command, "freqtrade trade", "command run for each bot (+ --config)"
    )
    bot_launch: str = setting(
        "BOT_LAUNCH",
        _choice("preload", "exec"),
        "preload",
        "pools' default: fork bots from a process with FreqTrade imported (preload), or exec",
    )
    preload_modules: str = _preload_modules()
    market_data_proxy: bool = _market_data_proxy()
    market_data_base_port: int = setting(
        "MARKET_DATA_BASE_PORT", _int(1024, 65535), "8000",
        "pool N's market-data proxy listens on 127.0.0.1:<this + N - 1>, below POOL_BASE_PORT",
    )  # fmt: skip
    market_data_quote_ttl_ms: int = _market_data_quote_ttl()
    market_data_candle_ttl_ms: int = _market_data_candle_ttl()
    market_data_cache_bytes: int = _market_data_cache_bytes()
    strategies_dir: str = setting(
        "STRATEGIES_DIR", _text, "", "directory of strategy files (default: bundled samples)"
    )
    default_strategy: str = setting(
        "DEFAULT_STRATEGY", _text, "SampleStrategy", "strategy of a bot provisioned without one"
    )
    pool_tenancy: str = setting(
        "POOL_TENANCY", _choice("shared", "per-user"), "shared", "who may share a pool"
    )
    placement: str = setting(
        "POOL_PLACEMENT", _choice("fill", "spread"), "fill", "fullest pool first, or emptiest"
    )
    proxy_timeout_ms: int = setting(
        "PROXY_TIMEOUT", _MS, "30000", "upstream read timeout of the bot proxy"
    )
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES", _int(1024, 1 << 30), "1048576", "largest request body accepted"
    )
    metrics_public: bool = setting(
        "METRICS_PUBLIC", _bool, "false", "serve /metrics without the admin token"
    )
    events_max: int = setting(
        "EVENTS_MAX", _int(1, 10_000_000), "10000", "health and recovery events kept in the store"
    )
    backup_dir: str = setting(
        "BACKUP_DIR", _text, "",
        "backup target of every bot's trade database, config and strategy (default "
        "BOT_BASE_DIR/backups; best on another disk; `off`: no backups)",
    )  # fmt: skip
    backup_host_dir: str = setting(
        "BACKUP_HOST_DIR", _text, "", "the backup target as the Docker host sees it (docker)"
    )
    backup_interval_ms: int = _backup_interval()
    backup_retention_days: int = _backup_retention()
    backup_s3_bucket: str = setting(
        "BACKUP_S3_BUCKET", _bucket_name, "",
        "S3-compatible bucket the controller copies the backup target to (empty: none)",
    )  # fmt: skip
    backup_s3_url: str = setting(
        "BACKUP_S3_URL", _web_url, "", "the bucket's endpoint (empty: AWS S3's own)"
    )
    backup_s3_prefix: str = setting(
        "BACKUP_S3_PREFIX", _key_prefix, "", "key prefix of the copy in the bucket"
    )
    backup_s3_region: str = setting("BACKUP_S3_REGION", _text, "us-east-1", "the bucket's region")
    backup_s3_access_key_id: str = setting(
        "BACKUP_S3_ACCESS_KEY_ID", _text, "", "access key id for the bucket"
    )
    backup_s3_secret_access_key: str = setting(
        "BACKUP_S3_SECRET_ACCESS_KEY", _text, "", "secret access key for the bucket"
    )
    backup_s3_credentials_file: str = setting(
        "BACKUP_S3_CREDENTIALS_FILE", _text, "",
        "file holding the access key id and the secret key on two lines (read when both "
        "variables are empty; none of them: boto3's own AWS_* variables or role)",
    )  # fmt: skip
    gc_freeze: bool = setting(
        "GC_FREEZE", _bool, "true", "freeze the long-lived heap so full collections stay short"
    )
    gc_pause_budget_ms: int = setting(
        "GC_PAUSE_BUDGET", _MS, "20", "a longer full collection freezes the heap again"
    )
    event_loop: str = setting(
        "EVENT_LOOP", _choice("asyncio", "uvloop"), "asyncio", "the controller's event loop"
    )
    ui_session_ttl_ms: int = setting(
        "UI_SESSION_TTL", _int(60_000, 7 * 24 * 3600 * 1000), "3600000",
        "lifetime of a dashboard session (its cookie), never longer than the token's",
    )  # fmt: skip
    ui_cookie_secure: bool = setting(
        "UI_COOKIE_SECURE", _bool, "false",
        "always mark the session cookie Secure (behind a TLS-terminating proxy)",
    )  # fmt: skip
    frequi_url: str = setting(
        "FREQUI_URL", _web_url, "",
        "where users open FreqUI; the bot proxy answers its origin's browsers (CORS)",
    )  # fmt: skip
    legacy_container_memory: int = setting(
        "LEGACY_CONTAINER_MEMORY", _size, MEASURED_LEGACY_CONTAINER,
        "one bot in a container of its own, against which pooling's saving is estimated",
    )  # fmt: skip
    log_level: str = _log_level()

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
        return _size(self.pool_memory_limit)

    @property
    def default_bot_memory(self) -> int:
        """A bot's memory limit unless it has its own (0: none)."""
        if self.bot_memory_limit:
            return self.bot_memory_limit
        return self.pool_memory_bytes // self.max_bots_per_container

    @property
    def pools_dir(self) -> Path:
        return self.bot_base_dir / "pools"

    @property
    def strategies_path(self) -> Path:
        if self.strategies_dir:
            return Path(self.strategies_dir).absolute()
        return Path(__file__).resolve().parent.parent / "controller" / "strategies"

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


@dataclass(frozen=True)
class AgentSettings:
    controller_url: str = setting(
        "CONTROLLER_URL", _text, "ws://127.0.0.1:5000/api/agents/ws", "controller's agent socket"
    )
    pool_id: str = setting("POOL_ID", _text, "", "this pool's id")
    pool_token: str = setting("POOL_TOKEN", _text, "", "this pool's secret token")
    pool_token_file: str = setting(
        "POOL_TOKEN_FILE", _text, "", "file holding the pool token (read when POOL_TOKEN is empty)"
    )
    pool_dir: Path = setting("POOL_DIR", _path, "/pool", "pool root: bots/, programs/, archive/")
    log_dir: Path = setting(
        "LOG_DIR", _path, "/var/log/supervisor", "where supervisord writes bot logs"
    )
    supervisor_socket: Path = setting(
        "SUPERVISOR_SOCKET", _path, "/var/run/supervisor.sock", "supervisord's unix socket"
    )
    capacity: int = setting("POOL_CAPACITY", _int(1, 1000), "10", "slots in this pool")
    port_start: int = setting("POOL_PORT_START", _int(1, 65535), "9000", "first port of block")
    heartbeat_interval_ms: int = _heartbeat_interval()
    bot_ping_timeout_ms: int = _bot_ping_timeout()
    poll_interval_ms: int = _poll_interval()
    max_backoff_ms: int = setting("AGENT_MAX_BACKOFF", _MS, "10000", "cap of the reconnect backoff")
    fence_timeout_ms: int = setting(
        "AGENT_FENCE_TIMEOUT", _int(0, 24 * 3600 * 1000), "0",
        "ms without the controller after which the agent stops every bot (0: never)",
    )  # fmt: skip
    preload_modules: str = _preload_modules()
    market_data_proxy: bool = _market_data_proxy()
    market_data_port: int = setting(
        "MARKET_DATA_PORT", _int(0, 65535), "0",
        "this pool's market-data proxy's port on 127.0.0.1 (0: the pool runs none)",
    )  # fmt: skip
    market_data_quote_ttl_ms: int = _market_data_quote_ttl()
    market_data_candle_ttl_ms: int = _market_data_candle_ttl()
    market_data_cache_bytes: int = _market_data_cache_bytes()
    market_data_user: str = setting(
        "MARKET_DATA_USER", _text, "", "user the market-data proxy runs as (empty: the agent's)"
    )
    bot_user_prefix: str = setting(
        "BOT_USER_PREFIX", _text, "", "run slot s's bot as user <prefix><s> (empty: as the agent)"
    )
    health_socket: str = setting(
        "AGENT_HEALTH_SOCKET", _text, "", "unix socket answering health checks (empty: none)"
    )
    bot_oom_score_adj: int = setting(
        "BOT_OOM_SCORE_ADJ", _int(-1000, 1000), "500",
        "oom_score_adj the agent gives each bot, so the kernel kills a bot, not the pool",
    )  # fmt: skip
    bot_busy_cpu: int = _bot_busy_cpu()
    bot_busy_window_ms: int = _bot_busy_window()
    pool_metrics: str = setting(
        "POOL_METRICS",
        _choice("processes", "cgroup"),
        "processes",
        "pool memory/CPU from the bots' processes or from the pool's cgroup",
    )
    backup_dir: str = setting(
        "BACKUP_DIR", _text, "", "this pool's backup directory (empty: no backups)"
    )
    backup_interval_ms: int = _backup_interval()
    backup_retention_days: int = _backup_retention()
    log_level: str = _log_level()

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
