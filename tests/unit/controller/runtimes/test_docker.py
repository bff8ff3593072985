"""The Docker runtime without a daemon: whatever the SDK raises becomes RuntimeFailure."""

from __future__ import annotations

import socket
from pathlib import Path

import docker
import pytest

from controller.errors import RuntimeFailure
from controller.runtimes import PoolLaunch
from controller.runtimes.docker import DockerOptions, DockerRuntime


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket goes: nothing listens


@pytest.fixture(params=["unix-socket-missing", "loopback-port-closed"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> DockerRuntime:
    """A daemon that is away: requests raises its ConnectionError, not a DockerException."""
    if request.param == "unix-socket-missing":
        url = f"unix://{tmp_path}/no-such-docker.sock"
    else:
        url = f"tcp://127.0.0.1:{closed_port()}"
    # A fixed API version: the client asks the daemon nothing until it is used.
    client = docker.DockerClient(base_url=url, version="1.44", timeout=5)
    options = DockerOptions(image="freqtrade-pool:latest", network="host",
                            pools_dir=tmp_path / "pools", host_pools_dir=tmp_path / "pools",
                            archive_dir=tmp_path / "archive")  # fmt: skip
    return DockerRuntime(options, client=client)


async def test_an_unreachable_daemon_is_a_runtime_failure(runtime: DockerRuntime) -> None:
    launch = PoolLaunch("pool-1", 10, 9000, "t" * 64, "ws://127.0.0.1:5000/api/agents/ws")
    calls = [
        runtime.inspect("pool-1"), runtime.create(launch), runtime.restart("pool-1"),
        runtime.remove("pool-1"), runtime.discard("pool-1"), runtime.stats("pool-1"),
        runtime.list(),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(RuntimeFailure, match=r"^docker: "):
            await call
    await runtime.close()
