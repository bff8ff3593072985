"""`ftpool pools ls|show`: the pools, their bots, memory, CPU and agents (admin)."""

from __future__ import annotations

from typing import Any

import click

from controller.client import output as fmt
from controller.client.bots import COLUMNS as BOT_COLUMNS
from controller.client.bots import bot_row
from controller.client.command import Session, client_command
from controller.client.http import ApiError

COLUMNS = ("ID", "STATUS", "MODE", "BOTS", "UTIL", "MEMORY", "CPU", "AGENT", "HEARTBEAT",
           "LAUNCH", "DRAINING")  # fmt: skip


def memory(pool: dict[str, Any]) -> int | None:
    mem = pool.get("memory") or {}
    return mem.get("usedBytes") if mem.get("usedBytes") is not None else mem.get("runtimeBytes")


def pool_row(pool: dict[str, Any]) -> list[Any]:
    agent = pool.get("agent") or {}
    return [
        pool["id"], pool.get("status"), pool.get("mode"),
        f"{pool.get('botsCount', 0)}/{pool.get('capacity')}",
        f"{pool.get('utilizationPercent', 0)}%", fmt.size(memory(pool)),
        fmt.percent(pool.get("cpuPercent")),
        "connected" if agent.get("connected") else "away",
        fmt.duration(agent.get("lastHeartbeatAgoSeconds")) + " ago"
        if agent.get("lastHeartbeatAgoSeconds") is not None else None,
        (pool.get("launch") or {}).get("mode"), pool.get("draining"),
    ]  # fmt: skip


def pool_fields(pool: dict[str, Any]) -> list[tuple[str, Any]]:
    agent = pool.get("agent") or {}
    mem = pool.get("memory") or {}
    ports = pool.get("ports") or {}
    launch = pool.get("launch") or {}
    event = pool.get("lastRuntimeEvent") or {}
    return [
        ("id", pool["id"]), ("container", pool.get("containerName")),
        ("status", pool.get("status")), ("mode", pool.get("mode")), ("owner", pool.get("owner")),
        ("bots", f"{pool.get('botsCount', 0)} of {pool.get('capacity')} "
                 f"({pool.get('utilizationPercent', 0)}%)"),
        ("ports", f"{ports.get('start')}-{ports.get('end')}"),
        ("draining", pool.get("draining")),
        ("memory", f"{fmt.size(mem.get('usedBytes'))} of {fmt.size(mem.get('limitBytes'))} "
                   f"(runtime: {fmt.size(mem.get('runtimeBytes'))})"),
        ("cpu", fmt.percent(pool.get("cpuPercent"))),
        ("launch", f"{launch.get('mode')} (override {fmt.text(launch.get('override'))}, "
                   f"preloader {fmt.text(launch.get('preloader'))})"),
        ("agent", f"{'connected' if agent.get('connected') else 'away'}, version "
                  f"{fmt.text(agent.get('version'))}"),
        ("last heartbeat", fmt.duration(agent.get("lastHeartbeatAgoSeconds"))),
        ("generation", f"{agent.get('appliedGeneration')} of {agent.get('generation')} applied"),
        ("runtime event", event.get("action")),
    ]  # fmt: skip


def pool_status(session: Session) -> dict[str, Any]:
    try:
        return session.api.get("/api/pool/status")
    except ApiError as exc:
        if exc.status == 403:
            raise ApiError(403, f"{exc.message}: pools are for the admin token") from None
        raise


@click.group()
def pools() -> None:
    """The pools: bots, memory, CPU and agents (admin)."""


@pools.command("ls")
@client_command
def ls(session: Session) -> None:
    """List the pools."""
    data = pool_status(session)
    if session.out.as_json:
        session.out.json(data)
        return
    session.out.table(COLUMNS, [pool_row(p) for p in data["pools"]], empty="no pools")
    for name in data.get("unknownPools") or []:
        session.out.line(f"unknown to the store (left alone): {name}")


@pools.command("show")
@click.argument("pool_id", metavar="ID")
@client_command
def show(session: Session, pool_id: str) -> None:
    """One pool and its bots."""
    data = pool_status(session)
    pool = next((p for p in data["pools"] if p["id"] == pool_id), None)
    if pool is None:
        raise ApiError(404, f"no pool {pool_id}")
    members = [b for b in session.api.get("/api/bots")["bots"] if b.get("poolId") == pool_id]
    if session.out.as_json:
        session.out.json({"success": True, "pool": pool, "bots": members})
        return
    session.out.fields(pool_fields(pool))
    session.out.line()
    session.out.table(BOT_COLUMNS, [bot_row(b) for b in members], empty="no bots")
