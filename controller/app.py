"""Wiring: settings → store, runtime, managers, monitor and the aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from common.settings import ControllerSettings, SettingsError
from controller.api.agent_backups import APIAgentBackups
from controller.api.agent_files import APIAgentFiles
from controller.api.agents import APIAgents
from controller.api.backups import APIBackups
from controller.api.bot_tokens import APIBotTokens
from controller.api.bots import APIBots
from controller.api.cors import FreqUICors
from controller.api.events import APIEvents
from controller.api.healthz import APIHealthz
from controller.api.metrics import APIMetrics
from controller.api.middleware import AUTHENTICATOR, auth_middleware, error_middleware
from controller.api.migration import APIMigration
from controller.api.nodes import APINodes
from controller.api.openapi import APIOpenAPI
from controller.api.pool_bot import APIPoolBot
from controller.api.pools import APIPools
from controller.api.proxy import APIProxy
from controller.api.upgrade import APIUpgrade
from controller.api.users import APIUsers
from controller.auth import Authenticator
from controller.backups.bucket import Bucket, BucketConfig
from controller.backups.offsite import OffsiteCopy
from controller.backups.service import BackupService
from controller.bots.limits import BotLimits
from controller.bots.locations import BotContainerMapper
from controller.bots.manager import BotManager, BotsConfig
from controller.bots.usage import UsageHistory, UsageSampler
from controller.errors import StoreError
from controller.events import EventBus
from controller.health.gauges import PoolStateCollector
from controller.health.monitor import Clock, Monitor, MonitorConfig
from controller.heap import HeapConfig, HeapKeeper
from controller.metrics import Metrics
from controller.migration.run import Migrator
from controller.moves.agent_files import AgentFiles
from controller.moves.drain import NodeDrain
from controller.moves.evacuation import Evacuation
from controller.moves.failover import Failover
from controller.moves.guard import MoveGuard
from controller.moves.recovery import land_later, recover_moves
from controller.moves.stranded import StrandedCollector
from controller.moves.transfer import Transfer
from controller.pools.alarm import Alarm
from controller.pools.config import PoolsConfig
from controller.pools.manager import PoolManager
from controller.runtimes import PoolRuntime
from controller.runtimes.docker import DockerClient, DockerOptions, DockerRuntime
from controller.runtimes.legacy import LegacyContainers
from controller.runtimes.local import LocalRuntime
from controller.runtimes.swarm import SwarmRuntime
from controller.runtimes.swarm_nodes import parse_rules
from controller.store.allocation import Placement
from controller.store.store import Store
from controller.ui.middleware import SESSIONS, session_middleware
from controller.ui.pages import UIPages
from controller.ui.session import SessionKeeper
from controller.upgrade.census import ImageCensus
from controller.upgrade.run import Upgrader

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


def make_runtime(settings: ControllerSettings) -> PoolRuntime:
    if settings.pool_runtime == "docker":
        return DockerRuntime(DockerOptions.from_settings(settings))
    if settings.pool_runtime == "swarm":
        try:
            rules = parse_rules(settings.swarm_node_labels)
        except ValueError as exc:
            raise SettingsError(f"invalid settings: SWARM_NODE_LABELS: {exc}") from None
        return SwarmRuntime(DockerOptions.from_settings(settings), rules)
    return LocalRuntime(settings.pools_dir, settings.bot_base_dir / "archive")


@dataclass(kw_only=True)
class Controller:
    settings: ControllerSettings
    admin_token_file: Path | None
    auth: Authenticator
    sessions: SessionKeeper
    store: Store
    events: EventBus
    metrics: Metrics
    pools: PoolManager
    bots: BotManager
    guard: MoveGuard
    transfer: Transfer
    evacuation: Evacuation
    monitor: Monitor
    migrator: Migrator
    mapper: BotContainerMapper
    upgrader: Upgrader
    drain: NodeDrain
    census: ImageCensus
    backups: BackupService
    heap: HeapKeeper
    usage: UsageSampler


def build(
    settings: ControllerSettings, runtime: PoolRuntime | None = None, clock: Clock = time.time
) -> Controller:
    """Every part, each given its settings and its collaborators as it is made (a test's
    runtime that starts nothing, and the monitor's clock, may be given too)."""
    base = settings.bot_base_dir
    admin_token = persistent_secret(settings.admin_token, base / "admin-token")
    jwt_secret = persistent_secret(settings.jwt_secret, base / "jwt-secret")
    auth = Authenticator(admin_token, jwt_secret)
    # Dashboard sessions are signed with a key derived from both secrets: replacing either
    # (a leaked admin token, say) ends every session.
    store = Store(settings.database_path)
    sessions = SessionKeeper(
        f"{admin_token}\0{jwt_secret}", settings.ui_session_ttl_ms / 1000, store=store
    )
    events = EventBus(store, settings.events_max)
    runtime = runtime or make_runtime(settings)
    # A bot or agent that went down is judged at once, not at the next HEALTH_CHECK_INTERVAL.
    alarm = Alarm()
    # A test's clock stands in for the monotonic one too (the only time there is then).
    monotonic = time.monotonic if clock is time.time else clock
    pools = PoolManager(store, runtime, PoolsConfig.from_settings(settings), events=events,
                        alarm=alarm, monotonic=monotonic)  # fmt: skip
    placement = Placement.from_settings(settings)
    limits = BotLimits.from_settings(settings)
    census = ImageCensus(pools)  # which image each pool runs
    offsite = _offsite(settings, events)
    # The one way a bot moves between pools, for evacuation and migration alike.
    staging = base / "migrating"
    # Pools on their node's own disk: a move's files travel through the agents.
    files = AgentFiles(pools.sessions, staging) if settings.node_storage else None
    transfer = Transfer(pools, staging, files)
    metrics = Metrics(collectors=[PoolStateCollector(pools, limits), census,
                                  StrandedCollector(transfer.stranded),
                                  *([offsite] if offsite else [])])  # fmt: skip
    guard = MoveGuard()
    # Legacy containers are Docker's: on the daemon the controller talks to (with swarm,
    # the manager's, whose disk holds their directories); none without Docker.
    legacy = (
        LegacyContainers(lambda: runtime.client, base)
        if isinstance(runtime, DockerClient)
        else None
    )
    bots = BotManager(pools, BotsConfig.from_settings(settings), placement=placement,
                      metrics=metrics, guard=guard, legacy=legacy)  # fmt: skip
    shipped = settings.backup_transport == "controller"
    backups = BackupService(settings.backups_path, transfer, guard, events,
                            settings.backup_retention_days, offsite=offsite,
                            shipped=shipped)  # fmt: skip
    evacuation = Evacuation(pools, placement, guard=guard, transfer=transfer, backups=backups,
                            clock=clock)  # fmt: skip
    failover = Failover(pools, placement, guard=guard, transfer=transfer, backups=backups,
                        clock=clock)  # fmt: skip
    monitor = Monitor(pools, bots, MonitorConfig.from_settings(settings), metrics=metrics,
                      events=events, evacuation=evacuation, alarm=alarm,
                      clock=clock, monotonic=monotonic, failover=failover)  # fmt: skip
    migrator = Migrator(bots, legacy=legacy, base_dir=base, placement=placement, guard=guard,
                        transfer=transfer)  # fmt: skip
    upgrader = Upgrader(pools, transfer, guard, placement)
    return Controller(
        settings=settings, admin_token_file=None if settings.admin_token else base / "admin-token",
        auth=auth, sessions=sessions, store=store, events=events, metrics=metrics, pools=pools,
        bots=bots, guard=guard, transfer=transfer, evacuation=evacuation, monitor=monitor,
        migrator=migrator,
        mapper=BotContainerMapper(pools, legacy),
        upgrader=upgrader, census=census,
        # A node's drain moves pools with the upgrade's `move` method: one mover.
        drain=NodeDrain(pools, upgrader.mover, guard, clock),
        backups=backups,
        heap=HeapKeeper(HeapConfig.from_settings(settings)),
        usage=UsageSampler(pools.registry, UsageHistory(), clock),
    )  # fmt: skip


def _offsite(settings: ControllerSettings, events: EventBus) -> OffsiteCopy | None:
    """The backup target's copy in an S3-compatible bucket, if BACKUP_S3_BUCKET names one."""
    config = BucketConfig.from_settings(settings)
    if config is None or settings.backups_path is None:
        return None
    return OffsiteCopy(settings.backups_path, Bucket(config), events,
                       settings.backup_interval_ms / 1000)  # fmt: skip


def create_app(controller: Controller) -> web.Application:
    s = controller.settings
    # FreqUI from elsewhere reaches the bot proxy: its preflights are answered first.
    cors = FreqUICors(s.frequi_url)
    app = web.Application(
        middlewares=[cors.preflight, error_middleware, session_middleware, auth_middleware],
        client_max_size=s.max_body_bytes,
    )
    app.on_response_prepare.append(cors.on_prepare)
    app[AUTHENTICATOR] = controller.auth
    app[SESSIONS] = controller.sessions
    app[CONTROLLER] = controller
    proxy = APIProxy(controller.bots, timeout=s.proxy_timeout_ms / 1000,
                     max_body=s.max_body_bytes, metrics=controller.metrics)  # fmt: skip
    events = APIEvents(controller.events)
    migration = APIMigration(controller.migrator)
    apis = [
        APIHealthz(controller.pools),
        APIMetrics(controller.metrics, s.metrics_public, refresh=controller.census.refresh),
        APIAgents(controller.pools),
        APIAgentFiles(controller.transfer.files),
        APIAgentBackups(controller.backups.receiver),
        events,
        APIPools(
            controller.pools,
            controller.monitor,
            controller.mapper,
            pool_mode=s.pool_mode_enabled,
            cleanup_grace=s.pool_cleanup_grace_ms / 1000,
            limits=controller.bots.limits,
            census=controller.census,
            legacy_container_bytes=s.legacy_container_memory,
        ),
        APINodes(controller.pools, controller.drain),
        APIPoolBot(controller.bots, controller.mapper, controller.usage.history),
        # Bots before the proxy: its lifecycle routes take precedence over proxied paths.
        APIBots(controller.bots, controller.backups),
        APIBackups(controller.bots, controller.backups),
        APIUsers(controller.bots),
        migration,
        APIUpgrade(controller.upgrader, controller.census),
        APIBotTokens(controller.bots),  # before the proxy: it answers these paths itself
        proxy,
        UIPages(controller.bots, cookie_secure=s.ui_cookie_secure, frequi_url=s.frequi_url),
    ]
    apis.append(APIOpenAPI(apis))
    for api in apis:
        app.add_routes(api.routes())
    app.on_startup.append(proxy.startup)
    # WebSockets never end by themselves: close them first, or shutdown waits on them.
    app.on_shutdown.append(lambda _app: controller.pools.sessions.close_agents())
    app.on_shutdown.append(proxy.close_websockets)
    app.on_shutdown.append(events.shutdown)
    app.on_shutdown.append(migration.shutdown)
    app.on_shutdown.append(lambda _app: controller.upgrader.shutdown())
    app.on_shutdown.append(lambda _app: controller.drain.shutdown())
    app.cleanup_ctx.append(_lifecycle)
    app.on_cleanup.append(proxy.shutdown)
    return app


async def _lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
    controller: Controller = app[CONTROLLER]
    s = controller.settings
    # What depends on the engine (Docker: the pools' cgroup mode) before any pool is made.
    await controller.pools.runtime.prepare()
    await controller.store.open()
    await controller.store.check_layout(s.max_bots_per_container, s.pool_base_port)
    await controller.pools.lifecycle.load()
    await controller.sessions.load()  # signed-out sessions stay so
    # Moves a crash cut short are recovered before any pool starts its bots.
    if controller.transfer.files is not None:
        await asyncio.to_thread(controller.transfer.files.sweep)
    await recover_moves(controller.transfer, controller.guard)
    # An upgrade a crash cut short: the pool it was replacing back on its old image, before
    # adopt() would recreate a missing one from POOL_IMAGE.
    await controller.upgrader.recover()
    await controller.pools.lifecycle.adopt()
    await controller.migrator.startup()
    # A pool the runtime sees die is suspect at once (and the alarm wakes the monitor).
    controller.pools.runtime.watch(controller.pools.sessions.runtime_event)
    controller.events.start()
    monitor = asyncio.create_task(controller.monitor.run(), name="monitor")
    # What the store loaded lives as long as the controller: out of the collector's way.
    controller.heap.settle()
    heap = asyncio.create_task(controller.heap.run(), name="heap")
    sweep = asyncio.create_task(controller.backups.run(), name="backup-retention")
    offsite = controller.backups.offsite
    uploads = asyncio.create_task(offsite.run(), name="backup-bucket") if offsite else None
    usage = asyncio.create_task(controller.usage.run(), name="usage")
    # Held bots whose recovery failed or waits for their pool's agent (staged files a
    # crash left, for pools on their node's own disk), as long as the controller runs.
    landing = asyncio.create_task(land_later(controller.transfer, controller.guard),
                                  name="land-staged")  # fmt: skip
    view = controller.pools.registry
    log.info("controller_started", runtime=controller.pools.runtime.name,
             pools=len(view.pools), bots=len(view.bots))  # fmt: skip
    yield
    for task in (monitor, heap, sweep, usage, landing, *([uploads] if uploads else [])):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    controller.heap.close()
    await controller.monitor.stop()
    await controller.events.close()
    await controller.pools.runtime.close()
    await controller.store.close()
