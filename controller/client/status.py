"""`ftpool status`: the controller, and the fleet at a glance (yours, for a user)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from controller.client import output as fmt
from controller.client.command import Session, client_command
from controller.client.http import ApiError


def summary(
    health: dict[str, Any], bots: list[dict[str, Any]], pools: dict[str, Any] | None
) -> dict[str, Any]:
    """What `status` shows, as one JSON-able dict."""
    counts = Counter(b.get("status") for b in bots)
    result: dict[str, Any] = {
        "controller": health,
        "bots": {"total": len(bots), "byStatus": dict(sorted(counts.items()))},
    }
    if pools is not None:
        used = [p for p in (pools.get("pools") or []) if p.get("memory")]
        result["fleet"] = {
            "health": pools.get("health"),
            "runtime": pools.get("runtime"),
            "pools": pools.get("totalPools"),
            "memoryBytes": sum((p["memory"].get("usedBytes") or 0) for p in used),
            "suspectPools": [
                p["id"] for p in pools.get("pools") or [] if p.get("status") != "running"
            ],
        }
    return result


def status_fields(url: str, s: dict[str, Any]) -> list[tuple[str, Any]]:
    health = s["controller"]
    by_status = ", ".join(f"{n} {word}" for word, n in s["bots"]["byStatus"].items())
    pairs = [
        ("controller", f"{url} ({health.get('status')}, version {health.get('version')})"),
        ("bots", f"{s['bots']['total']}" + (f" ({by_status})" if by_status else "")),
    ]
    fleet = s.get("fleet")
    if fleet is not None:
        h = fleet.get("health") or {}
        hp, hb = h.get("pools") or {}, h.get("bots") or {}
        pairs += [
            ("health", h.get("status")),
            ("pools", f"{hp.get('total', 0)} ({hp.get('healthy', 0)} healthy, runtime "
                      f"{fleet.get('runtime')}, {health.get('agentsConnected')} agents connected)"),
            ("bots health", f"{hb.get('healthy', 0)} healthy, {hb.get('unhealthy', 0)} unhealthy, "
                            f"{hb.get('stopped', 0)} stopped"),
            ("pool memory", fmt.size(fleet.get("memoryBytes"))),
        ]  # fmt: skip
        if fleet.get("suspectPools"):
            pairs.append(("suspect pools", ", ".join(fleet["suspectPools"])))
    return pairs


@click.command()
@client_command
def status(session: Session) -> None:
    """The controller's health and the bots by status; for the admin, pools and memory too."""
    health = session.api.get("/healthz")
    bots = session.api.get("/api/bots")["bots"]
    try:
        pools = session.api.get("/api/pool/status")
    except ApiError as exc:
        if exc.status != 403:  # a user's token: the fleet is not theirs to see
            raise
        pools = None
    result = summary(health, bots, pools)
    if session.out.as_json:
        session.out.json(result)
    else:
        session.out.fields(status_fields(session.api.url, result))
