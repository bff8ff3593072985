"""Wiring: settings → store, runtime, managers, monitor and the aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from common.settings import ControllerSettings
from controller.api.agents import APIAgents
from controller.api.bots import APIBots
from controller.api.events import APIEvents
from controller.api.healthz import APIHealthz
from controller.api.metrics import APIMetrics
from controller.api.middleware import AUTHENTICATOR, auth_middleware, error_middleware
from controller.api.migration import APIMigration
from controller.api.pool_bot import APIPoolBot
from controller.api.pools import APIPools
from controller.api.proxy import APIProxy
from controller.auth import Authenticator
from controller.bots.locations import BotContainerMapper
from controller.bots.manager import BotManager
from controller.errors import StoreError
from controller.events import EventBus
from controller.health.monitor import Monitor
from controller.health.restarts import RestartPolicy
from controller.metrics import Metrics
from controller.migration.run import Migrator
from controller.moves.evacuation import Evacuation
from controller.moves.guard import MoveGuard
from controller.pools.manager import PoolManager
from controller.runtimes import PoolRuntime
from controller.runtimes.docker import DockerOptions, DockerRuntime
from controller.runtimes.legacy import LegacyContainers
from controller.runtimes.local import LocalRuntime
from controller.store.allocation import Placement
from controller.store.store import Store

log = structlog.get_logger("controller")
CONTROLLER = web.AppKey("controller", "Controller")


def persistent_secret(configured: str, path: Path) -> str:
    """The configured secret, or one generated once and kept in a 0600 file."""
    if configured:
        return configured
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        pass
    else:
        if len(value) < 32:
            raise StoreError(f"{path} holds no valid secret (under 32 characters); remove it")
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def agent_url(settings: ControllerSettings) -> str:
    if settings.agent_controller_url:
        return settings.agent_controller_url
    host = settings.controller_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{settings.controller_port}/api/agents/ws"


def make_runtime(settings: ControllerSettings) -> PoolRuntime:
    archive = settings.bot_base_dir / "archive"
    if settings.pool_runtime == "docker":
        return DockerRuntime(
            DockerOptions(
                image=settings.pool_image,
                network=settings.pool_network,
                pools_dir=settings.pools_dir,
                host_pools_dir=settings.host_pools_dir,
                archive_dir=archive,
                memory_limit=settings.pool_memory_limit,
                publish_ports=settings.pool_publish_ports,
                publish_ip=settings.pool_publish_ip,
            )
        )
    return LocalRuntime(settings.pools_dir, archive)


@dataclass
class Controller:
    settings: ControllerSettings
    store: Store
    pools: PoolManager
    bots: BotManager
    monitor: Monitor
    auth: Authenticator
    metrics: Metrics
    admin_token_file: Path | None
    events: EventBus
    migrator: Migrator
    mapper: BotContainerMapper
    evacuation: Evacuation

    def on_runtime_event(self, pool_id: str, action: str) -> None:
        """A pool died: record it now and let the monitor act without waiting for its turn."""
        self.pools.runtime_event(pool_id, action)
        self.monitor.check_soon()


def build(settings: ControllerSettings, runtime: PoolRuntime | None = None) -> Controller:
    base = settings.bot_base_dir
    admin_file = None if settings.admin_token else base / "admin-token"
    auth = Authenticator(
        persistent_secret(settings.admin_token, base / "admin-token"),
        persistent_secret(settings.jwt_secret, base / "jwt-secret"),
    )
    store = Store(settings.database_path)
    events = EventBus(store, settings.events_max)
    pools = PoolManager(
        store,
        runtime or make_runtime(settings),
        settings.bot_command,
        agent_url(settings),
        {
            "HEARTBEAT_INTERVAL": str(settings.heartbeat_interval_ms),
            "BOT_PING_TIMEOUT": str(settings.bot_ping_timeout_ms),
            "LOG_LEVEL": settings.log_level,
            "PRELOAD_MODULES": settings.preload_modules,
        },
        settings.pool_grace_ms / 1000,
        bot_launch=settings.bot_launch,
        events=events,
    )
    placement = Placement(
        max_bots=settings.max_bots_per_container,
        base_port=settings.pool_base_port,
        pooled=settings.pool_mode_enabled,
        per_user=settings.pool_tenancy == "per-user",
        fill=settings.placement == "fill",
    )
    metrics = Metrics(pools)
    guard = MoveGuard()
    bots = BotManager(
        pools, placement, settings.strategies_path, settings.default_strategy, metrics, guard
    )
    evacuation = Evacuation(pools, placement, guard)
    policy = RestartPolicy(
        max_attempts=settings.max_restart_attempts,
        backoff=settings.restart_backoff_ms / 1000,
        cooldown=settings.restart_cooldown_ms / 1000,
        cycles=settings.restart_cycles,
        reset_after=settings.restart_reset_after_ms / 1000,
    )
    monitor = Monitor(
        pools,
        bots,
        settings.health_check_interval_ms / 1000,
        policy,
        settings.bot_unresponsive_ms / 1000,
        metrics,
        events=events,
        evacuation=evacuation,
        pool_starts=settings.pool_start_attempts,
    )
    # A bot or agent that went down is judged at once, not at the next HEALTH_CHECK_INTERVAL.
    pools.on_trouble = monitor.check_soon
    runtime = pools.runtime
    # Legacy containers are Docker's: without the docker runtime there are none to find.
    legacy = (
        LegacyContainers(lambda: runtime.client, base)
        if isinstance(runtime, DockerRuntime)
        else None
    )
    migrator = Migrator(bots, legacy, base, placement, guard)
    bots.legacy_ids = migrator.planner.legacy_ids
    return Controller(settings, store, pools, bots, monitor, auth, metrics, admin_file, events,
                      migrator, BotContainerMapper(pools, legacy), evacuation)  # fmt: skip


def create_app(controller: Controller) -> web.Application:
    s = controller.settings
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=s.max_body_bytes
    )
    app[AUTHENTICATOR] = controller.auth
    app[CONTROLLER] = controller
    proxy = APIProxy(
        controller.bots, s.proxy_timeout_ms / 1000, s.max_body_bytes, controller.metrics
    )
    events = APIEvents(controller.events)
    migration = APIMigration(controller.migrator)
    apis = [
        APIHealthz(controller.pools),
        APIMetrics(controller.metrics, s.metrics_public),
        APIAgents(controller.pools),
        events,
        APIPools(
            controller.pools,
            controller.monitor,
            controller.mapper,
            s.pool_mode_enabled,
            s.pool_cleanup_grace_ms / 1000,
        ),
        APIPoolBot(controller.bots, controller.mapper),
        # Bots before the proxy: its lifecycle routes take precedence over proxied paths.
        APIBots(controller.bots),
        migration,
        proxy,
    ]
    for api in apis:
        app.add_routes(api.routes())
    app.on_startup.append(proxy.startup)
    # WebSockets never end by themselves: close them first, or shutdown waits on them.
    app.on_shutdown.append(lambda _app: controller.pools.close_agents())
    app.on_shutdown.append(proxy.close_websockets)
    app.on_shutdown.append(events.shutdown)
    app.on_shutdown.append(migration.shutdown)
    app.cleanup_ctx.append(_lifecycle)
    app.on_cleanup.append(proxy.shutdown)
    return app


async def _lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
    controller: Controller = app[CONTROLLER]
    s = controller.settings
    await controller.store.open()
    await controller.store.check_layout(s.max_bots_per_container, s.pool_base_port)
    await controller.pools.load()
    await controller.evacuation.finish_interrupted()  # before any pool starts its bots
    await controller.pools.adopt()
    await controller.migrator.startup()
    controller.pools.runtime.watch(controller.on_runtime_event)
    controller.events.start()
    monitor = asyncio.create_task(controller.monitor.run(), name="monitor")
    log.info("controller_started", runtime=controller.pools.runtime.name,
             pools=len(controller.pools.pools), bots=len(controller.pools.bots))  # fmt: skip
    yield
    monitor.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await monitor
    await controller.monitor.stop()
    await controller.events.close()
    await controller.pools.runtime.close()
    await controller.store.close()
