"""/api/nodes: the hosts pools run on (POOL_RUNTIME=swarm), with their pools, bots, memory
and state; an empty list on a single-host runtime."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controller.api.middleware import principal
from controller.api.spec import ADMIN, BOOL, ID, INT, STR, TRUE, answer, obj, op
from controller.pools.manager import PoolManager
from controller.runtimes.swarm import SwarmRuntime
from controller.runtimes.swarm_nodes import allowed, loads

NODE = obj({
    "id": STR, "hostname": STR, "state": STR, "availability": STR, "address": STR,
    "labels": {"type": "object", "additionalProperties": STR},
    "takesPools": BOOL, "pools": {"type": "array", "items": ID}, "bots": INT,
    "memoryBytes": INT, "freeMemoryBytes": INT,
})  # fmt: skip


class APINodes:
    operations = {
        ("GET", "/api/nodes"): op(
            "the swarm's nodes with their pools, bots, memory and state (swarm runtime)",
            security=ADMIN, tags=("pools",),
            ok={200: answer(obj({"success": TRUE, "runtime": STR,
                                 "nodes": {"type": "array", "items": NODE}}))},
        ),
    }  # fmt: skip

    def __init__(self, pools: PoolManager) -> None:
        self.pools = pools

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/nodes", self.nodes)]

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
                })  # fmt: skip
        return web.json_response({"success": True, "runtime": runtime.name, "nodes": views})

    def _bots(self, pool_id: str) -> int:
        if pool_id not in self.pools.registry.pools:
            return 0  # a service the store does not know (see unknownPools)
        return len(self.pools.registry.bots_in(pool_id))
