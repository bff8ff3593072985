"""POOL_RUNTIME=swarm over two nodes (tests/e2e/docker/swarm_nodes.py: a dockerd in each of
two network namespaces): pools are spread over both by placement, bots on node 2 trade and
answer through the controller, GET /api/nodes shows both nodes with their pools and bots;
then a pool on node 2 is upgraded to an image only the manager (node 1) has: its task
rejected at once, the pool rolled back in place on node 2; then node 2 is drained: every
pool moves to node 1 one at a time, each bot keeps its trades, no bot ever runs twice
(counted on both nodes through the drain), node 2 runs no bot process at the end.

Each pool's directory is on its node's own disk (POOL_STORAGE=node, the default on swarm):
a volume of that node's dockerd (its own data root), never under the controller's
BOT_BASE_DIR, so the drain's moves carry each bot's directory through the two agents and
the controller's staging. The test reads the volumes where the nodes keep them: each bot's
directory is in exactly one pool's volume, before and after the drain.

The controller runs on the host (in this test process), talking to node 1's dockerd (the
manager) through its socket; it reaches the nodes over their link (10.231.0.0/24), where
each pool publishes its bot ports in `host` mode, and agents dial it at the host's address
on that link, where the exchange emulator listens too (docs/swarm.md).
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
import pytest_asyncio

from tests.e2e.docker import swarm_nodes as harness
from tests.e2e.docker.conftest import POOL_IMAGE, cluster_behind_gateway, provision_answering
from tests.e2e.docker.pool_volumes import labelled_volumes, mountpoint, service_volume
from tests.e2e.docker.test_upgrade import upgrade
from tests.e2e.local.conftest import Cluster
from tests.e2e.local.test_freqtrade import ALICE, all_running
from tests.e2e.trading import assert_trades_kept, assert_trading_api, now, trades, wait_trading
from tests.exchange import EmulatorProcess
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
BOTS = ["nodes-bot-1", "nodes-bot-2"]
MARKET_DATA_PORT = 30800  # this module's port range: 30800-30999 (on the nodes only)
BASE_PORT = 30900
ONLY_ON_MANAGER = "freqtrade-pool:test-manager-only"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def swarm(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> AsyncIterator[tuple[harness.SwarmNodes, Cluster, EmulatorProcess]]:
    with harness.swarm_nodes(2) as nodes:
        print(f"swarm nodes: {harness.timings}")
        before = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = nodes.manager.docker_host  # the controller's daemon
        try:
            async with cluster_behind_gateway(
                tmp_path_factory,
                docker_client,
                nodes.host_address,
                POOL_RUNTIME="swarm",
                SWARM_NETWORK="ftpool-nodes-overlay",
                POOL_PUBLISH_PORTS="true",
                POOL_BASE_PORT=str(BASE_PORT),
                MARKET_DATA_BASE_PORT=str(MARKET_DATA_PORT),
                MAX_BOTS_PER_CONTAINER="1",  # a pool a bot: two pools to spread
                HEALTH_CHECK_INTERVAL="2000",
            ) as (cluster, exchange):
                yield nodes, cluster, exchange
        finally:
            if before is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = before


async def get(cluster: Cluster, path: str) -> dict:
    status, body = await cluster.harness.call("GET", path)
    assert status == 200, body
    return body


async def bots_by_node(cluster: Cluster) -> dict[str, list[str]]:
    """Node id → the bots in pools pinned to it (the store's and the runtime's view)."""
    pools = {p["id"]: p["node"] for p in (await get(cluster, "/api/pool/status"))["pools"]}
    found: dict[str, list[str]] = {}
    for bot in (await get(cluster, "/api/bots"))["bots"]:
        found.setdefault(pools[bot["poolId"]], []).append(bot["instanceId"])
    return {node: sorted(bots) for node, bots in found.items()}


def bot_dirs(nodes: harness.SwarmNodes) -> dict[str, list[str]]:
    """Bot id → the nodes (hostnames) whose pool volumes hold a directory of it."""
    found: dict[str, list[str]] = {}
    for node in nodes.nodes:
        for volume in node.client.volumes.list(filters={"label": "ftpool.pool"}):
            bots = Path(volume.attrs["Mountpoint"]) / "bots"
            for bot_dir in bots.iterdir() if bots.is_dir() else []:
                found.setdefault(bot_dir.name, []).append(node.name)
    return found


def assert_node_local(nodes: harness.SwarmNodes, cluster: Cluster, pools: dict[str, str]) -> None:
    """Each pool's directory is a volume on the node it is pinned to, and none is under the
    controller's BOT_BASE_DIR (`pools`: pool id → node id)."""
    assert not list((cluster.base_dir / "pools").glob("*")), "a pool directory the controller sees"
    volumes = {pool_id: service_volume(nodes.manager.client, pool_id) for pool_id in pools}
    for node in nodes.nodes:
        names = {v.name for v in node.client.volumes.list(filters={"label": "ftpool.pool"})}
        for pool_id, node_id in pools.items():
            assert (volumes[pool_id] in names) == (node_id == node.node_id), (node, pool_id)


async def pool_nodes(cluster: Cluster) -> dict[str, str]:
    return {p["id"]: p["node"] for p in (await get(cluster, "/api/pool/status"))["pools"]}


async def test_pools_spread_over_both_nodes_and_bots_on_node_2_trade(swarm):
    nodes, cluster, exchange = swarm
    h = cluster.harness
    await provision_answering(cluster, exchange.url, BOTS)
    by_node = await bots_by_node(cluster)
    assert set(by_node) == {n.node_id for n in nodes.nodes}, by_node  # both nodes used
    assert sorted(b for bots in by_node.values() for b in bots) == BOTS

    body = await get(cluster, "/api/nodes")
    assert body["runtime"] == "swarm"
    views = {n["id"]: n for n in body["nodes"]}
    for node in nodes.nodes:
        view = views[node.node_id]
        assert (view["state"], view["address"], view["takesPools"]) == ("ready", node.address, True)
        assert view["bots"] == len(by_node[node.node_id]) and len(view["pools"]) == view["bots"]

    await wait_trading(h, ALICE, BOTS)
    for bot in by_node[nodes.nodes[1].node_id]:  # answered from node 2, through the controller
        await assert_trading_api(h, ALICE, bot)
    for node in nodes.nodes:  # each bot runs once, on the node its pool is pinned to
        running = node.bot_processes()
        assert {b: len(p) for b, p in running.items()} == {b: 1 for b in by_node[node.node_id]}
    assert_node_local(nodes, cluster, await pool_nodes(cluster))
    names = {n.node_id: n.name for n in nodes.nodes}
    assert bot_dirs(nodes) == {b: [names[n]] for n, bots in by_node.items() for b in bots}


async def test_an_image_node_2_lacks_fails_its_pools_upgrade_at_once_and_rolls_back(swarm):
    """The image is on the manager (node 1) only: node 2 rejects the updated task (no
    registry is tried: the service names the image by id), the upgrade of its pool fails
    with Swarm's error, and the pool is rolled back in place, on node 2, to its image."""
    nodes, cluster, _ = swarm
    h = cluster.harness
    node1, node2 = nodes.nodes
    dockerfile = f"FROM {POOL_IMAGE}\nLABEL ftpool.test-image=manager-only\n"
    node1.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ONLY_ON_MANAGER,
                              rm=True)  # fmt: skip
    old = node1.client.images.get(POOL_IMAGE).id
    pool = next(p for p, node in (await pool_nodes(cluster)).items() if node == node2.node_id)
    [bot] = (await bots_by_node(cluster))[node2.node_id]
    event, before = now(), await trades(h, ALICE, bot)
    run = await upgrade(cluster, image=ONLY_ON_MANAGER, pools=[pool], method="recreate")
    [entry] = run["pools"]
    print(f"upgrade to an image node 2 lacks: {entry['reason']}")
    assert (entry["pool"], entry["step"]) == (pool, "rolled_back"), run
    assert "did not start: its task rejected" in entry["reason"], entry
    spec = node1.client.services.get(f"freqtrade-pool-{pool}").attrs["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == old
    assert (await pool_nodes(cluster))[pool] == node2.node_id
    await all_running(cluster, BOTS)
    await assert_trading_api(h, ALICE, bot)
    assert_trades_kept(before, await trades(h, ALICE, bot), event)
    assert {b: len(p) for b, p in node2.bot_processes().items()} == {bot: 1}


def volume_entries(node, pool_id: str) -> list[str]:
    """What a removed pool's volume on that node holds (its top level): found by its label,
    as an operator finds it (docs/swarm.md), the only one of that number there."""
    [volume] = labelled_volumes(node.client, pool_id)
    return sorted(p.name for p in mountpoint(volume).iterdir())


async def test_draining_node_2_moves_every_pool_to_node_1_with_its_trades(swarm):
    nodes, cluster, _ = swarm
    h = cluster.harness
    node1, node2 = nodes.nodes
    await all_running(cluster, BOTS)
    before = {bot: await trades(h, ALICE, bot) for bot in BOTS}
    moving = (await bots_by_node(cluster))[node2.node_id]
    pools = next(n["pools"] for n in (await get(cluster, "/api/nodes"))["nodes"]
                 if n["id"] == node2.node_id)  # fmt: skip
    event = now()

    copies: dict[str, int] = {}  # the most copies of each bot seen at once, both nodes

    async def count() -> None:
        while True:
            seen: dict[str, int] = {}
            for node in nodes.nodes:
                for bot, pids in (await asyncio.to_thread(node.bot_processes)).items():
                    seen[bot] = seen.get(bot, 0) + len(pids)
            for bot, n in seen.items():
                copies[bot] = max(copies.get(bot, 0), n)
            await asyncio.sleep(0.2)

    counter = asyncio.create_task(count())
    try:
        status, started = await h.call("POST", f"/api/nodes/{node2.node_id}/drain")
        assert status == 202 and started["drain"]["state"] == "running", started

        async def ended() -> dict | None:
            view = next(n for n in (await get(cluster, "/api/nodes"))["nodes"]
                        if n["id"] == node2.node_id)  # fmt: skip
            return view if view["drain"]["state"] != "running" else None

        view = await wait_for(ended, 600, step=1)
    finally:
        counter.cancel()
    drain = view["drain"]
    print(f"drain of node 2: {drain}")
    assert drain["state"] == "done" and drain["left"] == [], drain
    assert sorted(m["pool"] for m in drain["moved"]) == sorted(pools)
    assert view["drained"] and not view["takesPools"] and view["pools"] == []

    await all_running(cluster, BOTS)
    assert await bots_by_node(cluster) == {node1.node_id: BOTS}
    for bot in BOTS:
        await assert_trading_api(h, ALICE, bot)
        assert_trades_kept(before[bot], await trades(h, ALICE, bot), event)
    assert node2.bot_processes() == {}
    assert {b: len(p) for b, p in node1.bot_processes().items()} == {b: 1 for b in BOTS}
    assert max(copies.values()) == 1 and set(moving) <= set(copies), copies
    # Moved through the agents: each directory now only in its pool's volume on node 1
    # (the old pools' volumes stay on node 2, emptied), none left in staging.
    assert bot_dirs(nodes) == {bot: [node1.name] for bot in BOTS}
    assert not list((cluster.base_dir / "migrating").glob("*"))
    assert_node_local(nodes, cluster, await pool_nodes(cluster))
    # The old pools' volumes, which the manager cannot reach, emptied on node 2 by a
    # one-shot task pinned there (programs, logs: nothing left), and that task removed.
    assert {pool_id: volume_entries(node2, pool_id) for pool_id in pools} == {
        pool_id: [] for pool_id in pools}  # fmt: skip
    assert not node1.client.services.list(filters={"label": "ftpool.wipe"})
