"""POOL_RUNTIME=swarm on a one-node swarm made of the test Docker daemon: real trading bots
in a pool that is a Swarm service, reached through the controller; a killed task recovered
by the controller (not by Swarm); a restarted controller adopting the service.

The daemon enters swarm mode for this module only and leaves it in a `finally` (and a swarm
left by an interrupted run is left first), so the other Docker tests find it as before.
The host is not on the overlay: agents dial the controller through docker_gwbridge's
gateway, and the controller reaches bots on the node's address, where each pool publishes
its bot ports in `host` mode (docs/swarm.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import docker
import docker.errors
import pytest
import pytest_asyncio

from tests.e2e.docker.conftest import cluster_in_docker, provision_answering, remove_test_pools
from tests.e2e.local.conftest import Cluster
from tests.e2e.local.test_freqtrade import ALICE, all_running
from tests.e2e.trading import assert_trading_api, start_exchange, wait_trading
from tests.exchange import EmulatorProcess
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
NETWORK = "ftpool-test-overlay"
BOTS = ["swarm-bot-1", "swarm-bot-2"]
BASE_PORT = 30100  # this module's port range: 30000-30999
SERVICE = "freqtrade-pool-pool-1"


def leave_swarm(client: docker.DockerClient) -> None:
    with contextlib.suppress(docker.errors.APIError):
        client.swarm.leave(force=True)
    remove_test_pools(client)  # containers of tasks the leave stopped, if any are left


@contextlib.contextmanager
def one_node_swarm(client: docker.DockerClient) -> Iterator[str]:
    """The daemon as a one-node swarm (its gateway on docker_gwbridge yielded); always left."""
    leave_swarm(client)
    had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
    try:
        client.swarm.init(advertise_addr="eth0" if _has_eth0() else "127.0.0.1")
        gwbridge = client.networks.get("docker_gwbridge")
        yield gwbridge.attrs["IPAM"]["Config"][0]["Gateway"]
    finally:
        leave_swarm(client)
        if not had_gwbridge:  # the daemon as it was: swarm mode made it
            for network in client.networks.list(names=["docker_gwbridge"]):
                with contextlib.suppress(docker.errors.APIError):
                    network.remove()


def _has_eth0() -> bool:
    with contextlib.suppress(OSError):
        return open("/sys/class/net/eth0/operstate").read().strip() != "down"
    return False


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def swarm_cluster(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> AsyncIterator[tuple[Cluster, EmulatorProcess]]:
    with one_node_swarm(docker_client) as gateway:
        port = free_port()
        exchange = start_exchange(host=gateway)
        try:
            async with cluster_in_docker(
                tmp_path_factory,
                docker_client,
                POOL_RUNTIME="swarm",
                SWARM_NETWORK=NETWORK,
                CONTROLLER_HOST="0.0.0.0",
                CONTROLLER_PORT=str(port),
                AGENT_CONTROLLER_URL=f"ws://{gateway}:{port}/api/agents/ws",
                POOL_BASE_PORT=str(BASE_PORT),
                MARKET_DATA_BASE_PORT="30000",
                POOL_PUBLISH_PORTS="true",
                HEALTH_CHECK_INTERVAL="2000",
            ) as cluster:
                yield cluster, exchange
        finally:
            exchange.stop()


def running_task(client: docker.DockerClient) -> dict:
    tasks = client.services.get(SERVICE).tasks(filters={"desired-state": "running"})
    assert len(tasks) == 1, tasks
    return tasks[0]


async def test_a_pool_is_a_pinned_service_and_its_bots_trade(swarm_cluster, docker_client):
    cluster, exchange = swarm_cluster
    h = cluster.harness
    await provision_answering(cluster, exchange.url, BOTS)
    node_id = docker_client.info()["Swarm"]["NodeID"]
    spec = docker_client.services.get(SERVICE).attrs["Spec"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id=={node_id}"]
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"

    status, body = await h.call("GET", "/api/pool/status")
    assert status == 200 and [p["node"] for p in body["pools"]] == [node_id]
    status, body = await h.call("GET", "/api/nodes")
    assert status == 200 and body["runtime"] == "swarm"
    [node] = body["nodes"]
    assert (node["id"], node["state"], node["pools"], node["bots"]) == (
        node_id, "ready", ["pool-1"], 2)  # fmt: skip
    assert node["takesPools"] and node["memoryBytes"] > 0

    await wait_trading(h, ALICE, BOTS)
    for bot in BOTS:
        await assert_trading_api(h, ALICE, bot)


async def test_a_killed_task_is_started_again_by_the_controller(swarm_cluster, docker_client):
    cluster, _ = swarm_cluster
    before = running_task(docker_client)
    container_id = before["Status"]["ContainerStatus"]["ContainerID"]
    docker_client.containers.get(container_id).kill()

    def replaced() -> dict | None:
        tasks = docker_client.services.get(SERVICE).tasks(filters={"desired-state": "running"})
        fresh = [t for t in tasks if t["ID"] != before["ID"] and t["Status"]["State"] == "running"]
        return fresh[0] if fresh else None

    after = await wait_for(replaced, 120, step=1)
    assert after["NodeID"] == before["NodeID"]
    await all_running(cluster, BOTS, timeout=240)
    status, config = await cluster.harness.call("GET", f"/bots/{BOTS[0]}/api/v1/show_config", ALICE)
    assert status == 200 and config["bot_name"] == BOTS[0]
    # One task of the pool runs: the killed one stays dead.
    live = [t for t in docker_client.services.get(SERVICE).tasks()
            if t["Status"]["State"] == "running"]  # fmt: skip
    assert [t["ID"] for t in live] == [after["ID"]]


async def test_a_restarted_controller_adopts_the_service(swarm_cluster, docker_client):
    cluster, _ = swarm_cluster
    service_id = docker_client.services.get(SERVICE).id
    task_id = running_task(docker_client)["ID"]
    h = await cluster.restart()
    await all_running(cluster, BOTS, timeout=240)
    for bot in BOTS:
        await assert_trading_api(h, ALICE, bot)
    status, body = await h.call("GET", "/api/pool/status")
    assert status == 200 and body["unknownPools"] == [] and body["totalPools"] == 1
    # The same service and task: adopted, neither made anew nor restarted.
    assert docker_client.services.get(SERVICE).id == service_id
    assert running_task(docker_client)["ID"] == task_id
