"""Fencing with real processes: an agent cut off from its controller for AGENT_FENCE_TIMEOUT
stops its bots (their processes gone), and they run again, once, when the controller is
back and says so. Off (the default on this runtime), a controller outage changes nothing:
tests/integration/test_faults.py and test_recovery.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.support import bot_processes, pid_alive, supervisor_processes, wait_for

pytestmark = pytest.mark.integration

# Ports 30300-30309 and 30400-30409. POOL_GRACE above the agent's reconnect backoff (at
# most 12 s), so that its reconnection after the outage is awaited, not forced; the monitor
# looks every 2 s, so that a bot restarted twice would be seen.
SETTINGS = {
    "POOL_BASE_PORT": "30300", "HEALTH_CHECK_INTERVAL": "2000", "POOL_GRACE": "20000",
    "AGENT_FENCE_TIMEOUT": "3000", "LOG_LEVEL": "info", "PRELOAD_MODULES": "aiohttp,yarl",
}  # fmt: skip
# Bots as plain processes, and forked from the pool's preloader (which runs on, fenced).
LAUNCHES = {"exec": "30300", "preload": "30400"}


def running(pool_dir) -> dict[str, list[int]]:
    """Bot id -> pids of its bot processes (a forked bot's own, not its launcher's)."""
    return bot_processes(pool_dir / "bots", "fakebot.py")


def fenced_log(pool_dir) -> list[dict]:
    """The agent's `fenced` log lines (JSON lines: it logs to a file)."""
    lines = (pool_dir / "logs" / "agent.log").read_text().splitlines()
    return [e for e in map(json.loads, filter(lambda s: s.startswith("{"), lines))
            if e.get("event") == "fenced"]  # fmt: skip


@pytest.mark.parametrize("launch", LAUNCHES)
async def test_a_cut_off_agent_stops_its_bots_until_its_controller_says_so(
    harness_factory, launch: str
):
    settings = {**SETTINGS, "BOT_LAUNCH": launch, "POOL_BASE_PORT": LAUNCHES[launch]}
    h = await harness_factory(**settings)
    bots = ("fe-1", "fe-2")
    await h.provision_running(*bots, "fe-3")
    status, body = await h.call("POST", "/api/bots/fe-3/stop")
    assert status == 200, body
    await h.wait_applied("pool-1")
    pids = {b: p for b, p in (await h.pids()).items() if b in bots}
    pool = h.pool_dir("pool-1")
    programs = supervisor_processes(pool)
    agent, preloader = programs["agent"]["pid"], programs.get("preloader", {}).get("pid")
    assert (preloader is not None) == (launch == "preload")
    assert running(pool) == {b: [p] for b, p in pids.items()}

    await h.stop()
    cut = time.monotonic()
    # Within the timeout (and the agent's stop), every bot process is gone: its own pid.
    await wait_for(lambda: not running(pool), timeout=30)
    stopped_after = time.monotonic() - cut
    assert not any(pid_alive(p) for p in pids.values() if p)
    programs = supervisor_processes(pool)
    assert {b: programs[f"bot-{b}"]["statename"] for b in (*bots, "fe-3")} == {
        "fe-1": "STOPPED", "fe-2": "STOPPED", "fe-3": "STOPPED",
    }  # fmt: skip
    assert programs["agent"]["pid"] == agent  # it fenced; nobody restarted it
    assert programs.get("preloader", {}).get("pid") == preloader  # it trades nothing: runs on
    (fenced,) = await wait_for(lambda: fenced_log(pool), timeout=5)
    assert fenced["bots_stopped"] == 2
    print(f"\n{launch}: controller lost -> bots stopped: {stopped_after:.1f} s "
          f"(AGENT_FENCE_TIMEOUT 3 s; agent's own count: {fenced['after_s']} s)")  # fmt: skip

    # Fenced, the agent starts nothing by itself, however long the controller stays away.
    await asyncio.sleep(5)
    assert running(pool) == {}

    back = await harness_factory(**settings, CONTROLLER_PORT=str(h.settings.controller_port))
    came_back = time.monotonic()
    await back.wait_applied("pool-1")
    await asyncio.gather(*(back.wait_running(b) for b in bots))
    print(f"{launch}: controller back -> bots answering: {time.monotonic() - came_back:.1f} s")
    await asyncio.sleep(5)  # health checks on the reconnected pool: no second start
    # Each bot once, a new process (fe-3, stopped by its user, stays stopped).
    again = running(pool)
    assert sorted(again) == sorted(bots) and all(len(p) == 1 for p in again.values()), again
    assert all(again[b][0] != pids[b] for b in bots)
    assert await back.pids() == {**{b: p[0] for b, p in again.items()}, "fe-3": None}
    assert all(v["restarts"]["attempts"] == 0 for v in (await back.bots()).values())
    programs = supervisor_processes(pool)
    assert programs["agent"]["pid"] == agent
    assert programs.get("preloader", {}).get("pid") == preloader

    status, body = await back.call("GET", "/api/pool/events/history?limit=1000")
    assert status == 200, body
    assert [e["poolId"] for e in body["events"] if e["type"] == "pool_fenced"] == ["pool-1"]
    status, metrics = await back.call("GET", "/metrics")
    assert status == 200 and b"ftpool_pool_fences_total 1.0" in metrics
