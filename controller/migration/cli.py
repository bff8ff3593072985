"""`ftpool migrate` (also `python -m controller.migrate`): legacy containers into pools.

A client of the running controller's /api/pool/migration endpoints: the controller does
the work on its own records, so the tool never holds a copy of the state. Bots migrate
one at a time, with a progress line each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from common.settings import ClientSettings, ControllerSettings, SettingsError
from controller.migration.log import MIGRATION_STEPS, RESUME_STEPS

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
# One bot may take: a legacy stop (60 s), holds (2 x 90 s), a pool start, a verification
# (at most 600 s) and a rollback of as much again.
REQUEST_TIMEOUT = 2400


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ToolParser(
        prog="ftpool migrate",
        description="Move bots from legacy containers (one per bot) into pools, and back. "
        "Talks to the running controller; see docs/operations.md, Legacy mode and migration.",
        execute="migrate the selected bots",
        status="show the migration log",
    )
    p.action.add_argument("--rollback", metavar="ID", help="move bot ID back to a legacy container")
    p.repeatable("bot", "bot")
    p.repeatable("user", "user's bots")
    p.add_argument("--verbose", "-v", action="store_true", help="show every step and its time")
    p.add_argument("--verify-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long a moved bot has to answer its API (default 60)")  # fmt: skip
    return p.parse(argv)


class ToolParser(argparse.ArgumentParser):
    """The command line both client tools (`ftpool migrate`, `ftpool upgrade`) share:
    exactly one action of --dry-run, --execute and --status (and any the tool adds to
    `action`), then the tool's own options, then --json and --url (added by parse)."""

    def __init__(self, prog: str, description: str, execute: str, status: str) -> None:
        super().__init__(prog=prog, description=description)
        self.action = self.add_mutually_exclusive_group(required=True)
        self.action.add_argument("--dry-run", action="store_true",
                                 help="print the plan; change nothing")  # fmt: skip
        self.action.add_argument("--execute", action="store_true", help=execute)
        self.action.add_argument("--status", action="store_true", help=status)

    def repeatable(self, flag: str, what: str) -> None:
        """--flag ID, as often as wanted: only this `what`."""
        self.add_argument(f"--{flag}", action="append", default=[], metavar="ID",
                          help=f"only this {what} (repeatable)")  # fmt: skip

    def parse(self, argv: list[str] | None) -> argparse.Namespace:
        self.add_argument("--json", action="store_true", help="print JSON instead of text")
        self.add_argument(
            "--url", help="the controller (default: FTPOOL_URL, or from its settings)"
        )
        return self.parse_args(argv)


def connection(url: str | None) -> tuple[str, str]:
    """The controller's URL and the admin token, from the controller's own settings."""
    settings = ControllerSettings.from_env()
    host = settings.controller_host
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    base = url or ClientSettings.from_env().url or f"http://{host}:{settings.controller_port}"
    token = settings.admin_token
    if not token:
        token_file = Path(settings.bot_base_dir) / "admin-token"
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise SettingsError(f"no ADMIN_TOKEN, and {token_file}: {exc.strerror}") from None
    return base.rstrip("/"), token


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, base: str, token: str, timeout: float) -> AsyncIterator[Client]:
        """A client of the controller at `base` with the admin token; each request may take
        `timeout` seconds."""
        headers = {"Authorization": f"Bearer {token}"}
        limit = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=limit) as session:
            yield cls(session, base)

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async with self.session.request(method, self.base + path, **kwargs) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise RuntimeError(f"{response.status}: {body.get('error', body)}")
            return body


def _seconds(run: dict[str, Any]) -> float:
    return (run["finished_at"] or time.time()) - run["started_at"]


def _print_steps(run: dict[str, Any]) -> None:
    for step in run["steps"]:
        mark = {True: "ok", False: "FAILED", None: "..."}[step["ok"]]
        detail = f"  {step['detail']}" if step["detail"] else ""
        print(f"      {step['name']:<9} {mark:<6} {step['ms']:>9.1f} ms{detail}")


def _run_line(run: dict[str, Any]) -> str:
    where = f" -> {run['to_pool']}:{run['port']}" if run["to_pool"] else ""
    reason = f" ({run['reason']})" if run["reason"] else ""
    return f"{run['outcome']}{where} in {_seconds(run):.1f} s{reason}"


async def dry_run(client: Client, args: argparse.Namespace, query: list[tuple[str, str]]) -> int:
    plan = await client.call("GET", "/api/pool/migration/plan", params=query)
    if args.json:
        print(json.dumps(plan, indent=2))
        return 0
    print(f"{len(plan['bots'])} bot(s) to migrate (dry run: nothing is changed)")
    for b in plan["bots"]:
        new = " (new pool)" if b["newPool"] else ""
        print(f"  {b['instanceId']:<30} user {b['userId']:<16} {b['source']:<16} "
              f"{b['container']} [{b['state']}] -> {b['toPool']}:{b['port']}{new}")  # fmt: skip
        if args.verbose:
            steps = ", ".join(MIGRATION_STEPS)
            if b["source"] == "resume":
                steps = f"{', '.join(RESUME_STEPS)} (resumes an interrupted run)"
            print(f"      steps: {steps}")
    for s in plan["skipped"]:
        print(f"  {s['instanceId']:<30} skipped: {s['reason']}")
    return 0


async def execute(client: Client, args: argparse.Namespace, query: list[tuple[str, str]]) -> int:
    plan = await client.call("GET", "/api/pool/migration/plan", params=query)
    bots, failed, started = plan["bots"], 0, time.monotonic()
    results = []
    say = (lambda *_a, **_k: None) if args.json else print  # --json: one document at the end
    for s in plan["skipped"]:
        say(f"  {s['instanceId']}: skipped, {s['reason']}")
    for n, b in enumerate(bots, 1):
        elapsed = time.monotonic() - started
        eta = f", about {elapsed / (n - 1) * (len(bots) - n + 1):.0f} s left" if n > 1 else ""
        say(f"[{n}/{len(bots)}{eta}] {b['instanceId']} ({b['userId']}) ...", flush=True)
        body = {"verifyTimeout": args.verify_timeout}
        try:
            result = await client.call("POST", f"/api/pool/migration/bots/{b['instanceId']}",
                                       json=body)  # fmt: skip
        except RuntimeError as exc:  # refused for this bot (409, say): go on with the rest
            failed += 1
            say(f"    refused: {exc}")
            continue
        run = result["run"]
        results.append(run)
        failed += not result["success"]
        say(f"    {_run_line(run)}")
        if not args.json and (args.verbose or not result["success"]):
            _print_steps(run)
    if args.json:
        print(json.dumps({"runs": results, "skipped": plan["skipped"]}, indent=2))
    say(f"{len(bots) - failed} of {len(bots)} migrated in {time.monotonic() - started:.1f} s")
    return EXIT_FAILED if failed else 0


async def rollback(client: Client, args: argparse.Namespace) -> int:
    if not args.json:
        print(f"rolling back {args.rollback} to a legacy container ...", flush=True)
    result = await client.call("POST", f"/api/pool/migration/bots/{args.rollback}/rollback",
                               json={"verifyTimeout": args.verify_timeout})  # fmt: skip
    run = result["run"]
    if args.json:
        print(json.dumps(run, indent=2))
    else:
        print(f"    {_run_line(run)}")
        if args.verbose or not result["success"]:
            _print_steps(run)
    return 0 if result["success"] else EXIT_FAILED


async def status(client: Client, args: argparse.Namespace) -> int:
    runs = (await client.call("GET", "/api/pool/migration/log"))["runs"]
    runs = [r for r in runs if (not args.bot or r["bot"] in args.bot)
            and (not args.user or r["user"] in args.user)]  # fmt: skip
    if args.json:
        print(json.dumps({"runs": runs}, indent=2))
        return 0
    latest = {r["bot"]: r for r in runs}
    counts: dict[str, int] = {}
    for run in latest.values():
        counts[run["outcome"]] = counts.get(run["outcome"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no runs"
    print(f"{len(latest)} bot(s) in the migration log: {summary}")
    for bot, run in sorted(latest.items()):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started_at"]))
        print(f"  {bot:<30} {run['kind']:<8} {when}  {_run_line(run)}")
        if args.verbose:
            _print_steps(run)
    return 0


async def run(args: argparse.Namespace, base: str, token: str) -> int:
    query = [("bot", b) for b in args.bot] + [("user", u) for u in args.user]
    async with Client.connect(base, token, REQUEST_TIMEOUT) as client:
        if args.dry_run:
            return await dry_run(client, args, query)
        if args.execute:
            return await execute(client, args, query)
        if args.rollback:
            return await rollback(client, args)
        return await status(client, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool("ftpool migrate", args.url, lambda base, token: run(args, base, token))


def run_tool(
    prog: str, url: str | None, work: Callable[[str, str], Coroutine[Any, Any, int]]
) -> int:
    """Run a client tool's work against the controller (its URL and the admin token);
    its exit status, with what went wrong said on stderr."""
    try:
        base, token = connection(url)
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(work(base, token))
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"{prog}: lost the controller at {base}: {exc!r}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RuntimeError as exc:
        print(f"{prog}: the controller refused: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
