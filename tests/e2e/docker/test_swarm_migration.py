"""Legacy containers on `POOL_RUNTIME=swarm` (one-node swarm of the test daemon): a real
legacy trading-bot container on the manager, discovered, migrated into a swarm pool whose
directory is a volume on its node (POOL_STORAGE=node: its files travel through the pool's
agent), rolled back into a legacy pool of its own (a service named after the bot), and
migrated again; each time with every trade kept and never two copies of the bot running
(counted every 0.2 s throughout). A removed pool's volume is emptied on its node.

The swarm is entered and left as in test_swarm.py; this module's ports are 33200-33299.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import docker
import pytest
import pytest_asyncio

from tests.e2e.docker.conftest import cluster_behind_gateway
from tests.e2e.docker.pool_volumes import labelled_volumes, mountpoint, service_volume, volume_dir
from tests.e2e.docker.test_docker import container_bot_processes
from tests.e2e.docker.test_migration import (
    DB,
    EXCHANGE_SECRET,
    LABEL,
    legacy_config,
    remove_legacy,
)
from tests.e2e.docker.test_swarm import one_node_swarm, swarm_settings
from tests.e2e.local.conftest import Cluster
from tests.e2e.local.test_freqtrade import ALICE
from tests.e2e.trading import STRATEGY, assert_trades_kept, now, trades
from tests.exchange import EmulatorProcess
from tests.support import bot_processes, read_rows, wait_for, write_rows

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
NETWORK = "ftpool-test-legacy-overlay"
BOT = "lsw-a1"
LEGACY_PORT = 33290
ROWS = [(1, "BTC/USDT"), (2, "ETH/USDT")]
BASE_PORT = 33220
MARKET_DATA_PORT = 33200  # below the pools' ports
LEGACY_CONTAINER = f"freqtrade-{BOT}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def swarm_legacy(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> AsyncIterator[tuple[Cluster, EmulatorProcess]]:
    remove_legacy(docker_client)
    with one_node_swarm(docker_client) as gateway:
        try:
            async with cluster_behind_gateway(
                tmp_path_factory, docker_client, gateway,
                **swarm_settings(NETWORK, BASE_PORT, MARKET_DATA_PORT),
                MAX_BOTS_PER_CONTAINER="4", POOL_CLEANUP_GRACE="0",
            ) as (cluster, exchange):  # fmt: skip
                yield cluster, exchange
        finally:
            remove_legacy(docker_client)


def start_legacy(
    client: docker.DockerClient, base: Path, strategy: Path, exchange_url: str
) -> None:
    """The seed's layout on the manager: a container over BOT_BASE_DIR/alice/<bot>."""
    directory = base / "alice" / BOT
    (directory / "user_data" / "strategies").mkdir(parents=True)
    config = legacy_config(BOT, LEGACY_PORT, exchange_url)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "user_data" / "strategies" / strategy.name).write_bytes(strategy.read_bytes())
    write_rows(directory / DB, ROWS)
    client.containers.run(
        "freqtrade-pool:latest", ["trade", "--config", "config.json"], entrypoint=["freqtrade"],
        name=LEGACY_CONTAINER, detach=True, network_mode="host", working_dir="/freqtrade/bot",
        volumes={str(directory): {"bind": "/freqtrade/bot", "mode": "rw"}}, labels={LABEL: "1"},
    )  # fmt: skip


def copies() -> int:
    """Running copies of the bot: in pools' containers (cwd /pool/bots/<bot>) and in the
    legacy container (cwd /freqtrade/bot: this module's only legacy bot)."""
    pooled = container_bot_processes().get(BOT, [])
    legacy = bot_processes(Path("/freqtrade"), "freqtrade").get("bot", [])
    return len(pooled) + len(legacy)


@contextlib.contextmanager
def counted() -> Iterator[list[int]]:
    """The bot's running copies, sampled every 0.2 s while the block runs."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append(copies())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


async def where(h, bot: str = BOT) -> dict:
    status, info = await h.call("GET", f"/api/pool/bot/{bot}", ALICE)
    assert status == 200, info
    return info


async def answering(h) -> bool:
    status, info = await h.call("GET", f"/api/bots/{BOT}", ALICE)
    proc = info.get("process") if status == 200 else None
    return bool(proc and info["status"] == "running" and proc["ping"]["ok"])


async def legacy_trades(h) -> dict[int, dict]:
    """Its trades, open and closed, from its own API (none while it does not answer)."""
    auth = {"Authorization": aiohttp.encode_basic_auth("legacy", "legacy-password")}
    api = f"http://127.0.0.1:{LEGACY_PORT}/api/v1"
    found: dict[int, dict] = {}
    for path in ("status", "trades?limit=500"):
        try:
            async with h.http.get(f"{api}/{path}", headers=auth) as r:
                if r.status != 200:
                    return {}
                body = await r.json()
        except aiohttp.ClientError:
            return {}  # not listening (yet, or any more)
        for t in body if isinstance(body, list) else body["trades"]:
            found[t["trade_id"]] = t
    return found


async def test_a_legacy_container_on_the_manager_is_discovered_and_trades(
    swarm_legacy, docker_client
):
    cluster, exchange = swarm_legacy
    h = cluster.harness
    strategy = h.settings.strategies_path / f"{STRATEGY}.py"
    start_legacy(docker_client, cluster.base_dir, strategy, exchange.url)
    assert await wait_for(lambda: legacy_trades(h), timeout=240, step=2)
    status, st = await h.call("GET", "/api/pool/status")
    assert status == 200
    found = {b["instanceId"]: (b["containerName"], b["state"], b["port"]) for b in st["legacyBots"]}
    assert found == {BOT: (LEGACY_CONTAINER, "running", LEGACY_PORT)}
    code, out = await h.migrate("--dry-run", "--json")
    assert code == 0, out
    plan = [(b["instanceId"], b["source"], b["toPool"], b["port"]) for b in json.loads(out)["bots"]]
    assert plan == [(BOT, "legacy-container", "pool-1", BASE_PORT)]


async def test_a_failed_verification_brings_back_the_legacy_container(swarm_legacy, docker_client):
    """Imported into a swarm pool, not answering in time: the pooled copy is stopped, its
    directory comes back out through the pool's agent, its trade database goes back to the
    legacy directory, and the same legacy container runs again."""
    cluster, _ = swarm_legacy
    h = cluster.harness
    container = docker_client.containers.get(LEGACY_CONTAINER)
    event, kept = now(), await legacy_trades(h)
    with counted() as samples:
        code, out = await h.migrate("--execute", "--bot", BOT, "--verify-timeout", "0.001")
    assert code == 1 and "rolled_back" in out, out
    assert max(samples) <= 1, samples
    container.reload()
    assert container.status == "running"
    assert await wait_for(lambda: legacy_trades(h), timeout=120, step=1)
    assert_trades_kept(kept, await legacy_trades(h), event)
    assert read_rows(cluster.base_dir / "alice" / BOT / DB) == ROWS
    status, _info = await h.call("GET", f"/api/bots/{BOT}", ALICE)
    assert status == 404  # not imported
    assert not (volume_dir(docker_client, "pool-1") / "bots" / BOT).exists()
    code, out = await h.migrate("--status", "--json", "--bot", BOT)
    [run] = json.loads(out)["runs"]
    # What the pooled copy left is kept with the run's backup.
    assert read_rows(Path(run["backup"]) / "pooled" / DB) == ROWS
    assert copies() == 1


async def test_it_migrates_into_a_swarm_pool_with_its_trades(swarm_legacy, docker_client):
    cluster, _ = swarm_legacy
    h = cluster.harness
    event, kept = now(), await legacy_trades(h)
    with counted() as samples:
        code, out = await h.migrate("--execute", "--verbose")
    print(f"\nFIGURE migrate: {out}")
    assert code == 0 and "1 of 1 migrated" in out and EXCHANGE_SECRET not in out, out
    assert max(samples) <= 1, samples
    await wait_for(lambda: answering(h), timeout=180, step=0.5)
    assert_trades_kept(kept, await trades(h, ALICE, BOT), event)
    info = await where(h)
    assert (info["mode"], info["managed"], info["poolId"]) == ("pooled", True, "pool-1")
    # Its directory landed through the agent in the pool's volume on its node; the legacy
    # container and directory are gone (the run's backup keeps the directory).
    assert read_rows(volume_dir(docker_client, "pool-1") / "bots" / BOT / DB) == ROWS
    assert not docker_client.containers.list(all=True, filters={"name": f"^{LEGACY_CONTAINER}$"})
    assert not (cluster.base_dir / "alice" / BOT).exists()
    assert not (cluster.base_dir / "pools").exists()  # never a pool directory of its own
    assert copies() == 1


async def test_a_rollback_brings_it_to_a_legacy_service_of_its_own(swarm_legacy, docker_client):
    cluster, _ = swarm_legacy
    h = cluster.harness
    event, kept = now(), await trades(h, ALICE, BOT)
    with counted() as samples:
        code, out = await h.migrate(f"--rollback={BOT}")
    print(f"\nFIGURE rollback: {out}")
    assert code == 0, out
    assert max(samples) <= 1, samples
    info = await where(h)
    assert (info["mode"], info["containerName"], info["poolId"]) == (
        "legacy", LEGACY_CONTAINER, "pool-2")  # fmt: skip
    service = docker_client.services.get(LEGACY_CONTAINER)  # named as its container was
    assert service.attrs["Spec"]["Labels"]["ftpool.pool"] == "pool-2"
    await wait_for(lambda: answering(h), timeout=180, step=0.5)
    assert_trades_kept(kept, await trades(h, ALICE, BOT), event)
    # Its files came out of pool-1 through that pool's agent, into pool-2's volume.
    assert read_rows(volume_dir(docker_client, "pool-2") / "bots" / BOT / DB) == ROWS
    assert not (volume_dir(docker_client, "pool-1") / "bots" / BOT).exists()
    assert copies() == 1


async def test_a_removed_pools_volume_is_emptied_on_its_node(swarm_legacy, docker_client):
    cluster, _ = swarm_legacy
    h = cluster.harness
    pool_1 = volume_dir(docker_client, "pool-1")
    assert any(pool_1.iterdir())  # its programs, logs, ...
    started = time.monotonic()
    status, body = await h.call("POST", "/api/pool/cleanup")
    print(f"\nFIGURE cleanup with the wipe: {time.monotonic() - started:.1f} s")
    assert status == 200, body
    status, st = await h.call("GET", "/api/pool/status")
    assert [p["id"] for p in st["pools"]] == ["pool-2"]
    assert not docker_client.services.list(filters={"name": "freqtrade-pool-pool-1"})
    assert list(pool_1.iterdir()) == []  # the empty volume stays (docs/swarm.md)
    assert not docker_client.services.list(filters={"label": "ftpool.wipe"})


async def test_migrating_again_removes_the_legacy_service_and_empties_its_volume(
    swarm_legacy, docker_client
):
    """Into a new pool-1 on the same node, whose removed predecessor's volume (emptied
    above, kept by Docker) now holds a stale directory of this very bot, as a volume a
    failover abandoned does: the new pool never mounts it (its own volume, a new name), so
    the import lands; the stale directory stays where it was, for an operator."""
    cluster, _ = swarm_legacy
    h = cluster.harness
    event, kept = now(), await trades(h, ALICE, BOT)
    legacy_volume = volume_dir(docker_client, "pool-2")
    [old] = labelled_volumes(docker_client, "pool-1")  # the removed pool-1's, by its label
    stale = mountpoint(old) / "bots" / BOT
    stale.mkdir(parents=True)
    (stale / "config.json").write_text('{"stale": "an earlier pool-1\'s"}')
    with counted() as samples:
        code, out = await h.migrate("--execute", "--bot", BOT, "--verbose")
    print(f"\nFIGURE migrate again: {out}")
    assert code == 0 and "1 of 1 migrated" in out, out
    assert max(samples) <= 1, samples
    info = await where(h)
    assert (info["mode"], info["poolId"]) == ("pooled", "pool-1")
    await wait_for(lambda: answering(h), timeout=180, step=0.5)
    assert_trades_kept(kept, await trades(h, ALICE, BOT), event)
    assert not docker_client.services.list(filters={"name": LEGACY_CONTAINER})
    assert list(legacy_volume.iterdir()) == []
    assert read_rows(volume_dir(docker_client, "pool-1") / "bots" / BOT / DB) == ROWS
    new = service_volume(docker_client, "pool-1")
    assert new != old.name and new.startswith("ftpool-pool-pool-1-"), (new, old.name)
    assert sorted(v.name for v in labelled_volumes(docker_client, "pool-1")) == sorted(
        [old.name, new])  # fmt: skip
    assert json.loads((stale / "config.json").read_text()) == {"stale": "an earlier pool-1's"}
