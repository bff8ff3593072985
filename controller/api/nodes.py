"""/api/nodes: the hosts pools run on (POOL_RUNTIME=swarm), with their pools, bots, memory,
state and last drain; an empty list on a single-host runtime. POST /api/nodes/{node}/drain
moves every pool off a node (controller/moves/drain.py); DELETE takes its drain label off."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from controller.api.middleware import principal
from controller.api.spec import (
    ADMIN,
    BOOL,
    ID,
    INT,
    NODE_PATTERN,
    NUM,
    STR,
    TRUE,
    answer,
    obj,
    op,
)
from controller.errors import BadRequest
from controller.moves.drain import NodeDrain
from controller.pools.manager import PoolManager
from controller.runtimes.swarm import SwarmRuntime
from controller.runtimes.swarm_nodes import allowed, loads

DRAIN = obj({
    "node": STR, "started_at": NUM, "state": {"enum": ["running", "done", "failed"]},
    "finished_at": {"type": ["number", "null"]}, "moved": {"type": "array", "items": obj({
        "pool": ID, "to": ID, "bots": INT, "seconds": NUM})},
    "removed": {"type": "array", "items": ID}, "left": {"type": "array", "items": ID},
    "error": STR,
})  # fmt: skip
NODE = obj({
    "id": STR, "hostname": STR, "state": STR, "availability": STR, "address": STR,
    "labels": {"type": "object", "additionalProperties": STR},
    "takesPools": BOOL, "pools": {"type": "array", "items": ID}, "bots": INT,
    "memoryBytes": INT, "freeMemoryBytes": INT, "drained": BOOL,
    "drain": {"oneOf": [{"type": "null"}, DRAIN]},  # its last drain
})  # fmt: skip
NODE_NAME = re.compile(f"^{NODE_PATTERN}$")


def node_name(request: web.Request) -> str:
    name = request.match_info["node"]
    if not NODE_NAME.match(name):
        raise BadRequest("node must be a node's id or hostname")
    return name


class APINodes:
    operations = {
        ("GET", "/api/nodes"): op(
            "the swarm's nodes with their pools, bots, memory and state (swarm runtime)",
            security=ADMIN, tags=("pools",),
            ok={200: answer(obj({"success": TRUE, "runtime": STR,
                                 "nodes": {"type": "array", "items": NODE}}))},
        ),
        ("POST", "/api/nodes/{node}/drain"): op(
            "drain a node: placement stops picking it and its pools move to other nodes, "
            "one at a time, each bot by the transfer protocol (swarm runtime)",
            security=ADMIN, tags=("pools",), errors=(400, 404, 409),
            ok={202: answer(obj({"success": TRUE, "drain": DRAIN}), "the drain started")},
        ),
        ("DELETE", "/api/nodes/{node}/drain"): op(
            "undrain a node: its drain label goes, so placement picks it again (after a "
            "failed drain, or one a controller restart forgot; swarm runtime)",
            security=ADMIN, tags=("pools",), errors=(400, 404, 409),
            ok={200: answer(obj({"success": TRUE, "node": STR, "drained": {"const": False}}),
                            "placement picks the node again")},
        ),
    }  # fmt: skip

    def __init__(self, pools: PoolManager, drain: NodeDrain) -> None:
        self.pools = pools
        self.drain = drain

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/nodes", self.nodes),
            web.post("/api/nodes/{node}/drain", self.start_drain),
            web.delete("/api/nodes/{node}/drain", self.undrain),
        ]

    async def start_drain(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        status = await self.drain.start(node_name(request))
        return web.json_response({"success": True, "drain": status.to_json()}, status=202)

    async def undrain(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        node_id = await self.drain.undrain(node_name(request))
        return web.json_response({"success": True, "node": node_id, "drained": False})

    async def nodes(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        runtime = self.pools.runtime
        views: list[dict[str, Any]] = []
        if isinstance(runtime, SwarmRuntime):
            nodes, pools_on = await runtime.node_census()
            counts = {node_id: len(pools) for node_id, pools in pools_on.items()}
            for load in loads(nodes, counts, runtime.pool_memory):
                node, pools = load.node, sorted(pools_on.get(load.node.id, []))
                views.append({
                    "id": node.id, "hostname": node.hostname, "state": node.state,
                    "availability": node.availability, "address": node.address,
                    "labels": dict(node.labels), "takesPools": allowed(node, runtime.rules),
                    "pools": pools, "bots": sum(self._bots(p) for p in pools),
                    "memoryBytes": node.memory_bytes, "freeMemoryBytes": load.free_memory,
                    "drained": node.drained, "drain": self._drain_of(node.id),
                })  # fmt: skip
        return web.json_response({"success": True, "runtime": runtime.name, "nodes": views})

    def _drain_of(self, node_id: str) -> dict[str, Any] | None:
        status = self.drain.drains.get(node_id)
        return status.to_json() if status is not None else None

    def _bots(self, pool_id: str) -> int:
        if pool_id not in self.pools.registry.pools:
            return 0  # a service the store does not know (see unknownPools)
        return len(self.pools.registry.bots_in(pool_id))
