"""`ftpool upgrade`: move pools to a new pool image, pool by pool (docs/operations.md).

A client of the running controller's /api/pool/upgrade: --dry-run prints the plan,
--execute starts a run and follows it pool by pool until it ends (the run goes on in the
controller if this tool goes away; --status picks it up again), --status shows the
current or last run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from controller.migration.cli import EXIT_FAILED, Client, ToolParser, run_tool
from controller.upgrade.plan import (
    DEFAULT_METHOD,
    IN_FLIGHT,
    METHODS,
    MOVE_IN_FLIGHT,
    MOVING,
    PENDING,
)

POLL_SECONDS = 2.0
REQUEST_TIMEOUT = 120  # seconds
UNDER_WAY = IN_FLIGHT | MOVE_IN_FLIGHT | {PENDING}  # either method's steps before the end


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ToolParser(
        prog="ftpool upgrade",
        description="Move pools to a new pool image, one pool at a time (recreated in place, "
        "or their bots moved into a fresh pool), verifying every bot and rolling a failed "
        "pool back. Talks to the running controller.",
        execute="upgrade the selected pools",
        status="show the current or last run",
    )
    p.add_argument("--image", default="", help="the new image (default: POOL_IMAGE)")
    for flag, what in (("pool", "pool"), ("user", "user's bots' pools"), ("bot", "bot's pool")):
        p.repeatable(flag, what)
    p.add_argument("--canary", type=int, default=0, metavar="N",
                   help="upgrade N pools first and soak them before the rest")  # fmt: skip
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                   help="how long the canary pools must stay healthy")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=1, help="pools at a time (default 1)")
    p.add_argument("--pause", type=float, default=0.0, metavar="SECONDS",
                   help="wait between pools")  # fmt: skip
    p.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                   help="for a pool's bots to answer on the new image (default 180)")  # fmt: skip
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="recreate each pool's container in place, or move its bots into a "
                   f"fresh pool on the new image (default {DEFAULT_METHOD})")  # fmt: skip
    return p.parse(argv)


def body(args: argparse.Namespace, dry_run: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dryRun": dry_run, "pools": args.pool, "users": args.user,
                           "bots": args.bot, "canary": args.canary, "soak": args.soak,
                           "concurrency": args.concurrency, "pause": args.pause,
                           "timeout": args.timeout, "method": args.method}  # fmt: skip
    if args.image:
        out["image"] = args.image
    return out


def moved(p: dict[str, Any]) -> int:
    """How many of a `move` pool's bots have moved into its fresh pool so far."""
    return len(p.get("bot_downtime_s") or {})


def pool_line(p: dict[str, Any]) -> str:
    canary = " (canary)" if p["canary"] else ""
    down = f", down {p['downtime_s']:.1f} s" if p["downtime_s"] is not None else ""
    reason = f": {p['reason']}" if p["reason"] else ""
    if p.get("to_pool"):
        canary += f" -> {p['to_pool']}"
    bots = f"{p['bots']} bot(s)"
    if p["step"] == MOVING:
        bots = f"{moved(p)}/{p['bots']} bot(s) moved"
    return f"  {p['pool']:<12} {p['step']:<12} {bots}{canary}{down}{reason}"


def pools_done(run: dict[str, Any]) -> int:
    """The run's pools that have ended (upgraded, rolled back, failed, not started)."""
    return sum(p["step"] not in UNDER_WAY for p in run["pools"])


def progress(p: dict[str, Any]) -> tuple[str, int]:
    """What a pool's progress line shows: its step, and in a move the bots moved so far."""
    return p["step"], moved(p)


def print_run(run: dict[str, Any]) -> None:
    end = run["finished_at"] or time.time()
    print(f"{run['id']}: {run['outcome']} -> {run['to_ref']} ({end - run['started_at']:.0f} s)"
          + (f"\n  {run['reason']}" if run["reason"] else ""))  # fmt: skip
    for p in run["pools"]:
        print(pool_line(p))


async def dry_run(client: Client, args: argparse.Namespace) -> int:
    plan = await client.call("POST", "/api/pool/upgrade", json=body(args, True))
    if args.json:
        print(json.dumps(plan, indent=2))
        return 0
    print(f"{len(plan['pools'])} pool(s) to move to {plan['image']['ref']} "
          f"({plan['image']['id'][:19]}); dry run: nothing is changed")  # fmt: skip
    for p in plan["pools"]:
        old = p["from"]["ref"] if p["from"] else "?"
        print(f"  {p['poolId']:<12} {p['bots']} bot(s)  {old} -> {plan['image']['ref']}"
              + (" (canary)" if p["canary"] else ""))  # fmt: skip
    for s in plan["skipped"]:
        print(f"  {s['poolId']:<12} skipped: {s['reason']}")
    return 0


async def execute(client: Client, args: argparse.Namespace) -> int:
    run = (await client.call("POST", "/api/pool/upgrade", json=body(args, False)))["run"]
    if not args.json:
        print(f"{run['id']}: {len(run['pools'])} pool(s) -> {run['to_ref']}", flush=True)
    seen: dict[str, tuple[str, int]] = {}
    while True:
        status = await client.call("GET", "/api/pool/upgrade")
        run = next((r for r in status["runs"] if r["id"] == run["id"]), run)
        done = pools_done(run)
        for p in run["pools"]:
            if not args.json and seen.get(p["pool"]) != progress(p):
                seen[p["pool"]] = progress(p)
                print(f"[{done}/{len(run['pools'])}]{pool_line(p)}", flush=True)
        if run["finished_at"] is not None:
            break
        await asyncio.sleep(POLL_SECONDS)
    if args.json:
        print(json.dumps(run, indent=2))
    else:
        print_run(run)
    return 0 if run["outcome"] == "upgraded" else EXIT_FAILED


async def status(client: Client, args: argparse.Namespace) -> int:
    status = await client.call("GET", "/api/pool/upgrade")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    image = status["poolImage"]
    print(f"POOL_IMAGE {image['ref']} ({image['id'][:19]})" if image else "POOL_IMAGE: none")
    print(f"{len(status['outdatedPools'])} pool(s) on another image: "
          f"{', '.join(status['outdatedPools']) or '-'}")  # fmt: skip
    run = status["current"] or (status["runs"][-1] if status["runs"] else None)
    if run is None:
        print("no upgrade runs")
    else:
        print_run(run)
    return 0


async def run(args: argparse.Namespace, base: str, token: str) -> int:
    async with Client.connect(base, token, REQUEST_TIMEOUT) as client:
        if args.dry_run:
            return await dry_run(client, args)
        if args.execute:
            return await execute(client, args)
        return await status(client, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool("ftpool upgrade", args.url, lambda base, token: run(args, base, token))


if __name__ == "__main__":
    sys.exit(main())
