"""`ftpool bots ...`: list, show, create, start, stop, restart, remove and read the log of bots."""

from __future__ import annotations

import codecs
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from controller.client import output as fmt
from controller.client.command import Session, client_command
from controller.client.http import ApiError, Unreachable, segment
from controller.client.logs import new_part
from controller.client.wait import PATIENCE_SECONDS, Patience, wait_until

COLUMNS = ("ID", "USER", "POOL", "PORT", "STRATEGY", "STATUS", "PID", "UPTIME", "MEMORY", "CPU",
           "PING", "RESTARTS")  # fmt: skip
LOG_BYTES = 16384


def ping(process: dict[str, Any]) -> str:
    p = process.get("ping") or {}
    if p.get("ok") is None:
        return "-"
    if not p["ok"]:
        return "fail"
    return "ok" if p.get("ms") is None else f"{p['ms']:.0f} ms"


def bot_row(bot: dict[str, Any]) -> list[Any]:
    process = bot.get("process") or {}
    restarts = bot.get("restarts") or {}
    return [
        bot["instanceId"], bot.get("userId"), bot.get("poolId"), bot.get("port"),
        bot.get("strategy"), bot.get("status"), process.get("pid"),
        fmt.duration(process.get("uptimeSeconds")), fmt.size(process.get("memoryBytes")),
        fmt.percent(process.get("cpuPercent")), ping(process), restarts.get("attempts", 0),
    ]  # fmt: skip


def bot_fields(bot: dict[str, Any]) -> list[tuple[str, Any]]:
    process = bot.get("process") or {}
    restarts = bot.get("restarts") or {}
    created = bot.get("createdAt")
    return [
        ("id", bot["instanceId"]), ("user", bot.get("userId")), ("pool", bot.get("poolId")),
        ("port", bot.get("port")), ("strategy", bot.get("strategy")),
        ("status", bot.get("status")), ("desired", bot.get("desired")),
        ("process", process.get("state")), ("pid", process.get("pid")),
        ("uptime", fmt.duration(process.get("uptimeSeconds"))),
        ("exit status", process.get("exitStatus")),
        ("memory", fmt.size(process.get("memoryBytes"))),
        ("cpu", fmt.percent(process.get("cpuPercent"))), ("ping", ping(process)),
        ("port ok", process.get("portOk")), ("report stale", process.get("stale")),
        ("restarts", f"{restarts.get('attempts', 0)} (cycles {restarts.get('cycles', 0)}"
                     f"{', failed' if restarts.get('failed') else ''})"),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
                    if created else None),
    ]  # fmt: skip


def bot_path(bot_id: str, action: str = "") -> str:
    return f"/api/bots/{segment(bot_id)}" + (f"/{action}" if action else "")


def fetch(session: Session, bot_id: str) -> dict[str, Any]:
    return session.api.get(bot_path(bot_id))


def read_config(config_file: str | None, config_json: str | None) -> dict[str, Any] | None:
    """The bot's FreqTrade settings from --config-file (`-`: stdin) or --config-json."""
    if config_file and config_json:
        raise click.UsageError("give --config-file or --config-json, not both")
    if config_file is None and config_json is None:
        return None
    source = "--config-json"
    if config_file is not None:
        source = "stdin" if config_file == "-" else config_file
        try:
            config_json = sys.stdin.read() if config_file == "-" else Path(config_file).read_text()
        except OSError as exc:
            raise click.UsageError(f"cannot read {config_file}: {exc.strerror}") from None
    try:
        config = json.loads(config_json or "")
    except ValueError as exc:
        raise click.UsageError(f"{source} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise click.UsageError(f"{source} must hold a JSON object")
    return config


WAIT = click.option("--wait", is_flag=True, help="return once the bot got there")
TIMEOUT = click.option("--timeout", type=click.FloatRange(0, 3600), default=60.0,
                       show_default=True, help="seconds --wait waits")  # fmt: skip


@click.group()
def bots() -> None:
    """List, create and drive bots (a user sees only their own)."""


@bots.command("ls")
@click.option("--user", "user_id", metavar="ID", help="only this user's bots")
@click.option("--status", metavar="WORD", help="only bots with this status (running, stopped, ...)")
@client_command
def ls(session: Session, user_id: str | None, status: str | None) -> None:
    """List bots: yours, or every bot for the admin."""
    data = session.api.get("/api/bots")
    chosen = [b for b in data["bots"] if (not user_id or b.get("userId") == user_id)
              and (not status or b.get("status") == status)]  # fmt: skip
    if session.out.as_json:
        session.out.json({**data, "bots": chosen})
        return
    session.out.table(COLUMNS, [bot_row(b) for b in chosen], empty="no bots")


@bots.command("show")
@click.argument("bot_id", metavar="ID")
@client_command
def show(session: Session, bot_id: str) -> None:
    """One bot: where it runs, its process, memory, CPU, ping and restarts."""
    bot = fetch(session, bot_id)
    if session.out.as_json:
        session.out.json(bot)
    else:
        session.out.fields(bot_fields(bot))


@bots.command("create")
@click.argument("bot_id", metavar="[ID]", required=False)
@click.option("--strategy", metavar="NAME", help="a strategy the controller has (default: its own)")
@click.option(
    "--config-file", metavar="FILE", help="FreqTrade settings as a JSON file (- for stdin)"
)
@click.option("--config-json", metavar="JSON", help="FreqTrade settings as JSON text")
@WAIT
@TIMEOUT
@client_command
def create(
    session: Session, bot_id: str | None, strategy: str | None, config_file: str | None,
    config_json: str | None, wait: bool, timeout: float,
) -> None:  # fmt: skip
    """Provision a bot (an id is generated without ID) and start it."""
    body: dict[str, Any] = {}
    if bot_id:
        body["instanceId"] = bot_id
    if strategy:
        body["strategy"] = strategy
    config = read_config(config_file, config_json)
    if config is not None:
        body["config"] = config
    made = session.api.post("/api/bots", body)
    if wait:
        made["status"] = wait_until(lambda: fetch(session, made["instanceId"]), "running",
                                    timeout)["status"]  # fmt: skip
    if session.out.as_json:
        session.out.json(made)
    else:
        session.out.line(f"created {made['instanceId']} in {made['poolId']} on port "
                         f"{made['port']}: {made['status']}")  # fmt: skip


def lifecycle(session: Session, bot_id: str, action: str, wait: bool, timeout: float) -> None:
    old_pid = None
    if wait and action == "restart":
        old_pid = (fetch(session, bot_id).get("process") or {}).get("pid")
    answer = session.api.post(bot_path(bot_id, action))
    if wait:
        target = "stopped" if action == "stop" else "running"
        view = wait_until(lambda: fetch(session, bot_id), target, timeout, old_pid=old_pid)
        answer["status"] = view["status"]
    if session.out.as_json:
        session.out.json(answer)
    else:
        session.out.line(f"{answer['instanceId']}: {action} ({answer['status']})")


def lifecycle_command(action: str, doc: str) -> click.Command:
    @click.argument("bot_id", metavar="ID")
    @WAIT
    @TIMEOUT
    @client_command
    def command(session: Session, bot_id: str, wait: bool, timeout: float) -> None:
        lifecycle(session, bot_id, action, wait, timeout)

    command.__doc__ = doc
    return bots.command(action)(command)


lifecycle_command("start", "Start a bot's process.")
lifecycle_command("stop", "Stop a bot's process (it keeps its slot).")
lifecycle_command("restart", "Restart a bot's process (starts it if stopped).")


def interactive() -> bool:
    """Whether a person can answer a question: stdin is a terminal."""
    return sys.stdin.isatty()


@bots.command("rm")
@click.argument("bot_id", metavar="ID")
@click.option(
    "--purge", is_flag=True, help="delete its directory (trade database) instead of archiving it"
)
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@client_command
def rm(session: Session, bot_id: str, purge: bool, yes: bool) -> None:
    """Remove a bot and free its slot; its directory is archived (deleted with --purge)."""
    if not yes:
        what = "delete its trade database" if purge else "archive its directory"
        if not interactive():
            raise click.UsageError(f"removing {bot_id} needs --yes when not asked on a terminal")
        click.confirm(f"Remove bot {bot_id} and {what}?", abort=True, err=True)
    answer = session.api.delete(bot_path(bot_id), purge="true" if purge else "false")
    if session.out.as_json:
        session.out.json(answer)
    else:
        kept = "archived" if answer.get("archived") else "purged"
        session.out.line(f"{answer['instanceId']}: {answer['status']} (directory {kept})")


@bots.command("logs")
@click.argument("bot_id", metavar="ID")
@click.option("--bytes", "size", type=click.IntRange(1, 1024 * 1024), default=LOG_BYTES,
              show_default=True, help="how much of the log's end to show")  # fmt: skip
@click.option("--follow", "-f", is_flag=True, help="keep printing what the bot logs (Ctrl-C ends)")
@click.option("--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True,
              help="seconds between two looks at the log with -f")  # fmt: skip
@client_command
def logs(session: Session, bot_id: str, size: int, follow: bool, interval: float) -> None:
    """The end of a bot's process log; with -f, follow it."""
    path = f"/api/pool/bot/{segment(bot_id)}/log"
    previous = session.api.text(path, bytes=size)
    show = log_printer(session, bot_id)
    show(previous)
    patience = Patience(PATIENCE_SECONDS)
    while follow:
        time.sleep(interval)
        try:
            current = session.api.text(path, bytes=size)
        except (ApiError, Unreachable) as exc:
            # The controller restarts, or the bot's pool is away (503): look again, a while.
            if isinstance(exc, ApiError) and exc.status != 503:
                raise
            patience.lost(exc)
            continue
        patience.found()
        part, gap = new_part(previous, current)
        if gap:
            click.echo(
                "ftpool: [the log moved on faster than it was read: lines skipped]", err=True
            )
        if part:
            show(part)
        previous = current


def log_printer(session: Session, bot_id: str) -> Callable[[bytes], None]:
    """Log text as it came, or with --json one {"instanceId", "log"} line per piece."""
    # One decoder for the whole log: a character cut between two looks is joined again.
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    if session.out.as_json:
        return lambda part: session.out.json_line({"instanceId": bot_id, "log": decode(part)})
    return lambda part: session.out.raw(decode(part))
