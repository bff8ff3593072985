"""Restore points sent to the controller (BACKUP_TRANSPORT=controller), local runtime.

The transport does not depend on the runtime: here a real `freqtrade trade --dry-run` bot
trades against the exchange emulator in a pool whose agent has no backup directory at
all; its agent sends each new snapshot of the bot's trade database to the controller,
which writes it into its BACKUP_DIR. A restore then brings a point back through the move's
stage and land steps (no agent reads a backup target), with every trade kept.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.local.conftest import Cluster, local_cluster
from tests.e2e.local.test_backups import backed_up, trades_or_none, wait_backed_up
from tests.e2e.trading import assert_trades_kept, now, wait_trading
from tests.exchange import trading_bot
from tests.support import user_token, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
ALICE = user_token("alice")
BOT = "alice-shipped"
# Ports of this suite only (33000-33099 is the backup transport's range).
PORTS = {"MARKET_DATA_BASE_PORT": "33000", "POOL_BASE_PORT": "33010"}
SEEN: dict[str, Any] = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    overrides = {"BACKUP_INTERVAL": "2000", "BACKUP_TRANSPORT": "controller", **PORTS}
    async with local_cluster(tmp_path_factory.mktemp("shipped"), overrides) as c:
        yield c


async def test_trades_reach_the_controllers_backup_dir_over_the_network(cluster, exchange) -> None:
    h = cluster.harness
    await h.provision(ALICE, **trading_bot(exchange.url, BOT))
    before = (await wait_trading(h, ALICE, [BOT]))[BOT]
    SEEN["event"], SEEN["before"] = now(), before
    point = await wait_backed_up(h, BOT, len(before), SEEN["event"])
    assert point["database"] == "tradesv3.dryrun.sqlite" and point["poolId"] == "pool-1"
    SEEN["point"] = point
    # Sent, not written by the agent: the pool has no BACKUP_DIR, the controller received
    # them, and the agent's own copy of the config (written only through a mount) is absent.
    pool = h.controller.pools.registry.pools["pool-1"]
    launch = h.controller.pools.lifecycle.launch(pool, "token")
    assert launch.backup_dir is None and "BACKUP_DIR" not in launch.agent_env
    assert launch.agent_env["BACKUP_TRANSPORT"] == "controller"
    assert h.controller.backups.receiver.received >= 1
    target = cluster.base_dir / "backups" / "pools" / "pool-1" / BOT
    assert (target / "tradesv3.dryrun.sqlite").is_dir() and not (target / "files").exists()
    for path in [cluster.base_dir / "backups", target, *target.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path


async def test_a_lost_bot_directory_is_restored_through_staging(cluster) -> None:
    h = cluster.harness
    shutil.rmtree(h.pool_dir("pool-1") / "bots" / BOT)
    body = {"restorePoint": SEEN["point"]["id"]}
    status, restored = await h.call("POST", f"/api/bots/{BOT}/restore", ALICE, json=body)
    assert status == 200, restored
    assert restored["restorePoint"]["id"] == SEEN["point"]["id"]
    assert restored["keptAs"] is None  # there was no database left to keep
    await h.wait_running(BOT, timeout=120)
    after = await wait_for(lambda: trades_or_none(h, BOT), 120, step=1)
    assert_trades_kept(SEEN["before"], after, SEEN["event"])
    assert not (cluster.base_dir / "migrating" / BOT).exists()


async def test_a_restore_keeps_the_database_it_replaces(cluster) -> None:
    h = cluster.harness
    points = await backed_up(h, BOT)
    body = {"restorePoint": points[-1]["id"]}
    status, restored = await h.call("POST", f"/api/bots/{BOT}/restore", ALICE, json=body)
    assert status == 200, restored
    kept = restored["keptAs"]
    assert kept and kept.startswith("tradesv3.dryrun.sqlite.before-restore-")
    assert (h.pool_dir("pool-1") / "bots" / BOT / kept).is_file()
    await h.wait_running(BOT, timeout=120)
    status, events = await h.call("GET", "/api/pool/events/history?limit=200", ALICE)
    assert any(e["type"] == "bot_restored" and e["instanceId"] == BOT for e in events["events"])
