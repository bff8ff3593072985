"""The stages of a killed bot's way back, each timed from the kill.

What the agent logged (its JSON lines: the exit seen through the process's pidfd or
supervisord's event, the restart applied, the new process, its first answer), what the
controller stored (its events: the exit reported, the restart sent) and what the bench
itself sees, sampling every 10 ms (FreqTrade's API up on the bot's own port, the answer
reported in the controller's view of the bot, the proxy forwarding). A stage a source
does not tell (an agent of the previous version logs none of its lines) stays empty.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp

# In the order a recovery passes them; the bench prints them so.
STAGES = (
    "exit seen by agent",
    "exit seen by controller",
    "restart sent",
    "restart applied by agent",
    "process started",
    "FreqTrade API up",
    "first ping answered",
    "answer reported",
    "proxy forwards",
)
STEP = 0.01
_DIED = ("EXITED", "FATAL", "BACKOFF")


def stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines in text (supervisord's and others' lines are skipped)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def _first(found: dict[str, float], stage: str, when: float) -> None:
    if stage not in found or when < found[stage]:
        found[stage] = when


def from_agent(lines: list[dict[str, Any]], bot: str, since: float) -> dict[str, float]:
    """Stages the agent's log lines tell, for `bot`, from `since` (epoch seconds) on."""
    program, found = f"bot-{bot}", {}
    for line in lines:
        if "timestamp" not in line or (when := stamp(line["timestamp"])) < since:
            continue
        event = line.get("event")
        if line.get("program") == program and (
            event == "process_exit_seen"
            or (event in ("process_state", "process_event") and line.get("state") in _DIED)
        ):
            _first(found, "exit seen by agent", when)
        elif event == "process_state" and line.get("program") == program \
                and line.get("state") == "STARTING":  # fmt: skip
            _first(found, "process started", when)
        elif event == "bot_restart" and line.get("bot") == bot:
            _first(found, "restart applied by agent", when)
        elif event == "bot_answering" and line.get("bot") == bot:
            _first(found, "first ping answered", when)
    return found


def from_controller(events: list[dict[str, Any]], bot: str, since: float) -> dict[str, float]:
    """Stages the controller's stored events tell."""
    found: dict[str, float] = {}
    for event in events:
        if event.get("instanceId") != bot or (when := stamp(event["timestamp"])) < since:
            continue
        if event["type"] == "bot_state" and event["reason"] in _DIED:
            _first(found, "exit seen by controller", when)
        elif event["type"] == "bot_restart":
            _first(found, "restart sent", when)
    return found


async def sample(
    checks: dict[str, Callable[[], Awaitable[bool]]], done: str, timeout: float
) -> dict[str, float]:
    """Ask every check each STEP until it first holds; until `done` holds (or timeout)."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout

    async def check(stage: str, predicate: Callable[[], Awaitable[bool]]) -> None:
        try:
            if await predicate():
                found.setdefault(stage, time.time())
        except (aiohttp.ClientError, TimeoutError, OSError):
            pass

    while done not in found:
        if time.monotonic() > deadline:
            raise AssertionError(f"{done!r} not within {timeout} s")
        await asyncio.gather(*(check(s, p) for s, p in checks.items() if s not in found))
        await asyncio.sleep(STEP)
    return found


def table(rounds: list[dict[str, float]]) -> list[str]:
    """Each stage's median and maximum over the rounds, in seconds after the kill (each
    round's "killed": 0), and where the time goes."""
    rows = [f"  {'stage (s after the kill)':30} {'median':>8} {'max':>8}"]
    for stage in STAGES:
        values = sorted(r[stage] for r in rounds if stage in r)
        if not values:
            rows.append(f"  {stage:30} {'-':>8} {'-':>8}")
            continue
        rows.append(f"  {stage:30} {statistics.median(values):8.3f} {values[-1]:8.3f}")
    rows.append("  where the time goes (medians of the differences):")
    for label, start, end in _PARTS:
        spans = [r[end] - r[start] for r in rounds if end in r and start in r]
        if spans:
            rows.append(f"    {label:58} {statistics.median(spans):8.3f}")
    return rows


# ftpool's part ends where FreqTrade's begins: the new process, then its API answering.
_PARTS = (
    ("ftpool: kill → new process started", "killed", "process started"),
    ("FreqTrade's own start-up: process started → API up", "process started", "FreqTrade API up"),
    ("ftpool: API up → its answer reported to the controller", "FreqTrade API up",
     "answer reported"),
    ("the proxied request: answer reported → answered", "answer reported", "proxy forwards"),
)  # fmt: skip
