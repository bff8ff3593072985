"""POOL_RUNTIME=swarm on a one-node swarm made of the test Docker daemon: real trading bots
in a pool that is a Swarm service, reached through the controller; their lifecycle; a
killed task recovered by the controller (not by Swarm); a restarted controller adopting
the service; the pool upgraded in place to another image (its service updated on its
node, with its volume), a failing canary rolled back there, and, last, upgraded by `move`
into a fresh service (tests/e2e/docker/test_upgrade.py builds the images).

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

import docker
import docker.errors
import pytest
import pytest_asyncio

from tests.e2e.docker.conftest import (
    POOL_IMAGE,
    cluster_behind_gateway,
    provision_answering,
    remove_test_pools,
)
from tests.e2e.docker.pool_volumes import volume_dir
from tests.e2e.docker.test_upgrade import BROKEN, IMAGE_B, upgrade_counting
from tests.e2e.docker.test_upgrade import images as images
from tests.e2e.local.conftest import Cluster
from tests.e2e.local.test_freqtrade import ALICE, all_running, assert_bots_answer, states
from tests.e2e.trading import assert_trades_kept, assert_trading_api, now, trades, wait_trading
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


def gateway_of(client: docker.DockerClient) -> str:
    """docker_gwbridge's gateway, once swarm mode has made the network (not always by the
    time `swarm init` answers: seen on a daemon just started)."""
    deadline = time.monotonic() + 60
    while not (found := client.networks.list(names=["docker_gwbridge"])):
        if time.monotonic() > deadline:
            pytest.fail("swarm init made no docker_gwbridge within 60 s")
        time.sleep(0.5)
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
        yield gateway_of(client)
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


def task_image(client: docker.DockerClient) -> str:
    """The image id of the container the pool's running task runs."""
    container_id = running_task(client)["Status"]["ContainerStatus"]["ContainerID"]
    return client.containers.get(container_id).image.id


async def assert_kept(cluster: Cluster, bots: list[str], before: dict, event: object) -> None:
    """Every bot running and answering, every trade it had before `event` still there."""
    await all_running(cluster, bots, timeout=240)
    await assert_bots_answer(cluster.harness, bots)
    for bot in bots:
        assert_trades_kept(before[bot], await trades(cluster.harness, ALICE, bot), event)


async def test_the_pool_upgrades_in_place_on_its_node(swarm_cluster, docker_client, images):
    """`recreate` on swarm: the service scaled to none (its task confirmed gone), then
    updated to the new image by id and one replica: a new task on the same node, with the
    same volume (every trade kept) and its agent's token."""
    cluster, _ = swarm_cluster
    h = cluster.harness
    node = running_task(docker_client)["NodeID"]
    status, plan = await h.call("POST", "/api/pool/upgrade",
                                json={"image": IMAGE_B, "dryRun": True})  # fmt: skip
    assert status == 200, plan
    assert plan["image"] == {"ref": IMAGE_B, "id": images[IMAGE_B]}
    assert [(p["poolId"], p["from"]["id"]) for p in plan["pools"]] == [
        ("pool-1", images[POOL_IMAGE])]  # fmt: skip
    event = now()
    before = {bot: await trades(h, ALICE, bot) for bot in BOTS}
    run, copies = await upgrade_counting(cluster, image=IMAGE_B, method="recreate")
    assert run["outcome"] == "upgraded", run
    assert copies == {bot: 1 for bot in BOTS}  # never two copies of a bot
    spec = docker_client.services.get(SERVICE).attrs["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == images[IMAGE_B]
    assert spec["Labels"]["ftpool.image"] == IMAGE_B
    assert running_task(docker_client)["NodeID"] == node
    assert task_image(docker_client) == images[IMAGE_B]
    await assert_kept(cluster, BOTS, before, event)
    status, body = await h.call("GET", "/api/pool/status")
    assert status == 200 and body["pools"][0]["image"]["ref"] == IMAGE_B
    assert body["outdatedPools"] == ["pool-1"]  # POOL_IMAGE still names the first image


async def test_a_failing_canary_goes_back_to_its_image_on_its_node(
    swarm_cluster, docker_client, images
):
    """A canary on an image whose bots cannot start: its pool is rolled back in place to
    the image it ran well on, with its data, never two copies of a bot."""
    cluster, _ = swarm_cluster
    node = running_task(docker_client)["NodeID"]
    event = now()
    before = {bot: await trades(cluster.harness, ALICE, bot) for bot in BOTS}
    run, copies = await upgrade_counting(cluster, image=BROKEN, canary=1, soak=5, timeout=45,
                                         method="recreate")  # fmt: skip
    assert run["outcome"] == "canary_failed", run
    [pool] = run["pools"]
    assert (pool["pool"], pool["step"]) == ("pool-1", "rolled_back"), pool
    assert copies == {bot: 1 for bot in BOTS}
    spec = docker_client.services.get(SERVICE).attrs["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == images[IMAGE_B]
    assert running_task(docker_client)["NodeID"] == node
    assert task_image(docker_client) == images[IMAGE_B]
    await assert_kept(cluster, BOTS, before, event)


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
    pool_dir = volume_dir(docker_client, "pool-1")
    assert list((pool_dir / "archive").glob(f"{deleted}-*"))
    assert not (cluster.base_dir / "pools" / "pool-1").exists()


async def test_a_pool_upgraded_by_move_goes_into_a_fresh_service(
    swarm_cluster, docker_client, images
):
    """`move` on swarm: a fresh pool's service on the new image, the bot held, its
    directory sent by the old pool's agent and received by the new one's, started there;
    the old service removed."""
    cluster, _ = swarm_cluster
    kept = BOTS[0]  # its neighbour was deleted above
    event = now()
    before = {kept: await trades(cluster.harness, ALICE, kept)}
    run, copies = await upgrade_counting(cluster, image=POOL_IMAGE, method="move")
    assert run["outcome"] == "upgraded", run
    [pool] = run["pools"]
    assert (pool["pool"], pool["method"], pool["to_pool"]) == ("pool-1", "move", "pool-2")
    assert copies == {kept: 1}
    with pytest.raises(docker.errors.NotFound):
        docker_client.services.get(SERVICE)
    spec = docker_client.services.get("freqtrade-pool-pool-2").attrs["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == images[POOL_IMAGE]
    bots = await cluster.harness.bots(ALICE)
    assert bots[kept]["poolId"] == "pool-2"
    await assert_kept(cluster, [kept], before, event)
