"""Which node each swarm pool is pinned to, the swarm's nodes (ready or lost), and the
drain marks placement reads. Placement itself is pure: swarm_nodes.py."""

from __future__ import annotations

from typing import Any

import docker.errors
import structlog
from docker.utils import parse_bytes

from controller.errors import NotFound
from controller.runtimes.spec import LABEL_POOL, DockerOptions
from controller.runtimes.swarm_nodes import DRAIN_LABEL, Node
from controller.runtimes.swarm_tasks import LABEL_NODE, lost_nodes

log = structlog.get_logger("runtime.swarm")


class PoolNodes:
    """SwarmRuntime's part for nodes (a mixin: the runtime gives the rest)."""

    # From SwarmRuntime: client, options, _nodes (pool -> node id), _run.
    client: Any
    options: DockerOptions
    _nodes: dict[str, str]

    def pinned_node(self, pool_id: str) -> str | None:
        """The id of the node the pool is pinned to (None: not known yet)."""
        return self._nodes.get(pool_id)

    async def node_of(self, pool_id: str) -> str | None:
        return self.pinned_node(pool_id)

    @property
    def pool_memory(self) -> int:
        """What placement counts for each pool on a node (POOL_MEMORY_LIMIT; 0: none)."""
        return parse_bytes(self.options.memory_limit) if self.options.memory_limit else 0

    async def node_census(self) -> tuple[list[Node], dict[str, list[str]]]:
        """The swarm's nodes, and the pools pinned to each (node id -> pool ids)."""

        def census() -> tuple[list[Node], dict[str, list[str]]]:
            nodes = [Node.from_attrs(node.attrs) for node in self.client.nodes.list()]
            return nodes, self._pools_by_node()

        return await self._run(census)

    async def mark_drained(self, node_id: str, drained: bool = True) -> None:
        """Label the node (DRAIN_LABEL) so placement no longer picks it, or unlabel it;
        NotFound if the swarm has no such node. Its tasks keep running."""

        def mark() -> None:
            try:
                node = self.client.nodes.get(node_id)
            except docker.errors.NotFound:
                raise NotFound(f"the swarm has no node {node_id}") from None
            spec = dict(node.attrs.get("Spec", {}))
            labels = dict(spec.get("Labels") or {})
            if drained:
                labels[DRAIN_LABEL] = "true"
            else:
                labels.pop(DRAIN_LABEL, None)
            node.update({**spec, "Labels": labels})

        await self._run(mark)
        log.info("swarm_node_marked", node=node_id, drained=drained)

    def _pools_by_node(self) -> dict[str, list[str]]:
        pools: dict[str, list[str]] = {}
        for service in self.client.services.list(filters={"label": LABEL_POOL}):
            labels = service.attrs.get("Spec", {}).get("Labels") or {}
            if labels.get(LABEL_NODE):
                pools.setdefault(labels[LABEL_NODE], []).append(labels[LABEL_POOL])
                self._nodes[labels[LABEL_POOL]] = labels[LABEL_NODE]
        return pools

    def _lost_nodes(self) -> frozenset[str]:
        return self._node_ids()[0]

    def _node_ids(self) -> tuple[frozenset[str], frozenset[str]]:
        """The ids of the swarm's nodes that are not ready, and of all its nodes."""
        nodes = [Node.from_attrs(node.attrs) for node in self.client.nodes.list()]
        return lost_nodes(nodes), frozenset(node.id for node in nodes)

    def _node(self, node_id: str) -> Node | None:
        try:
            return Node.from_attrs(self.client.nodes.get(node_id).attrs)
        except docker.errors.NotFound:
            return None
