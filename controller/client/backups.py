"""`ftpool backup ls|restore`: a bot's restore points, and putting its trade database back."""

from __future__ import annotations

from typing import Any

import click

from controller.client import output as fmt
from controller.client.bots import bot_path, interactive
from controller.client.command import Session, client_command

COLUMNS = ("RESTORE POINT", "TIME", "SIZE", "TRADES", "OPEN", "POOL")


def point_row(point: dict[str, Any]) -> list[Any]:
    return [
        point["id"], point.get("time"), fmt.size(point.get("bytes")), point.get("trades"),
        point.get("openTrades"), point.get("poolId"),
    ]  # fmt: skip


@click.group()
def backup() -> None:
    """A bot's backups: its restore points, and restoring its trade database from one."""


@backup.command("ls")
@click.argument("bot_id", metavar="ID")
@client_command
def ls(session: Session, bot_id: str) -> None:
    """The bot's restore points, newest first."""
    data = session.api.get(bot_path(bot_id, "backups"))
    if session.out.as_json:
        session.out.json(data)
        return
    rows = [point_row(p) for p in data.get("restorePoints") or []]
    session.out.table(COLUMNS, rows, empty=f"no restore points of {bot_id} yet")


@backup.command("restore")
@click.argument("bot_id", metavar="ID")
@click.option("--point", "point_id", metavar="RESTORE_POINT", help="a restore point from `ls`")
@click.option("--time", "at", metavar="ISO_8601", help="the last restore point at or before it")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@client_command
def restore(session: Session, bot_id: str, point_id: str | None, at: str | None, yes: bool) -> None:
    """Stop the bot, put its trade database back (the current one is kept aside), and run
    it again as its user had it."""
    if (point_id is None) == (at is None):
        raise click.UsageError("give --point or --time, one of them")
    if not yes:
        if not interactive():
            raise click.UsageError(f"restoring {bot_id} needs --yes when not asked on a terminal")
        click.confirm(f"Replace the trade database of {bot_id}?", abort=True, err=True)
    body = {"restorePoint": point_id} if point_id is not None else {"time": at}
    answer = session.api.post(bot_path(bot_id, "restore"), body)
    if session.out.as_json:
        session.out.json(answer)
        return
    point = answer.get("restorePoint") or {}
    kept = answer.get("keptAs")
    session.out.line(
        f"{answer['instanceId']}: restored from {point.get('id')} ({point.get('time')})"
        + (f"; the database it replaced is kept as {kept}" if kept else "")
    )
