"""Whole migration runs on the real app over the recording runtime, with agents that obey at
once: the steps a run takes, and what a failing step leaves behind."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import pytest

from controller.migration import log as migration_log
from controller.migration.log import MIGRATION_STEPS
from controller.runtimes import PoolLaunch
from tests.unit.controller.apps import Api, ApiFactory, obey, obey_new_pools


@pytest.fixture
async def legacy(make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch) -> Api:
    """A bot in a legacy pool of its own; every pool made from now on has an agent at once,
    and a bot that runs answers its ping."""
    api: Api = await make_api(POOL_MODE_ENABLED="false")
    await api.provision(instanceId="leg-1")
    obey(api, "pool-1")
    obey_new_pools(api, monkeypatch)

    async def pong(_session: object, _bot: object) -> bool:
        return True

    monkeypatch.setattr(api.controller.migrator.transfer, "ping", pong)
    return api


async def test_a_run_takes_its_steps_in_the_order_the_plan_prints(legacy: Api) -> None:
    run = await legacy.controller.migrator.migrate("leg-1", verify_timeout=5)
    assert run.outcome == "migrated", run
    assert tuple(s.name for s in run.steps) == MIGRATION_STEPS
    assert legacy.controller.pools.registry.bots["leg-1"].pool_id == "pool-2"


@pytest.fixture
def full_disk(legacy: Api, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The log's file can be written once (the run's start), then the disk is full."""
    syncs: list[int] = []
    fsync = os.fsync

    def sync_once(fd: int) -> None:
        syncs.append(fd)
        if len(syncs) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(migration_log.os, "fsync", sync_once)
    return syncs


async def test_a_log_that_cannot_be_saved_never_keeps_a_failed_step_from_its_undo(
    legacy: Api, full_disk: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_backup(*_: object) -> str:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(legacy.controller.migrator, "_backup", no_backup)
    run = await legacy.controller.migrator.migrate("leg-1", verify_timeout=5)
    assert (run.outcome, [(s.name, s.ok) for s in run.steps]) == (
        "failed", [("stop", True), ("backup", False)]
    )  # fmt: skip
    bot = legacy.controller.pools.registry.bots["leg-1"]
    assert (bot.pool_id, bot.held) == ("pool-1", False)  # released where it was: it runs
    assert len(full_disk) > 1  # the log was written to, and failed


async def test_a_log_that_cannot_be_saved_never_cancels_a_rollback(
    legacy: Api, full_disk: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def silent(_session: object, _bot: object) -> bool:
        return False

    monkeypatch.setattr(legacy.controller.migrator.transfer, "ping", silent)
    run = await legacy.controller.migrator.migrate("leg-1", verify_timeout=0.3)
    assert run.outcome == "rolled_back", run
    assert [(s.name, s.ok) for s in run.steps][-2:] == [("verify", False), ("rollback", True)]
    bot = legacy.controller.pools.registry.bots["leg-1"]
    assert (bot.pool_id, bot.held) == ("pool-1", False)


async def test_the_logs_fsyncs_run_off_the_event_loop(
    legacy: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        threads.append(threading.get_ident())
        fsync(fd)

    monkeypatch.setattr(migration_log.os, "fsync", recorded)
    run = await legacy.controller.migrator.migrate("leg-1", verify_timeout=5)
    assert run.outcome == "migrated"
    # One at the start, one per step, one at the end: none on the loop's thread.
    assert len(threads) == 1 + len(MIGRATION_STEPS) + 1
    assert threading.get_ident() not in threads


class NodeFiles:
    """POOL_STORAGE=node: each pool's directory on its node (here tmp/nodes/<pool>), which
    the controller never sees; its agent exports a bot's directory into staging and
    imports it from there (controller/moves/agent_files.py's interface)."""

    def __init__(self, nodes: Path, staging: Path) -> None:
        self.nodes, self.staging = nodes, staging
        self.calls: list[tuple[str, str, str]] = []

    def bot_dir(self, pool_id: str, bot_id: str) -> Path:
        return self.nodes / pool_id / "bots" / bot_id

    async def export(self, pool_id: str, bot_id: str) -> bool:
        self.calls.append(("export", pool_id, bot_id))
        source = self.bot_dir(pool_id, bot_id)
        if not source.is_dir():
            return False
        self.staging.mkdir(parents=True, exist_ok=True)
        shutil.move(source, self.staging / bot_id)
        return True

    async def import_(self, pool_id: str, bot_id: str) -> None:
        self.calls.append(("import", pool_id, bot_id))
        self.bot_dir(pool_id, bot_id).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self.staging / bot_id, self.bot_dir(pool_id, bot_id))


async def test_on_node_storage_a_rollback_moves_the_files_through_the_agents(
    legacy: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrated and rolled back with every pool's directory on its node: the files leave
    and enter pools only through their agents, and each run's backup holds them (taken
    from staging, on the controller's disk)."""
    c = legacy.controller
    files = NodeFiles(tmp_path / "nodes", c.transfer.staging)
    c.transfer.files = files  # type: ignore[assignment]
    create = legacy.runtime.create

    async def create_moving_files(launch: PoolLaunch) -> None:
        await create(launch)  # an obedient agent, which moves files too, connected at once
        live = c.pools.registry.live[launch.pool_id]
        live.features = frozenset({"held", "files"})
        live.acked_gen = c.pools.registry.pools[launch.pool_id].generation

    monkeypatch.setattr(legacy.runtime, "create", create_moving_files)
    c.pools.registry.live["pool-1"].features = frozenset({"held", "files"})
    db = files.bot_dir("pool-1", "leg-1") / "tradesv3.sqlite"
    db.parent.mkdir(parents=True)
    db.write_text("leg-1's trades")
    shutil.rmtree(c.settings.bot_base_dir / "pools", ignore_errors=True)
    migrated = await c.migrator.migrate("leg-1", verify_timeout=5)
    assert migrated.outcome == "migrated", migrated
    rolled = await c.migrator.rollback("leg-1", verify_timeout=5)
    assert rolled.outcome == "rolled_back", rolled
    bot = c.pools.registry.bots["leg-1"]
    assert c.pools.registry.pools[bot.pool_id].legacy_of == "leg-1"
    assert files.calls == [
        ("export", "pool-1", "leg-1"), ("import", "pool-2", "leg-1"),
        ("export", "pool-2", "leg-1"), ("import", bot.pool_id, "leg-1"),
    ]  # fmt: skip
    assert (files.bot_dir(bot.pool_id, "leg-1") / "tradesv3.sqlite").read_text() == "leg-1's trades"
    for run in (migrated, rolled):
        backup = Path(run.backup or "") / "files" / "tradesv3.sqlite"
        assert backup.read_text() == "leg-1's trades"
    assert not (c.settings.bot_base_dir / "pools").exists()
    assert not (c.transfer.staging / "leg-1").exists()
