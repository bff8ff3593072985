"""Limits with real processes (local runtime, real supervisord and agents): a user's quota
and memory budget, and a bot that leaks memory without bound, restarted then failed while its
neighbours run on.
"""

from __future__ import annotations

import asyncio

import pytest

from agent.autogroup import group_nice
from agent.oom import read_oom_score_adj
from tests.support import (
    fakebot_pids,
    supervisor_processes,
    supervisord_pid,
    user_token,
    wait_for,
)

pytestmark = pytest.mark.integration

ALICE = user_token("alice")


async def events_of(h, bot: str, kind: str) -> list[dict]:
    status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    assert status == 200, body
    return [e for e in body["events"] if e["type"] == kind and e["instanceId"] == bot]


async def test_a_users_quota_holds_under_concurrent_provisions_and_the_admin_raises_it(
    harness_factory,
):
    h = await harness_factory(POOL_BASE_PORT="28000", MAX_BOTS_PER_CONTAINER="4",
                              USER_MAX_BOTS="2")  # fmt: skip
    answers = await asyncio.gather(*(
        h.call("POST", "/api/bots", ALICE, json={"instanceId": f"q-{i}"}) for i in range(5)
    ))  # fmt: skip
    assert sorted(status for status, _ in answers) == [201, 201, 403, 403, 403]
    refused = next(body for status, body in answers if status == 403)
    assert refused["success"] is False and refused["quota"] == {"maxBots": 2, "bots": 2}
    placed = [body["instanceId"] for status, body in answers if status == 201]
    await asyncio.gather(*(h.wait_running(b) for b in placed))
    status, mine = await h.call("GET", "/api/bots", ALICE)
    assert sorted(b["instanceId"] for b in mine["bots"]) == sorted(placed)

    status, quota = await h.call("PUT", "/api/users/alice/quota", json={"maxBots": 3})
    assert status == 200 and quota["maxBots"] == 3 and quota["bots"] == 2
    status, body = await h.call("POST", "/api/bots", ALICE, json={"instanceId": "q-more"})
    assert status == 201, body
    await h.wait_running("q-more")
    status, body = await h.call("POST", "/api/bots", ALICE, json={"instanceId": "q-over"})
    assert status == 403 and body["quota"] == {"maxBots": 3, "bots": 3}


async def test_a_users_memory_budget_holds_under_concurrent_provisions(harness_factory):
    # Ports 32000-32009. Each bot's limit the default 100 MiB: a budget of 250 MiB is two.
    h = await harness_factory(POOL_BASE_PORT="32000", MAX_BOTS_PER_CONTAINER="4",
                              BOT_MEMORY_LIMIT="100m")  # fmt: skip
    status, quota = await h.call("PUT", "/api/users/alice/quota", json={"maxMemory": "250m"})
    assert status == 200 and quota["maxMemoryBytes"] == 250 << 20
    answers = await asyncio.gather(*(
        h.call("POST", "/api/bots", ALICE, json={"instanceId": f"m-{i}"}) for i in range(5)
    ))  # fmt: skip
    assert sorted(status for status, _ in answers) == [201, 201, 403, 403, 403]
    refused = next(body for status, body in answers if status == 403)
    assert refused["quota"] == {"maxMemoryBytes": 250 << 20, "memoryBytes": 200 << 20,
                                "needBytes": 100 << 20}  # fmt: skip
    placed = [body["instanceId"] for status, body in answers if status == 201]
    await asyncio.gather(*(h.wait_running(b) for b in placed))
    # The admin raises it: a smaller own limit fits, then the budget is spent.
    small = {"instanceId": "m-small", "limits": {"memory": "64m"}}
    assert (await h.call("POST", "/api/bots", ALICE, json=small))[0] == 403
    await h.call("PUT", "/api/users/alice/quota", json={"maxMemory": "300m"})
    status, body = await h.call("POST", "/api/bots", ALICE, json=small)
    assert status == 201, body
    await h.wait_running("m-small")
    status, quota = await h.call("GET", "/api/users/alice/quota", ALICE)
    assert (quota["memoryBytes"], quota["bots"]) == (264 << 20, 3)
    over = {"instanceId": "m-over", "limits": {"memory": "64m"}}
    status, body = await h.call("POST", "/api/bots", ALICE, json=over)
    assert status == 403 and body["quota"]["memoryBytes"] == 264 << 20


async def test_a_leaking_bot_is_restarted_then_failed_while_its_neighbours_run_on(
    harness_factory,
):
    h = await harness_factory(
        POOL_BASE_PORT="28010", MAX_BOTS_PER_CONTAINER="4", BOT_MEMORY_LIMIT="100m",
        BOT_MEMORY_GRACE="1000", MAX_RESTART_ATTEMPTS="2", RESTART_BACKOFF="300",
        RESTART_COOLDOWN="1000", RESTART_CYCLES="1",
    )  # fmt: skip
    pids = await h.provision_running("calm-1", "leaky", "calm-2")
    calm = {b: pids[b] for b in ("calm-1", "calm-2")}
    info = await h.bot("calm-1")
    # Its own memory, measured: a fake bot's interpreter and aiohttp, well under its limit.
    own = info["process"]["ownMemoryBytes"]
    assert 0 < own < info["process"]["memoryBytes"] and own < 100 << 20
    assert info["limits"] == {"memoryBytes": 100 << 20, "own": False, "cpu": None,
                              "cpuOwn": False, "cpuEnforcement": None}  # fmt: skip
    assert info["usage"]["memory"] == {
        "ownBytes": own,
        "limitBytes": 100 << 20,
        "ofLimitPercent": round(100 * own / (100 << 20), 1),
    }

    # The kernel's OOM killer would take a bot before the pool's machinery: each bot raised
    # (BOT_OOM_SCORE_ADJ), supervisord and the agent lowered where allowed (as root), never
    # above a bot.
    pool_dir = h.pool_dir("pool-1")
    machinery = [supervisord_pid(pool_dir), supervisor_processes(pool_dir)["agent"]["pid"]]
    for pid in pids.values():
        assert read_oom_score_adj(pid) == 500
    for pid in machinery:
        assert pid and read_oom_score_adj(pid) < 500

    async def guarded() -> dict | None:
        _status, body = await h.call("GET", "/api/pool/status")
        limits = body["pools"][0]["limits"]
        return limits if limits["mode"] == "measured+oom_score_adj" else None

    limits = await wait_for(guarded, 10)
    assert limits["oomGuard"] is True and limits["botMemoryLimitsBytes"] == 300 << 20

    # From its next start on, it keeps 4 MiB more every 100 ms, without bound.
    bot_dir = h.pool_dir("pool-1") / "bots" / "leaky"
    (bot_dir / "leak-memory").write_text("4")
    assert (await h.call("POST", "/api/bots/leaky/restart"))[0] == 200

    async def failed() -> bool:
        return (await h.bot("leaky"))["status"] == "failed"

    await wait_for(failed, 90)
    over = await events_of(h, "leaky", "bot_memory_limit")
    assert [e["detail"]["action"] for e in over] == ["restart", "restart", "stopped"]
    for event in over:
        assert event["reason"] == "memory over its limit"
        assert event["detail"]["limitBytes"] == 100 << 20
        assert event["detail"]["measuredBytes"] > 100 << 20
    restarts = await events_of(h, "leaky", "bot_restart")
    assert [(e["reason"], e["detail"]["attempt"]) for e in restarts] == [
        ("bot_memory_limit", 1), ("bot_memory_limit", 2),
    ]  # fmt: skip
    info = await h.bot("leaky")
    assert info["desired"] == "stopped" and info["restarts"]["failed"] is True
    assert info["restarts"]["memoryLimit"] == 2

    async def stopped() -> bool:
        return fakebot_pids(bot_dir) == []

    await wait_for(stopped, 30)
    # Its neighbours never noticed: the same processes, answering.
    assert {b: (await h.pids())[b] for b in calm} == calm
    for bot in calm:
        status, pong = await h.call("GET", f"/api/bots/{bot}/ping")
        assert status == 200 and pong == {"status": "pong"}
    metrics = (await h.call("GET", "/metrics"))[1].decode()
    assert 'ftpool_bot_memory_limit_total{action="restart"} 2.0' in metrics
    assert 'ftpool_bot_memory_limit_total{action="stopped"} 1.0' in metrics

    # Fixed, its owner starts it: it runs again with a clean record.
    (bot_dir / "leak-memory").unlink()
    assert (await h.call("POST", "/api/bots/leaky/start"))[0] == 200
    info = await h.wait_running("leaky")
    assert info["restarts"]["memoryLimit"] == 0 and info["status"] == "running"


async def test_a_bot_in_a_busy_loop_runs_at_nice_19_and_its_neighbour_does_not(harness_factory):
    h = await harness_factory(POOL_BASE_PORT="28020", MAX_BOTS_PER_CONTAINER="4",
                              BOT_BUSY_CPU="50", BOT_BUSY_WINDOW="2000")  # fmt: skip
    pids = await h.provision_running("calm", "spinner")
    calm_nice = (await h.bot("calm"))["process"]["nice"]
    assert calm_nice is not None and calm_nice < 19
    (h.pool_dir("pool-1") / "bots" / "spinner" / "spin-cpu").touch()
    assert (await h.call("POST", "/api/bots/spinner/restart"))[0] == 200

    async def reniced() -> dict | None:
        info = await h.bot("spinner")
        process = info["process"] or {}
        fresh = process.get("pid") not in (None, pids["spinner"])  # the spinning process
        return info if fresh and process["nice"] == 19 else None

    info = await wait_for(reniced, 60)
    assert info["process"]["cpuPercent"] > 50
    calm = await h.bot("calm")
    assert (calm["process"]["pid"], calm["process"]["nice"]) == (pids["calm"], calm_nice)
    # Launched by exec, both are in supervisord's session: their autogroup is the pool's
    # machinery's, and it is left alone (only a forked bot's, its own, is reniced).
    assert group_nice(info["process"]["pid"]) == group_nice(pids["calm"]) != 19
    status, pong = await h.call("GET", "/api/bots/calm/ping")
    assert status == 200 and pong == {"status": "pong"}
