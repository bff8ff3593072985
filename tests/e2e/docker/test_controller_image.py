"""The controller image as compose.yaml runs it: in a container, driving Docker via its socket.

The data directory is a host path mounted at /data, and POOL_HOST_DIR tells the
containerized controller where its pool directories are on the host, because pool
containers bind-mount them from there.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.docker.conftest import remove_test_pools
from tests.exchange import trading_bot
from tests.support import ADMIN_TOKEN, free_port, wait_for

pytestmark = pytest.mark.e2e
IMAGE = "ftpool-controller:latest"


async def test_containerized_controller_runs_a_pooled_bot(tmp_path, docker_client, exchange):
    docker_client.images.get(IMAGE)  # built by `make images`; missing is a failure
    port = free_port()
    controller = docker_client.containers.run(
        IMAGE,
        name=f"ftpool-controller-test-{port}",
        detach=True,
        network_mode="host",
        volumes={
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
            str(tmp_path): {"bind": "/data", "mode": "rw"},
        },
        environment={
            "CONTROLLER_PORT": str(port),
            "POOL_HOST_DIR": str(tmp_path / "pools"),
            "POOL_BASE_PORT": "9700",
            "BOT_COMMAND": "freqtrade trade",
            "HEARTBEAT_INTERVAL": "1000",
            "ADMIN_TOKEN": ADMIN_TOKEN,
        },
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:

            async def get(path: str):
                try:
                    async with http.get(base + path) as r:
                        return r.status, await r.json(content_type=None)
                except aiohttp.ClientError:
                    return None, None

            await wait_for(lambda: _ok(get("/healthz")), 60, step=0.5)
            body = trading_bot(exchange.url, "boxed-1")
            async with http.post(base + "/api/bots", json=body) as r:
                assert r.status == 201, await r.text()
                assert (await r.json())["port"] == 9700

            async def running():
                status, body = await get("/api/bots/boxed-1")
                return status == 200 and body["status"] == "running"

            await wait_for(running, 120, step=0.5)
            assert await get("/api/bots/boxed-1/ping") == (200, {"status": "pong"})

            async def traded():
                status, body = await get("/api/bots/boxed-1/status")  # its open trades
                return status == 200 and body

            await wait_for(traded, 180, step=1)
            # The pool container's /pool and /backup are host directories under the mounted
            # data path.
            pool = docker_client.containers.get("freqtrade-pool-pool-1")
            mounts = {m["Destination"]: m["Source"] for m in pool.attrs["Mounts"]}
            assert mounts == {
                "/pool": str(tmp_path / "pools" / "pool-1"),
                "/backup": str(tmp_path / "backups" / "pools" / "pool-1"),
            }
    finally:
        controller.remove(force=True)
        remove_test_pools(docker_client)


async def _ok(response) -> bool:
    status, _ = await response
    return status == 200
