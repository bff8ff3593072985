"""The shortest path through the system: provision a bot and reach it through the proxy."""

import pytest

pytestmark = pytest.mark.integration


async def test_provision_and_proxy(harness_factory):
    h = await harness_factory()
    created = await h.provision(instanceId="smoke-1")
    assert created["poolId"] == "pool-1" and created["port"] == 21000
    await h.wait_running("smoke-1")
    status, body = await h.call("GET", "/api/bots/smoke-1/ping")
    assert (status, body) == (200, {"status": "pong"})
