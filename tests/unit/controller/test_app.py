"""Wiring: each part is made from its settings, with its collaborators handed to it."""

from __future__ import annotations

from pathlib import Path

from controller.app import build
from controller.bots.manager import BotsConfig
from controller.health.monitor import MonitorConfig
from controller.pools.config import PoolsConfig
from controller.runtimes.docker import DockerOptions
from controller.runtimes.swarm import SwarmRuntime
from controller.store.allocation import Placement
from tests.support import make_settings
from tests.unit.controller.apps import FakeRuntime


def test_the_parts_share_their_collaborators(tmp_path: Path) -> None:
    c = build(make_settings(tmp_path), runtime=FakeRuntime())
    assert c.pools.sessions.alarm is c.monitor.alarm
    assert c.guard is c.bots.guard is c.evacuation.guard is c.migrator.guard
    # One transfer for every move, with one staging directory (and one crash recovery).
    assert c.transfer is c.evacuation.transfer is c.migrator.transfer
    assert c.transfer.staging == c.migrator.staging == tmp_path / "migrating"
    assert c.bots.pools is c.pools and c.monitor.evacuation is c.evacuation
    assert c.bots.placement == c.evacuation.placement == Placement.from_settings(c.settings)


def test_each_config_says_what_its_settings_say(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, CONTROLLER_HOST="::", CONTROLLER_PORT="5123", POOL_GRACE="7000",
        HEALTH_CHECK_INTERVAL="3000", MAX_RESTART_ATTEMPTS="4", RESTART_BACKOFF="500",
        POOL_TENANCY="per-user", POOL_PLACEMENT="spread", POOL_MODE_ENABLED="false",
        POOL_START_ATTEMPTS="5", BOT_UNRESPONSIVE_TIMEOUT="9000", DEFAULT_STRATEGY="Other",
    )  # fmt: skip
    pools = PoolsConfig.from_settings(settings)
    assert pools.controller_url == "ws://127.0.0.1:5123/api/agents/ws"
    assert (pools.pool_grace, pools.bot_launch) == (7.0, "exec")
    assert pools.agent_env["HEARTBEAT_INTERVAL"] == "500"
    monitor = MonitorConfig.from_settings(settings)
    assert (monitor.interval, monitor.unresponsive_after, monitor.pool_starts) == (3.0, 9.0, 5)
    assert (monitor.policy.max_attempts, monitor.policy.backoff) == (4, 0.5)
    placement = Placement.from_settings(settings)
    assert (placement.pooled, placement.per_user, placement.fill) == (False, True, False)
    assert BotsConfig.from_settings(settings).default_strategy == "Other"
    docker = DockerOptions.from_settings(settings)
    assert docker.archive_dir == tmp_path / "archive"


def test_legacy_containers_are_looked_for_on_the_swarm_managers_daemon(tmp_path: Path) -> None:
    """With swarm the controller's Docker daemon is the manager's: its plain containers
    (legacy bots) are discovered and migrated as with the docker runtime."""
    settings = make_settings(
        tmp_path, POOL_RUNTIME="swarm", AGENT_CONTROLLER_URL="ws://10.0.0.1:5000/api/agents/ws"
    )
    client = object()
    runtime = SwarmRuntime(DockerOptions.from_settings(settings), client=client)  # type: ignore[arg-type]
    c = build(settings, runtime=runtime)
    assert c.migrator.legacy is c.bots.legacy is c.mapper.legacy
    assert c.migrator.legacy is not None and c.migrator.legacy._client() is client
    assert build(make_settings(tmp_path), runtime=FakeRuntime()).migrator.legacy is None
