"""Restarts and failures: controller restarts adopt pools, dead pools come back, empty ones go."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.support import (
    fakebot_pids,
    pid_alive,
    processes_under,
    supervisord_pid,
    user_token,
    wait_for,
)

pytestmark = pytest.mark.integration


def count(base_dir, needle: str) -> int:
    return sum(1 for _pid, cmd, _cwd in processes_under(base_dir) if needle in cmd)


async def test_controller_restart_adopts_running_bots(harness_factory):
    overrides = {"MAX_BOTS_PER_CONTAINER": "3", "POOL_BASE_PORT": "22500"}
    h = await harness_factory(**overrides)
    bots = ("ad-1", "ad-2")
    pids = await h.provision_running(*bots)
    base = h.settings.bot_base_dir

    # The controller goes away: the bots do not depend on it.
    await h.stop()
    await asyncio.sleep(3)
    assert all(pid_alive(p) for p in pids.values())

    h2 = await harness_factory(CONTROLLER_PORT=str(h.settings.controller_port), **overrides)

    async def adopted() -> bool:
        seen = await h2.bots()
        return all(
            seen[b]["process"] and seen[b]["process"]["pid"] == pids[b]
            and seen[b]["process"]["state"] == "RUNNING"
            for b in bots
        )  # fmt: skip

    await wait_for(adopted, timeout=40)
    await h2.wait_applied("pool-1")
    for bot in bots:
        await h2.wait_running(bot)
        assert fakebot_pids(h2.pool_dir("pool-1") / "bots" / bot) == [pids[bot]]
        status, cfg = await h2.call("GET", f"/api/bots/{bot}/show_config")
        assert status == 200 and cfg["pid"] == pids[bot]
    # No duplicates anywhere: one supervisord, one agent, one process per bot.
    assert count(base, "fakebot.py") == len(bots)
    assert count(base, "supervisord") == 1
    assert count(base, "-m agent") == 1
    assert await h2.pids() == pids
    status, st = await h2.call("GET", "/api/pool/status")
    assert st["totalPools"] == 1 and st["pools"][0]["status"] == "running"
    assert st["health"]["status"] == "healthy"


async def test_terminated_pool_is_restarted_at_once(harness_factory):
    h = await harness_factory(MAX_BOTS_PER_CONTAINER="3", POOL_BASE_PORT="22600", POOL_GRACE="2000")
    bots = ("rc-1", "rc-2")
    pids = await h.provision_running(*bots)
    pool = h.pool_dir("pool-1")
    sup = supervisord_pid(pool)
    assert sup is not None

    # The pool's supervisord is told to exit: it stops its bots and its agent.
    os.kill(sup, signal.SIGTERM)
    await wait_for(lambda: not pid_alive(sup), timeout=30)
    assert not any(pid_alive(p) for p in pids.values())

    # The lost agent connection wakes the monitor: it asks the runtime, finds the pool
    # exited and starts it again, without waiting for HEALTH_CHECK_INTERVAL.
    # (Until the new agent reports, the controller shows the last known, stale, state.)
    async def new_processes() -> bool:
        now = await h.pids()
        return all(now[b] not in (None, pids[b]) for b in bots)

    await wait_for(new_processes, timeout=40)
    await asyncio.gather(*(h.wait_running(b, timeout=40) for b in bots))
    new = await h.pids()
    assert all(new[b] not in (None, pids[b]) for b in bots)
    for bot in bots:
        assert fakebot_pids(pool / "bots" / bot) == [new[bot]]
    assert supervisord_pid(pool) not in (None, sup)

    status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    assert status == 200
    kinds = [(e["type"], e["reason"]) for e in body["events"] if e["poolId"] == "pool-1"]
    suspect = next(i for i, (kind, _) in enumerate(kinds) if kind == "pool_suspect")
    assert kinds.index(("pool_recovery", "restart")) > suspect

    # Healthy again: a check (admin only) finds nothing to do, in the seed's shape.
    assert (await h.call("POST", "/api/pool/health-check", user_token("eve")))[0] == 403
    status, report = await h.call("POST", "/api/pool/health-check")
    assert report["success"] is True and {"timestamp", "pools", "bots", "durationMs"} <= set(report)
    assert status == 200 and report["issues"] == [] and report["recoveryActions"] == []
    assert all(p["healthy"] for p in report["pools"]), report
    assert all(b["healthy"] for b in report["bots"]), report


async def test_cleanup_removes_only_empty_pools(harness_factory):
    base = 22700
    h = await harness_factory(
        MAX_BOTS_PER_CONTAINER="2", POOL_BASE_PORT=str(base), POOL_CLEANUP_GRACE="0"
    )
    pids = await h.provision_running("cl-1", "cl-2", "cl-3")
    assert (await h.bot("cl-3"))["poolId"] == "pool-2"
    pool2 = h.pool_dir("pool-2")
    sup2 = supervisord_pid(pool2)
    assert sup2 is not None

    assert (await h.call("POST", "/api/pool/cleanup", user_token("eve")))[0] == 403
    # Nothing is empty yet.
    status, body = await h.call("POST", "/api/pool/cleanup")
    assert (status, body) == (
        200, {"success": True, "removedPools": 0, "message": "Cleaned up 0 empty pool containers"}
    )  # fmt: skip

    status, body = await h.call("DELETE", "/api/bots/cl-3")
    assert status == 200 and body["status"] == "deleted"
    status, body = await h.call("POST", "/api/pool/cleanup")
    assert (status, body) == (
        200, {"success": True, "removedPools": 1, "message": "Cleaned up 1 empty pool containers"}
    )  # fmt: skip
    await wait_for(lambda: not pid_alive(sup2), timeout=30)
    assert not pool2.exists()
    # The deleted bot's archive outlives its pool.
    assert len(list((h.settings.bot_base_dir / "archive").glob("cl-3-*"))) == 1

    status, st = await h.call("GET", "/api/pool/status")
    assert [p["id"] for p in st["pools"]] == ["pool-1"] and st["totalBots"] == 2
    assert await h.pids() == {"cl-1": pids["cl-1"], "cl-2": pids["cl-2"]}
    assert all(pid_alive(pids[b]) for b in ("cl-1", "cl-2"))
    status, body = await h.call("POST", "/api/pool/cleanup")
    assert status == 200 and body["removedPools"] == 0

    # The freed block is reused by the next pool.
    created = await h.provision(instanceId="cl-4")
    assert (created["poolId"], created["port"]) == ("pool-2", base + 2)
    await h.wait_running("cl-4")
    now = await h.pids()
    assert (now["cl-1"], now["cl-2"]) == (pids["cl-1"], pids["cl-2"]) and now["cl-4"]
