"""Waiting until a bot gets where a command sent it (`--wait`): a pure test of a bot's
view, and a bounded poll around it with an injected clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from controller.client.command import Failed
from controller.client.http import ApiError, Unreachable

AT_REST = frozenset({"stopped", "exited", "absent"})
POLL_SECONDS = 0.5
# A follower waits this long for a controller that went away (a restart takes seconds).
PATIENCE_SECONDS = 60.0


def arrived(view: dict[str, Any], target: str, old_pid: int | None = None) -> bool:
    """Whether a bot's view (GET /api/bots/{id}) shows it `running` (answering its ping,
    as a new process if old_pid is given) or `stopped`."""
    status = view.get("status")
    process = view.get("process") or {}
    if target == "stopped":
        return status in AT_REST
    if status != "running" or process.get("state") != "RUNNING":
        return False
    if (process.get("ping") or {}).get("ok") is False:
        return False
    return old_pid is None or process.get("pid") not in (None, old_pid)


def wait_until(
    fetch: Callable[[], dict[str, Any]], target: str, timeout: float, *, old_pid: int | None = None,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:  # fmt: skip
    """Poll fetch() until the bot arrived; Failed after `timeout` seconds."""
    deadline = clock() + timeout
    while True:
        view = fetch()
        if arrived(view, target, old_pid):
            return view
        if clock() >= deadline:
            raise Failed(
                f"bot {view.get('instanceId')} is {view.get('status')}, "
                f"not {target}, after {timeout:g} s"
            )
        sleep(POLL_SECONDS)


class Patience:
    """How long a follower (`-f`) keeps trying a controller it lost (a restart, say) or a
    bot whose pool is away (503): `seconds` from the first failure on, which is told on
    stderr once."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.lost_at: float | None = None

    def found(self) -> None:
        if self.lost_at is not None:
            click.echo("ftpool: reconnected", err=True)
        self.lost_at = None

    def lost(self, exc: Unreachable | ApiError) -> None:
        """Note the failure; raise it once the controller has been away too long."""
        now = self.clock()
        if self.lost_at is None:
            self.lost_at = now
            click.echo(f"ftpool: {exc}; trying again for {self.seconds:g} s", err=True)
        elif now - self.lost_at >= self.seconds:
            raise exc
