"""Which swarm node a new pool goes to: allowed by labels, with room, most free memory."""

from __future__ import annotations

import pytest

from controller.runtimes.swarm_nodes import Node, allowed, loads, parse_rules, pick_node

GIB = 1 << 30


def node(
    node_id: str,
    memory: int = 8 * GIB,
    state: str = "ready",
    availability: str = "active",
    **labels: str,
) -> Node:
    return Node(node_id, f"host-{node_id}", state, availability, memory, "10.0.0.1", labels)


def test_rules_parse_must_have_and_must_not_have() -> None:
    rules = parse_rules(" ftpool=yes , gpu, !maintenance,!zone=eu ,")
    assert [(r.key, r.value, r.present) for r in rules] == [
        ("ftpool", "yes", True),
        ("gpu", None, True),
        ("maintenance", None, False),
        ("zone", "eu", False),
    ]
    assert parse_rules("") == ()


@pytest.mark.parametrize("raw", ["!", "=yes", "a b=c", "!=x"])
def test_malformed_rules_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="malformed node label rule"):
        parse_rules(raw)


def test_labels_include_and_exclude_nodes() -> None:
    rules = parse_rules("ftpool=yes,!maintenance")
    assert allowed(node("a", ftpool="yes"), rules)
    assert not allowed(node("b", ftpool="no"), rules)
    assert not allowed(node("c"), rules)
    assert not allowed(node("d", ftpool="yes", maintenance="1"), rules)


def test_only_ready_active_nodes_are_allowed() -> None:
    assert not allowed(node("a", state="down"), ())
    assert not allowed(node("b", availability="drain"), ())
    assert not allowed(node("c", availability="pause"), ())


def test_the_node_with_most_free_memory_wins() -> None:
    nodes = [node("a", 8 * GIB), node("b", 16 * GIB)]
    # b: 16 - 3 x 4 = 4 GiB free; a: 8 - 0 = 8 GiB free.
    assert pick_node(nodes, {"b": 3}, 4 * GIB, ()) == nodes[0]
    assert pick_node(nodes, {}, 4 * GIB, ()) == nodes[1]


def test_a_full_node_takes_no_pool() -> None:
    nodes = [node("a", 8 * GIB), node("b", 8 * GIB, ftpool="no")]
    assert pick_node(nodes, {"a": 2}, 4 * GIB, parse_rules("!ftpool=no")) is None
    assert [load.room for load in loads(nodes, {"a": 1}, 4 * GIB)] == [1, 2]


def test_without_a_pool_memory_limit_the_fewest_pools_win_then_the_id() -> None:
    nodes = [node("b"), node("a"), node("c")]
    assert pick_node(nodes, {"a": 2, "b": 1}, 0, ()).id == "c"
    assert pick_node(nodes, {}, 0, ()).id == "a"


def test_a_node_from_the_docker_api() -> None:
    attrs = {
        "ID": "n1",
        "Spec": {"Availability": "active", "Labels": {"ftpool": "yes"}, "Role": "manager"},
        "Description": {"Hostname": "box", "Resources": {"MemoryBytes": 2 * GIB}},
        "Status": {"State": "ready", "Addr": "192.168.1.5"},
    }
    assert Node.from_attrs(attrs) == Node(
        "n1", "box", "ready", "active", 2 * GIB, "192.168.1.5", {"ftpool": "yes"}
    )
    bare = Node.from_attrs({"ID": "n2"})
    assert (bare.state, bare.availability, bare.labels, bare.usable) == (
        "unknown",
        "active",
        {},
        False,
    )


def test_a_drained_node_takes_no_pool() -> None:
    drained = node("a", 16 * GIB, **{"ftpool.drain": "true"})
    assert drained.drained and not allowed(drained, ())
    assert pick_node([drained, node("b")], {}, GIB, ()).id == "b"
    assert pick_node([drained], {}, GIB, ()) is None
