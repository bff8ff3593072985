"""Pools on a user-defined bridge network: bots reached by container address, ports on loopback.

The controller listens on all interfaces so that agents can dial it through the bridge's
gateway, and the bots trade against an exchange emulator on that gateway address; every
packet stays between this host and the containers this test creates.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import docker
import pytest
import pytest_asyncio

from tests.e2e.docker.conftest import cluster_behind_gateway, provision_answering
from tests.e2e.local.conftest import Cluster
from tests.e2e.local.test_freqtrade import ALICE
from tests.e2e.trading import assert_trading_api, wait_trading
from tests.exchange import EmulatorProcess

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
NETWORK = "ftpool-test-bridge"
BOTS = ["bridge-bot-1", "bridge-bot-2"]
BASE_PORT = 9200


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bridge_cluster(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> AsyncIterator[tuple[Cluster, EmulatorProcess]]:
    for stale in docker_client.networks.list(names=[NETWORK]):
        stale.remove()
    network = docker_client.networks.create(NETWORK, driver="bridge")
    network.reload()
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    try:
        async with cluster_behind_gateway(
            tmp_path_factory,
            docker_client,
            gateway,
            POOL_NETWORK=NETWORK,
            POOL_BASE_PORT=str(BASE_PORT),
            POOL_PUBLISH_PORTS="true",
        ) as (cluster, exchange):
            yield cluster, exchange
    finally:
        network.remove()


def answers_on_loopback(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_bridge_pool_is_reached_by_container_address(bridge_cluster, docker_client):
    cluster, exchange = bridge_cluster
    h = cluster.harness
    await provision_answering(cluster, exchange.url, BOTS)
    status, info = await h.call("GET", f"/api/pool/bot/{BOTS[0]}", ALICE)
    assert status == 200
    assert info["connection"] == {
        "host": "freqtrade-pool-pool-1",
        "port": BASE_PORT,
        "url": f"http://freqtrade-pool-pool-1:{BASE_PORT}",
    }
    container = docker_client.containers.get("freqtrade-pool-pool-1")
    assert NETWORK in container.attrs["NetworkSettings"]["Networks"]
    bindings = container.attrs["HostConfig"]["PortBindings"]
    assert bindings, "POOL_PUBLISH_PORTS=true publishes the pool's block"
    assert {b["HostIp"] for rows in bindings.values() for b in rows} == {"127.0.0.1"}
    assert answers_on_loopback(BASE_PORT)
    await wait_trading(h, ALICE, BOTS)
    for bot in BOTS:
        await assert_trading_api(h, ALICE, bot)
