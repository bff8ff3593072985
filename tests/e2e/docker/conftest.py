"""The Docker suite: real pool containers of freqtrade-pool:latest with real trading bots.

It needs a running Docker daemon and the images from `make images`; without them it fails
(never skips), because this suite is the product's production mode.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator

import docker
import docker.errors
import pytest
import pytest_asyncio

from tests.e2e.local.conftest import Cluster
from tests.e2e.local.test_freqtrade import ALICE, all_running
from tests.e2e.trading import MARKET_DATA, start_exchange
from tests.exchange import EmulatorProcess, trading_bot
from tests.support import free_port, remove_pool_containers

# FTPOOL_TEST_POOL_IMAGE: a pool image of one's own (a branch's agent on top of the
# shared image, say), without replacing freqtrade-pool:latest for everyone else.
POOL_IMAGE = os.environ.get("FTPOOL_TEST_POOL_IMAGE", "freqtrade-pool:latest")


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"Docker is not reachable ({exc}); `make docker` starts it")
    try:
        client.images.get(POOL_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{POOL_IMAGE} is missing; `make images` builds it")
    yield client
    client.close()


def remove_test_pools(client: docker.DockerClient) -> None:
    """Remove pool containers whose data lives under the temp dir: earlier test runs' only."""
    remove_pool_containers(client, tempfile.gettempdir())


DOCKER_SETTINGS = {
    "POOL_RUNTIME": "docker",
    "POOL_IMAGE": POOL_IMAGE,
    "POOL_NETWORK": "host",
    "BOT_COMMAND": "freqtrade trade",
    "BOT_LAUNCH": "preload",
    "MAX_BOTS_PER_CONTAINER": "10",
    "POOL_BASE_PORT": "9000",
    "HEARTBEAT_INTERVAL": "1000",
    "BOT_PING_TIMEOUT": "3000",
    "POOL_GRACE": "5000",
    "LOG_LEVEL": "warning",
    **MARKET_DATA,
}


@contextlib.asynccontextmanager
async def cluster_in_docker(
    tmp_path_factory: pytest.TempPathFactory, client: docker.DockerClient, **overrides: str
) -> AsyncIterator[Cluster]:
    """A controller with the docker runtime; its pool containers are removed afterwards."""
    remove_test_pools(client)
    c = Cluster(tmp_path_factory.mktemp("docker"), {**DOCKER_SETTINGS, **overrides})
    await c.start()
    try:
        yield c
    finally:
        await c.stop()
        remove_test_pools(client)


@contextlib.asynccontextmanager
async def cluster_behind_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    client: docker.DockerClient,
    gateway: str,
    **overrides: str,
) -> AsyncIterator[tuple[Cluster, EmulatorProcess]]:
    """A controller for pools (docker or swarm runtime) off the host's network: it listens
    on all interfaces and agents dial it at `gateway` (the host's address on the pools'
    network), where the bots' exchange emulator listens too."""
    port = free_port()
    exchange = start_exchange(host=gateway)
    try:
        async with cluster_in_docker(
            tmp_path_factory,
            client,
            CONTROLLER_HOST="0.0.0.0",
            CONTROLLER_PORT=str(port),
            AGENT_CONTROLLER_URL=f"ws://{gateway}:{port}/api/agents/ws",
            **overrides,
        ) as cluster:
            yield cluster, exchange
    finally:
        exchange.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def docker_cluster(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> AsyncIterator[Cluster]:
    async with cluster_in_docker(tmp_path_factory, docker_client) as c:
        yield c


async def provision_answering(cluster: Cluster, exchange_url: str, bots: list[str]) -> None:
    """Alice's trading bots, provisioned, running, and answering through the proxy."""
    h = cluster.harness
    for bot in bots:
        await h.provision(ALICE, **trading_bot(exchange_url, bot))
    await all_running(cluster, bots, timeout=240)
    for bot in bots:
        status, config = await h.call("GET", f"/bots/{bot}/api/v1/show_config", ALICE)
        assert status == 200 and config["bot_name"] == bot
