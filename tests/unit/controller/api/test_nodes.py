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
