"""/api/nodes on a single-host runtime: admin only, no nodes; pools show this host."""

from __future__ import annotations

import socket

from tests.unit.controller.apps import ALICE, Api


async def test_nodes_are_the_admins_and_empty_on_one_host(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/nodes", ALICE)
    assert status == 403, body
    status, body, _ = await api.call("GET", "/api/nodes")
    assert status == 200
    assert body == {"success": True, "runtime": "fake", "nodes": []}


async def test_a_pool_on_one_host_runs_on_this_host(api: Api) -> None:
    status, _, _ = await api.call("POST", "/api/bots", json={"instanceId": "b1"})
    assert status == 201
    status, body, _ = await api.call("GET", "/api/pool/status")
    assert status == 200 and [pool["node"] for pool in body["pools"]] == [socket.gethostname()]


async def test_a_drain_is_the_admins_checks_its_node_and_needs_swarm(api: Api) -> None:
    status, body, _ = await api.call("POST", "/api/nodes/node-2/drain", ALICE)
    assert status == 403, body
    status, body, _ = await api.call("POST", "/api/nodes/..%2Fetc/drain")
    assert status in (400, 404) and body["success"] is False
    status, body, _ = await api.call("POST", "/api/nodes/node%20two/drain")
    assert status == 400 and "id or hostname" in body["error"]
    status, body, _ = await api.call("POST", "/api/nodes/node-2/drain")
    assert status == 409 and "fake runtime has no nodes" in body["error"]


async def test_an_undrain_is_the_admins_checks_its_node_and_needs_swarm(api: Api) -> None:
    status, body, _ = await api.call("DELETE", "/api/nodes/node-2/drain", ALICE)
    assert status == 403, body
    status, body, _ = await api.call("DELETE", "/api/nodes/node%20two/drain")
    assert status == 400 and "id or hostname" in body["error"]
    status, body, _ = await api.call("DELETE", "/api/nodes/node-2/drain")
    assert status == 409 and "fake runtime has no nodes" in body["error"]
