"""Swarm nodes as ftpool sees them, and which node a new pool goes to. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# A node ftpool drains (POST /api/nodes/{node}/drain): placement no longer picks it. Not
# Swarm's own `drain` availability, which would stop the node's tasks at once (their bots
# with them) instead of moving the bots one pool at a time.
DRAIN_LABEL = "ftpool.drain"


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    hostname: str
    state: str  # Swarm's: ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    memory_bytes: int
    address: str  # the node's address in the swarm (Status.Addr)
    labels: Mapping[str, str]

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Node:
        """From the Docker API's node object (GET /nodes)."""
        spec, status = attrs.get("Spec", {}), attrs.get("Status", {})
        description = attrs.get("Description", {})
        return cls(
            id=attrs["ID"],
            hostname=description.get("Hostname", ""),
            state=status.get("State", "unknown"),
            availability=spec.get("Availability", "active"),
            memory_bytes=int(description.get("Resources", {}).get("MemoryBytes", 0)),
            address=status.get("Addr", ""),
            labels=dict(spec.get("Labels") or {}),
        )

    @property
    def usable(self) -> bool:
        return self.state == "ready" and self.availability == "active" and not self.drained

    @property
    def drained(self) -> bool:
        """Marked by an ftpool drain: it takes no new pool."""
        return self.labels.get(DRAIN_LABEL) == "true"


@dataclass(frozen=True, slots=True)
class LabelRule:
    key: str
    value: str | None  # None: any value
    present: bool  # True: the node must match; False: it must not

    def matches(self, labels: Mapping[str, str]) -> bool:
        found = self.key in labels and (self.value is None or labels[self.key] == self.value)
        return found == self.present


def parse_rules(raw: str) -> tuple[LabelRule, ...]:
    """SWARM_NODE_LABELS: "ftpool=yes,!maintenance" -> two rules; ValueError if malformed."""
    rules = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        present = not item.startswith("!")
        key, sep, value = item.lstrip("!").partition("=")
        key = key.strip()
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"malformed node label rule {item!r}")
        rules.append(LabelRule(key, value.strip() if sep else None, present))
    return tuple(rules)


def allowed(node: Node, rules: Iterable[LabelRule]) -> bool:
    return node.usable and all(rule.matches(node.labels) for rule in rules)


@dataclass(frozen=True, slots=True)
class NodeLoad:
    node: Node
    pools: int
    free_memory: int  # the node's memory less what its pools may take (their limits)
    room: int  # pools it can still take (by memory when pools have a limit)


def loads(nodes: Iterable[Node], pools_on: Mapping[str, int], pool_memory: int) -> list[NodeLoad]:
    """Each node's pools and free memory; pool_memory is POOL_MEMORY_LIMIT (0: none, when
    every pool counts as nothing and a node's room is unbounded)."""
    result = []
    for node in nodes:
        pools = pools_on.get(node.id, 0)
        free = max(0, node.memory_bytes - pools * pool_memory)
        room = free // pool_memory if pool_memory else 1 << 30
        result.append(NodeLoad(node, pools, free, room))
    return result


def pick_node(
    nodes: Iterable[Node], pools_on: Mapping[str, int], pool_memory: int, rules: Iterable[LabelRule]
) -> Node | None:
    """The allowed node with room for one more pool and the most free memory (then the
    fewest pools, then the lowest id, so equal nodes are picked the same way every time);
    None when no node can take it."""
    rules = tuple(rules)
    fits = [
        load
        for load in loads(nodes, pools_on, pool_memory)
        if allowed(load.node, rules) and load.room > 0
    ]
    if not fits:
        return None
    best = min(fits, key=lambda load: (-load.free_memory, load.pools, load.node.id))
    return best.node
