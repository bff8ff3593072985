"""Backups and restore in Docker: a real trading bot in a real pool container.

The pool's backup directory is mounted into its container (its own only); the bot's
trades reach it; the bot's user cannot read it; then the container is removed
(`docker rm -f`) and the bot's directory with it: the pool comes back with an empty bot,
and a restore brings back every trade it had. Another user's restore is refused.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import docker
import pytest
import pytest_asyncio

from tests.e2e.docker.conftest import cluster_in_docker
from tests.e2e.local.test_backups import ALICE, BOB, wait_backed_up
from tests.e2e.trading import assert_trades_kept, now, trades, wait_trading
from tests.exchange import trading_bot
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
BOT = "alice-docker-backed-up"
SEEN: dict[str, Any] = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory, docker_client) -> AsyncIterator[Any]:
    async with cluster_in_docker(
        tmp_path_factory, docker_client, MARKET_DATA_BASE_PORT="29200", POOL_BASE_PORT="29210",
        BACKUP_INTERVAL="2000", HEALTH_CHECK_INTERVAL="2000", POOL_START_ATTEMPTS="3",
    ) as c:  # fmt: skip
        yield c


def container(client: docker.DockerClient) -> Any:
    return client.containers.get("freqtrade-pool-pool-1")


async def test_trades_reach_the_pools_own_backup_mount(cluster, docker_client, exchange) -> None:
    h = cluster.harness
    await h.provision(ALICE, **trading_bot(exchange.url, BOT))
    before = (await wait_trading(h, ALICE, [BOT]))[BOT]
    SEEN["event"], SEEN["before"] = now(), before
    SEEN["point"] = await wait_backed_up(h, BOT, len(before), SEEN["event"])
    mounts = {m["Destination"]: m["Source"] for m in container(docker_client).attrs["Mounts"]}
    assert mounts["/backup"] == str(cluster.base_dir / "backups" / "pools" / "pool-1")
    # Bots run as their slot's user: the backups are root's.
    result = container(docker_client).exec_run(["ls", "/backup"], user="ftbot0")
    assert result.exit_code != 0 and b"Permission denied" in result.output


async def test_another_users_restore_is_refused(cluster) -> None:
    body = {"restorePoint": SEEN["point"]["id"]}
    status, _ = await cluster.harness.call("POST", f"/api/bots/{BOT}/restore", BOB, json=body)
    assert status == 403


async def test_a_lost_container_and_directory_are_restored(cluster, docker_client) -> None:
    h = cluster.harness
    old = container(docker_client).id
    container(docker_client).remove(force=True)
    shutil.rmtree(h.pool_dir("pool-1") / "bots" / BOT)

    async def back() -> bool:
        try:
            fresh = container(docker_client).id != old
        except docker.errors.NotFound:
            return False
        status, _ = await h.call("GET", f"/api/bots/{BOT}/ping", ALICE)
        return fresh and status == 200

    await wait_for(back, 240, step=1)  # a new container, the bot in it without its trades
    body = {"restorePoint": SEEN["point"]["id"]}
    status, restored = await h.call("POST", f"/api/bots/{BOT}/restore", ALICE, json=body)
    assert status == 200, restored
    assert restored["keptAs"] and restored["keptAs"].startswith("tradesv3.dryrun.sqlite.before")

    async def trades_back() -> dict[int, dict[str, Any]] | None:
        status, _ = await h.call("GET", f"/api/bots/{BOT}/ping", ALICE)
        return await trades(h, ALICE, BOT) if status == 200 else None

    after = await wait_for(trades_back, 180, step=1)
    assert_trades_kept(SEEN["before"], after, SEEN["event"])
