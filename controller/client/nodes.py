"""`ftpool nodes ls|drain|undrain`: the swarm's nodes with their pools and bots; draining
one, or taking its drain label off (admin)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from controller.client import output as fmt
from controller.client.command import Failed, Session, client_command
from controller.client.http import segment

COLUMNS = ("ID", "HOSTNAME", "STATE", "AVAILABILITY", "ADDRESS", "TAKES POOLS", "POOLS",
           "BOTS", "MEMORY", "FREE", "DRAIN")  # fmt: skip
POLL_SECONDS = 2.0


def node_row(node: dict[str, Any]) -> list[Any]:
    drain = node.get("drain") or {}
    return [
        node["id"][:12], node.get("hostname"), node.get("state"), node.get("availability"),
        node.get("address"), node.get("takesPools"), len(node.get("pools") or []),
        node.get("bots"), fmt.size(node.get("memoryBytes")),
        fmt.size(node.get("freeMemoryBytes")), drain.get("state"),
    ]  # fmt: skip


def drain_of(nodes: list[dict[str, Any]], node_id: str) -> dict[str, Any] | None:
    """The drain of node `node_id` as GET /api/nodes shows it (None: not there)."""
    node = next((n for n in nodes if n["id"] == node_id), None)
    return (node or {}).get("drain")


@click.group()
def nodes() -> None:
    """The swarm's nodes (POOL_RUNTIME=swarm; admin)."""


@nodes.command("ls")
@client_command
def ls(session: Session) -> None:
    """List the nodes with their pools, bots and memory."""
    data = session.api.get("/api/nodes")
    if session.out.as_json:
        session.out.json(data)
        return
    empty = f"no nodes (the {data.get('runtime')} runtime runs on one host)"
    session.out.table(COLUMNS, [node_row(n) for n in data["nodes"]], empty=empty)


@nodes.command("drain")
@click.argument("node", metavar="NODE")
@click.option("--no-wait", is_flag=True, help="start the drain and return")
@click.option("--timeout", default=3600.0, show_default=True, help="seconds to wait")
@client_command
def drain(session: Session, node: str, no_wait: bool, timeout: float) -> int | None:
    """Move every pool off NODE (its id or hostname), one pool at a time, and mark it so
    placement no longer picks it; waits until it is done and prints what moved."""
    started = session.api.post(f"/api/nodes/{segment(node)}/drain")["drain"]
    if no_wait:
        if session.out.as_json:
            session.out.json(started)
        else:
            session.out.line(f"draining {started['node']}; follow it with `ftpool nodes ls`")
        return None
    status = follow(lambda: session.api.get("/api/nodes")["nodes"], started["node"], timeout)
    if session.out.as_json:
        session.out.json(status)
    else:
        for moved in status["moved"]:
            session.out.line(f"moved {moved['pool']} ({moved['bots']} bots) to {moved['to']} "
                             f"in {moved['seconds']} s")  # fmt: skip
        for pool in status["removed"]:
            session.out.line(f"removed {pool} (no bots)")
        left = ", ".join(status["left"]) or "none"
        error = f"; {status['error']}" if status["error"] else ""
        session.out.line(f"{status['state']}; left on the node: {left}{error}")
    return 0 if status["state"] == "done" else 1


@nodes.command("undrain")
@click.argument("node", metavar="NODE")
@client_command
def undrain(session: Session, node: str) -> None:
    """Take the drain label off NODE (its id or hostname) so placement picks it again:
    after a drain that failed, or one a controller restart forgot (refused while a drain
    of it runs)."""
    done = session.api.delete(f"/api/nodes/{segment(node)}/drain")
    if session.out.as_json:
        session.out.json(done)
    else:
        session.out.line(f"node {done['node']} takes pools again")


def follow(
    fetch: Callable[[], list[dict[str, Any]]], node_id: str, timeout: float,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:  # fmt: skip
    """Poll the nodes until the drain of `node_id` ended; Failed after `timeout` seconds."""
    deadline = clock() + timeout
    while True:
        status = drain_of(fetch(), node_id)
        if status is not None and status.get("state") != "running":
            return status
        if clock() > deadline:
            raise Failed(f"the drain of {node_id} did not end within {timeout:g} s")
        sleep(POLL_SECONDS)
