"""The agent's health socket: a container health check asks the agent itself, not `ps`.

The answer comes from the agent's event loop and says whether its last supervisord
poll succeeded recently, so a hung agent or an unreachable supervisord is unhealthy.
Being disconnected from the controller is not: the bots keep running meanwhile. Nor is
being fenced (agent/fence.py): the answer says so, and the agent waits for its controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from common.settings import HealthcheckSettings


def _prepare(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket of a previous agent
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)


async def serve(path: Path, report: Callable[[], dict[str, Any]]) -> asyncio.AbstractServer:
    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps(report()).encode() + b"\n")
            await writer.drain()
        writer.close()

    _prepare(path)
    server = await asyncio.start_unix_server(answer, path=str(path))
    os.chmod(path, 0o600)
    return server


def status(
    last_poll_ok: float, max_age: float, connected: bool, fenced: bool = False
) -> dict[str, Any]:
    age = time.monotonic() - last_poll_ok
    return {"ok": age <= max_age, "supervisorAgeSeconds": round(age, 1), "controller": connected,
            "fenced": fenced}  # fmt: skip


async def _ask(path: str, timeout: float) -> dict[str, Any]:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    try:
        return json.loads(await asyncio.wait_for(reader.readline(), timeout))
    finally:
        writer.close()


def main(env: Mapping[str, str] | None = None) -> int:
    """Exit 0 when the agent answers healthy; run as `python -m agent.healthcheck`.
    `env`: the settings' variables (default: the environment over `.env`)."""
    path = HealthcheckSettings.from_env(env).health_socket
    if not path:
        print("AGENT_HEALTH_SOCKET is not set", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(_ask(path, 3.0))
    except (TimeoutError, OSError, ValueError) as exc:
        print(f"agent did not answer: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0 if answer.get("ok") else 1
