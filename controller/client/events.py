"""`ftpool events [-f]`: the stored events, and with -f the live stream (Server-Sent Events),
resumed after the last id received when the controller ends it (a slow reader)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import click

from controller.client.command import Session, client_command
from controller.client.http import Unreachable
from controller.client.wait import PATIENCE_SECONDS, Patience

RECONNECT_SECONDS = 1.0


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The events of a Server-Sent Events stream: each `data:` JSON, once its blank line
    came. Comments (keepalives) and fields other than data are skipped."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield json.loads("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def when(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def event_line(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    extra = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(detail.items()))
    return (
        f"{when(event.get('timestamp'))}  #{event.get('id'):<6} {event.get('type', '?'):<18} "
        f"{event.get('poolId') or '-':<10} {event.get('instanceId') or '-':<20} "
        f"{event.get('reason') or '-':<16} {extra}"
    ).rstrip()


def show(session: Session, event: dict[str, Any]) -> None:
    if session.out.as_json:
        session.out.json_line(event)
    else:
        session.out.line(event_line(event))


def stored(session: Session, limit: int, since: int | None) -> list[dict[str, Any]]:
    query = {"limit": limit} if since is None else {"limit": limit, "since": since}
    return session.api.get("/api/pool/events/history", **query)["events"]


def follow(session: Session, last: int) -> None:
    """Print the events after id `last` as they come, until Ctrl-C. A stream the controller
    ends (a reader too slow, a restart) is resumed after the last id seen: nothing is
    missed or shown twice. A controller away for longer than PATIENCE_SECONDS ends it."""
    patience = Patience(PATIENCE_SECONDS)
    while True:
        lines = session.api.lines("/api/pool/events", {"Last-Event-ID": str(last)})
        try:
            for event in parse_sse(lines):
                patience.found()
                show(session, event)
                last = event["id"]
        except Unreachable as exc:
            patience.lost(exc)
        time.sleep(RECONNECT_SECONDS)


@click.command()
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(0, 1000),
    default=20,
    show_default=True,
    help="how many stored events to show (the last ones, or the first after --since)",
)
@click.option("--since", type=click.IntRange(0), metavar="ID", help="only events after this id")
@click.option(
    "--follow",
    "-f",
    "keep_following",
    is_flag=True,
    help="then print new events as they happen (Ctrl-C ends)",
)
@client_command
def events(session: Session, limit: int, since: int | None, keep_following: bool) -> None:
    """Health transitions and recovery actions (a user sees only their bots' events).

    With --json: the history answer, or with -f one JSON event per line."""
    if not keep_following:
        found = stored(session, limit, since)
        if session.out.as_json:
            session.out.json({"success": True, "events": found})
        elif not found:
            session.out.line("no events")
        for event in [] if session.out.as_json else found:
            show(session, event)
        return
    if since is None:
        # The last id now, so that the stream starts right after what was shown.
        found = stored(session, max(limit, 1), None)
        shown = found[-limit:] if limit else []
        since = found[-1]["id"] if found else 0
    else:
        shown = []  # the stream replays every event after --since
    for event in shown:
        show(session, event)
    follow(session, since)
