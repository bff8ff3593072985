"""POOL_RUNTIME=swarm on a one-node swarm made of the test Docker daemon: real trading bots
in a pool that is a Swarm service, reached through the controller; their lifecycle; a
killed task recovered by the controller (not by Swarm); a restarted controller adopting
the service.

The daemon enters swarm mode for this module only (a swarm labelled as this test's) and
leaves it in a `finally`, with the services, task containers and networks swarm mode left
behind, so the Docker tests after it find the daemon as before. A swarm this test did not
make fails the module instead of being left. The controller runs on the host, which is not
on the overlay: agents dial it through docker_gwbridge's gateway, and it reaches bots on
the node's address, where each pool publishes its bot ports in `host` mode (docs/swarm.md).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import pytest_asyncio

from controller.runtimes.spec import pool_volume
from tests.e2e.docker.conftest import (
    cluster_behind_gateway,
    provision_answering,
    remove_test_pools,
)
from tests.e2e.local.conftest import Cluster
from tests.e2e.local.test_freqtrade import ALICE, all_running, states
from tests.e2e.trading import assert_trading_api, wait_trading
from tests.exchange import EmulatorProcess
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
NETWORK = "ftpool-test-overlay"
BOTS = ["swarm-bot-1", "swarm-bot-2"]
MARKET_DATA_PORT = 30100  # this module's port range: 30100-30299
BASE_PORT = 30200
SERVICE = "freqtrade-pool-pool-1"
TEST_SWARM = {"ftpool.test": "e2e-docker-swarm"}  # the label that makes a swarm this test's


def leave_swarm(client: docker.DockerClient) -> None:
    """Leave this test's swarm: its pool services first, then swarm mode, then the task
    containers a forced leave leaves behind (stopped or not)."""
    with contextlib.suppress(docker.errors.APIError):
        for service in client.services.list(filters={"label": "ftpool.pool"}):
            service.remove()
    with contextlib.suppress(docker.errors.APIError):
        client.swarm.leave(force=True)
    remove_test_pools(client)
    # This swarm's task containers, whatever they mount (a pool's directory is a volume).
    for container in client.containers.list(all=True, filters={"label": "ftpool.pool"}):
        if "com.docker.swarm.task.id" in container.labels:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
    # The pools' directories (POOL_STORAGE=node: a volume on the node), once unused.
    for volume in client.volumes.list(filters={"label": "ftpool.pool"}):
        if volume.name.startswith("ftpool-pool-"):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)


def in_swarm(client: docker.DockerClient) -> bool:
    return client.info()["Swarm"]["LocalNodeState"] != "inactive"


def ours(client: docker.DockerClient) -> bool:
    """True if the daemon's swarm is one this test made (a run interrupted before leaving)."""
    with contextlib.suppress(docker.errors.APIError):
        client.swarm.reload()
        return (client.swarm.attrs.get("Spec", {}).get("Labels") or {}) == TEST_SWARM
    return False  # a worker of another swarm: its managers are elsewhere


def gwbridge_gateway(client: docker.DockerClient, timeout: float = 30.0) -> str:
    """docker_gwbridge's gateway, once swarm mode has made the network (it may do so a
    moment after `swarm init` returned: once found missing 1.8 s after it)."""
    deadline = time.monotonic() + timeout
    while not (found := client.networks.list(names=["docker_gwbridge"])):
        if time.monotonic() > deadline:
            pytest.fail(f"swarm mode made no docker_gwbridge within {timeout:.0f} s")
        time.sleep(0.2)
    found[0].reload()
    return found[0].attrs["IPAM"]["Config"][0]["Gateway"]


@contextlib.contextmanager
def one_node_swarm(client: docker.DockerClient) -> Iterator[str]:
    """The daemon as a one-node swarm on loopback (its gateway on docker_gwbridge yielded);
    always left, and docker_gwbridge removed if swarm mode made it."""
    if in_swarm(client):
        if not ours(client):
            pytest.fail("the test daemon is in a swarm this test did not make; leave it first")
        leave_swarm(client)
    had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
    try:
        # 127.0.0.1: an interface with several IPv6 addresses is refused (docs/swarm.md).
        client.swarm.init(
            advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377", labels=TEST_SWARM
        )
        yield gwbridge_gateway(client)
    finally:
        leave_swarm(client)
        if not had_gwbridge:
            for network in client.networks.list(names=["docker_gwbridge"]):
                with contextlib.suppress(docker.errors.APIError):
                    network.remove()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def swarm_cluster(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> AsyncIterator[tuple[Cluster, EmulatorProcess]]:
    with one_node_swarm(docker_client) as gateway:
        async with cluster_behind_gateway(
            tmp_path_factory, docker_client, gateway,
            **swarm_settings(NETWORK, BASE_PORT, MARKET_DATA_PORT),
        ) as (cluster, exchange):  # fmt: skip
            yield cluster, exchange


def swarm_settings(network: str, base_port: int, market_data_port: int) -> dict[str, str]:
    """A controller on the host for a one-node swarm's pools: reaching bots on the ports
    each pool publishes on the node, its own overlay and ports."""
    return {
        "POOL_RUNTIME": "swarm", "SWARM_NETWORK": network, "POOL_BASE_PORT": str(base_port),
        "MARKET_DATA_BASE_PORT": str(market_data_port), "POOL_PUBLISH_PORTS": "true",
        "HEALTH_CHECK_INTERVAL": "2000",
    }  # fmt: skip


def running_task(client: docker.DockerClient) -> dict:
    tasks = client.services.get(SERVICE).tasks(filters={"desired-state": "running"})
    assert len(tasks) == 1, tasks
    return tasks[0]


def running_tasks(client: docker.DockerClient) -> list[str]:
    tasks = client.services.get(SERVICE).tasks()
    return [t["ID"] for t in tasks if t["Status"]["State"] == "running"]


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


async def test_lifecycle_acts_on_exactly_one_bot(swarm_cluster, docker_client):
    cluster, _ = swarm_cluster
    h = cluster.harness
    task_id = running_task(docker_client)["ID"]
    before = await all_running(cluster, BOTS)
    stopped, other = BOTS[1], BOTS[0]
    assert (await h.call("POST", f"/api/bots/{stopped}/stop", ALICE))[0] == 200

    async def is_stopped() -> bool:
        return (await states(cluster))[stopped]["process"]["state"] == "STOPPED"

    await wait_for(is_stopped, 60)
    status, body = await h.call("GET", f"/api/bots/{stopped}/ping", ALICE)
    assert status == 503 and "error" in body
    assert (await h.call("POST", f"/api/bots/{stopped}/start", ALICE))[0] == 200
    started = await all_running(cluster, BOTS, timeout=240)
    assert started[stopped] != before[stopped] and started[other] == before[other]

    assert (await h.call("POST", f"/api/bots/{other}/restart", ALICE))[0] == 200

    async def restarted() -> dict[str, int] | None:
        pids = await all_running(cluster, BOTS, timeout=240)
        return pids if pids[other] != started[other] else None

    after = await wait_for(restarted, 240)
    assert after[stopped] == started[stopped]
    assert running_task(docker_client)["ID"] == task_id  # bots, not the pool, restarted


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
    for bot in BOTS:
        status, config = await cluster.harness.call("GET", f"/bots/{bot}/api/v1/show_config", ALICE)
        assert status == 200 and config["bot_name"] == bot
    assert running_tasks(docker_client) == [after["ID"]]  # the killed one stays dead


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
    assert running_tasks(docker_client) == [task_id]


async def test_a_deleted_bot_leaves_its_neighbour_running(swarm_cluster, docker_client):
    cluster, _ = swarm_cluster
    h = cluster.harness
    kept, deleted = BOTS
    before = await all_running(cluster, BOTS)
    status, body = await h.call("DELETE", f"/api/bots/{deleted}", ALICE)
    assert status == 200 and body["status"] == "deleted"
    assert (await all_running(cluster, [kept]))[kept] == before[kept]
    assert deleted not in await states(cluster)
    # Its directory archived in its pool's directory: a volume on the node (POOL_STORAGE
    # defaults to node on swarm), nothing under the controller's BOT_BASE_DIR.
    pool_dir = Path(docker_client.volumes.get(pool_volume("pool-1")).attrs["Mountpoint"])
    assert list((pool_dir / "archive").glob(f"{deleted}-*"))
    assert not (cluster.base_dir / "pools" / "pool-1").exists()
