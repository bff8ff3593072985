"""The monitor, on the real app (no processes): its clock is the test's, moved on instead of
slept through."""

from __future__ import annotations

import asyncio
import time

import pytest
import requests

from common.protocol import BotStatus, Heartbeat, Hello, PoolStats
from controller.runtimes import RuntimeState
from tests.unit.controller.apps import (
    ALICE,
    Api,
    ApiFactory,
    bot_dirs,
    connect,
    events_of,
    obey,
    obey_new_pools,
    record_hand_overs,
    report,
    write_bot_dir,
)


def nonce(api: Api, bot: str) -> int:
    return api.controller.pools.registry.bots[bot].nonce


def bot(api: Api, bot_id: str = "b1"):  # type: ignore[no-untyped-def]
    return api.controller.pools.registry.bots[bot_id]


async def evaluate(api: Api) -> set[str]:
    return {i["type"] for i in (await api.controller.monitor.evaluate()).issues}


async def test_a_dead_bot_is_restarted_at_once_then_backs_off(make_api: ApiFactory) -> None:
    api: Api = await make_api(RESTART_BACKOFF="600000")
    await api.provision(instanceId="b1")
    connect(api)
    report(api, "b1", "EXITED", since=100.0)
    await evaluate(api)
    assert nonce(api, "b1") == 1 and bot(api).restarts.attempts == 1
    report(api, "b1", "EXITED", since=200.0)  # died again at once
    assert "restart_backoff" in await evaluate(api)
    assert nonce(api, "b1") == 1


async def test_a_crash_loop_gets_its_attempts_a_cooldown_and_is_marked_failed(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(
        MAX_RESTART_ATTEMPTS="2", RESTART_BACKOFF="1", RESTART_COOLDOWN="100", RESTART_CYCLES="1"
    )
    await api.provision(instanceId="b1")
    connect(api)
    for expected in (1, 2):
        report(api, "b1", "FATAL")
        await evaluate(api)
        assert nonce(api, "b1") == expected
        api.clock.advance(0.01)
    assert "restart_cooldown" in await evaluate(api)
    api.clock.advance(0.11)
    assert "bot_failed" in await evaluate(api)
    assert bot(api).restarts.failed and nonce(api, "b1") == 2
    status, body, _ = await api.call("GET", "/api/bots/b1")
    assert body["status"] == "failed" and body["restarts"]["failed"] is True
    await evaluate(api)
    assert nonce(api, "b1") == 2  # left alone

    # The record survives a new controller over the same store.
    again: Api = await make_api()
    assert again.controller.pools.registry.bots["b1"].restarts.failed

    # A start tries again, with a clean record.
    status, body, _ = await api.call("POST", "/api/bots/b1/start")
    assert status == 200 and nonce(api, "b1") == 3
    assert not bot(api).restarts.failed and bot(api).restarts.attempts == 0


async def test_a_bot_whose_api_stops_answering_is_restarted(make_api: ApiFactory) -> None:
    api: Api = await make_api(BOT_UNRESPONSIVE_TIMEOUT="50")
    await api.provision(instanceId="b1")
    connect(api)
    live = api.controller.pools.registry.live["pool-1"]
    live.bots["b1"] = BotStatus("b1", "RUNNING", pid=7, since=1.0, ping_ok=False)
    await evaluate(api)
    assert nonce(api, "b1") == 0  # not yet unanswered for BOT_UNRESPONSIVE_TIMEOUT
    api.clock.advance(0.06)
    assert "bot_not_responding" in await evaluate(api)
    assert nonce(api, "b1") == 1


async def test_a_healthy_run_clears_the_restart_record(make_api: ApiFactory) -> None:
    api: Api = await make_api(RESTART_RESET_AFTER="1")
    await api.provision(instanceId="b1")
    connect(api)
    report(api, "b1", "EXITED")
    await evaluate(api)
    assert bot(api).restarts.attempts == 1
    live = api.controller.pools.registry.live["pool-1"]
    live.bots["b1"] = BotStatus("b1", "RUNNING", pid=7, since=time.time() - 1, ping_ok=True)
    await evaluate(api)
    assert bot(api).restarts.attempts == 0


async def test_a_users_stop_is_never_undone(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    await api.provision(instanceId="b1")
    connect(api)
    assert (await api.call("POST", "/api/bots/b1/stop"))[0] == 200
    api.controller.pools.registry.live["pool-1"].bots["b1"] = BotStatus("b1", "STOPPED", since=5.0)
    for _ in range(3):
        await api.controller.monitor.evaluate()
    bot = api.controller.pools.registry.bots["b1"]
    assert (bot.run, bot.nonce) == ("stopped", 0)


async def test_a_silent_agent_is_restarted_alone_before_its_pool(make_api: ApiFactory) -> None:
    api: Api = await make_api(POOL_GRACE="50")
    await api.provision(instanceId="b1")
    connect(api)
    live = api.controller.pools.registry.live["pool-1"]
    live.last_seen = live.disconnected_at = time.time() - 1  # connected, but silent
    await evaluate(api)
    assert api.runtime.calls[-1] == ("restart_agent", "pool-1")
    await evaluate(api)  # the new agent gets two grace periods to report
    assert ("restart", "pool-1") not in api.runtime.calls
    assert api.runtime.calls.count(("restart_agent", "pool-1")) == 1
    api.clock.advance(0.11)
    await evaluate(api)
    assert api.runtime.calls[-1] == ("restart", "pool-1")


async def test_a_pool_that_cannot_be_started_has_its_bots_moved(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2", POOL_START_ATTEMPTS="2", POOL_GRACE="20")
    for bot_id in ("b1", "b2", "b3"):
        await api.provision(ALICE, instanceId=bot_id)
    obey(api, "pool-2")
    obey_new_pools(api, monkeypatch)
    record_hand_overs(api, monkeypatch)
    for bot_id in ("b1", "b2"):
        write_bot_dir(api, f"pools/pool-1/bots/{bot_id}")
    pools = api.controller.pools.registry
    # pool-1's container is gone, and no new one can be made where it was.
    api.runtime.launches.pop("pool-1")
    api.runtime.broken.add("pool-1")
    for _ in range(2):  # the allowed starts, each failing
        await evaluate(api)
    assert api.runtime.calls.count(("create", "pool-1")) == 1 + 2  # provisioning, retries
    assert {b.pool_id for b in pools.bots.values()} == {"pool-1", "pool-2"}
    api.clock.advance(0.07)  # failing for three grace periods: not a passing hiccup
    await evaluate(api)
    # Discarded first, then each bot moved through staging: b1 into pool-2's free slot, b2
    # to a new pool (pool-1's number stays taken until the old pool is removed), made
    # only once b2's files are in it.
    calls = api.runtime.calls
    first = calls.index(("hand_over", "pools/pool-1/bots/b1>migrating/b1"))
    assert calls.index(("discard", "pool-1")) < first
    assert calls[first + 1] == ("hand_over", "migrating/b1>pools/pool-2/bots/b1")
    landed = calls.index(("hand_over", "migrating/b2>pools/pool-3/bots/b2"))
    assert landed < calls.index(("create", "pool-3"))
    assert bot_dirs(api, "b1") == ["pools/pool-2/bots/b1: trades of b1"]
    assert bot_dirs(api, "b2") == ["pools/pool-3/bots/b2: trades of b2"]
    assert (pools.bots["b1"].pool_id, pools.bots["b1"].port) == ("pool-2", 21003)
    assert (pools.bots["b2"].pool_id, pools.bots["b2"].port) == ("pool-3", 21004)
    assert not any(b.held for b in pools.bots.values())
    assert "pool-1" not in pools.pools and ("remove", "pool-1") in calls
    # The desired state of each pool now names its bots with their new ports.
    assert [(s.id, s.port) for s in pools.desired("pool-2").bots] == [("b3", 21002), ("b1", 21003)]
    status, body, _ = await api.call("GET", "/api/bots/b2", ALICE)
    assert status == 200 and body["poolId"] == "pool-3" and body["port"] == 21004
    moved = await events_of(api, "bot_moved", 2)
    assert [(e.bot_id, e.pool_id, e.detail["fromPool"]) for e in moved] == [
        ("b1", "pool-2", "pool-1"), ("b2", "pool-3", "pool-1")
    ]  # fmt: skip


async def test_an_evacuation_into_one_new_pool_that_cannot_move_a_bots_files(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2", POOL_START_ATTEMPTS="1", POOL_GRACE="1")
    for bot_id in ("b1", "b2", "b3", "b4"):
        await api.provision(ALICE, instanceId=bot_id)
    connect(api, "pool-2")
    obey_new_pools(api, monkeypatch)
    for bot_id in ("b1", "b2"):
        write_bot_dir(api, f"pools/pool-1/bots/{bot_id}")
    # b2's directory cannot be staged: a stale copy of it is in the way.
    write_bot_dir(api, "migrating/b2")
    pools = api.controller.pools.registry
    api.runtime.launches.pop("pool-1")
    api.runtime.broken.add("pool-1")
    await evaluate(api)  # one failed start
    api.clock.advance(0.01)
    await evaluate(api)
    # Both went to one new pool, whose agent can still prove who it is.
    assert {pools.bots[b].pool_id for b in ("b1", "b2")} == {"pool-3"}
    launch = api.runtime.launches["pool-3"]
    hello = Hello("pool-3", launch.token, "1", launch.capacity, launch.port_start)
    assert api.controller.pools.sessions.verify_hello(hello)
    # b2's directory stayed behind: it is not started without its trade database, and
    # the old pool (holding that directory) stays, draining, so nothing new lands in it.
    assert (pools.bots["b1"].run, pools.bots["b2"].run) == ("running", "stopped")
    assert not pools.bots["b2"].held
    assert [s.run for s in pools.desired("pool-3").bots] == ["running", "stopped"]
    assert bot_dirs(api, "b2") == [
        "migrating/b2: trades of b2",
        "pools/pool-1/bots/b2: trades of b2",
    ]
    assert "pool-1" in pools.pools and ("remove", "pool-1") not in api.runtime.calls
    status, body, _ = await api.call("GET", "/api/pool/status")
    assert status == 200 and {p["id"]: p["draining"] for p in body["pools"]} == {
        "pool-1": True, "pool-2": False, "pool-3": False
    }  # fmt: skip
    created = await api.provision(ALICE, instanceId="b5")
    assert created["poolId"] == "pool-4"
    [failed] = await events_of(api, "bot_move_failed", 1)
    assert (failed.bot_id, failed.pool_id, failed.detail["fromPool"]) == ("b2", "pool-3", "pool-1")


async def test_a_pool_the_runtime_cannot_inspect_never_stops_the_others_checks(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1")
    for bot_id in ("b1", "b2", "b3"):
        await api.provision(instanceId=bot_id)
    connect(api, "pool-3")
    report(api, "b3", "EXITED")
    api.runtime.launches.pop("pool-2")  # lost: to be made again
    inspect = api.runtime.inspect

    async def daemon_away_for_pool_1(pool_id: str) -> RuntimeState:
        if pool_id == "pool-1":  # whatever escaped a runtime's wrapping, not our error
            raise requests.exceptions.ConnectionError("Connection aborted.")
        return await inspect(pool_id)

    monkeypatch.setattr(api.runtime, "inspect", daemon_away_for_pool_1)
    result = await api.controller.monitor.evaluate()
    assert {"type": "pool_check_failed", "poolId": "pool-1",
            "error": "unexpected ConnectionError"} in result.issues  # fmt: skip
    assert {"action": "recreate", "poolId": "pool-2", "ok": True} in result.recovery_actions
    assert nonce(api, "b3") == 1  # the bots' checks ran too


async def test_a_slow_pool_recovery_holds_up_no_other_pools_checks(make_api: ApiFactory) -> None:
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1", HEALTH_CHECK_INTERVAL="20")
    for bot_id in ("b1", "b2"):
        await api.provision(instanceId=bot_id)
    connect(api, "pool-2")
    report(api, "b2", "EXITED")
    # pool-1 stopped, and its restart takes long (a container given 90 s to stop).
    api.runtime.exited.add("pool-1")
    restarted = api.runtime.gates["restart"] = asyncio.Event()
    monitor = api.controller.monitor
    loop = asyncio.create_task(monitor.run())
    try:
        async with asyncio.timeout(5):
            while nonce(api, "b2") == 0:  # pool-2's bot is restarted meanwhile
                await asyncio.sleep(0.01)
        assert "pool_recovering" in await evaluate(api)  # and again: nothing waits for it
        assert api.runtime.calls.count(("restart", "pool-1")) == 1  # one at a time
        restarted.set()
        async with asyncio.timeout(5):
            while "pool-1" in api.runtime.exited:
                await asyncio.sleep(0.01)
    finally:
        loop.cancel()
        await monitor.stop()


async def test_a_bot_reported_dead_is_restarted_at_once_without_judging_everything(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api()  # HEALTH_CHECK_INTERVAL: ten minutes
    for bot_id in ("b1", "b2"):
        await api.provision(instanceId=bot_id)
    connect(api)
    pools, monitor = api.controller.pools, api.controller.monitor
    statuses = [BotStatus("b1", "EXITED", since=5.0), BotStatus("b2", "RUNNING", pid=8)]
    # The heartbeat that reports the exit rings the alarm for b1 alone; the app's monitor
    # loop restarts it, and judges nothing else.
    await pools.heartbeat("pool-1", Heartbeat(1, 1, statuses, PoolStats()))
    async with asyncio.timeout(10):
        while nonce(api, "b1") == 0:
            await asyncio.sleep(0.01)
    assert bot(api).restarts.attempts == 1 and nonce(api, "b2") == 0
    assert monitor.last_report is None  # no whole evaluation ran


def over_limit(api: Api, bot_id: str, uss: int) -> None:
    live = api.controller.pools.registry.live["pool-1"]
    live.bots[bot_id] = BotStatus(bot_id, "RUNNING", pid=7, since=1.0, ping_ok=True, uss=uss)


async def test_a_bot_over_its_memory_limit_is_restarted_then_stopped_as_failed(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(
        BOT_MEMORY_LIMIT="100m", BOT_MEMORY_GRACE="10000", MAX_RESTART_ATTEMPTS="2",
        RESTART_BACKOFF="1", RESTART_COOLDOWN="1", RESTART_CYCLES="1",
    )  # fmt: skip
    await api.provision(instanceId="b1")
    await api.provision(instanceId="calm")
    connect(api)
    over_limit(api, "calm", 50 << 20)
    for attempt in (1, 2):
        over_limit(api, "b1", 150 << 20)
        await evaluate(api)
        assert nonce(api, "b1") == attempt - 1  # within the grace
        api.clock.advance(10)
        assert "bot_memory_limit" in await evaluate(api)
        assert nonce(api, "b1") == attempt and bot(api).restarts.memory == attempt
    events = await events_of(api, "bot_memory_limit", 2)
    assert [e.detail["action"] for e in events] == ["restart", "restart"]
    assert events[0].bot_id == "b1" and events[0].user_id == "admin"
    assert (events[0].detail["measuredBytes"], events[0].detail["limitBytes"]) == (
        150 << 20, 100 << 20,
    )  # fmt: skip
    restarts = await events_of(api, "bot_restart", 2)
    assert {e.reason for e in restarts} == {"bot_memory_limit"}

    # Its cycles spent, it still runs over its limit: it is stopped, and failed.
    over_limit(api, "b1", 150 << 20)
    await evaluate(api)
    api.clock.advance(10)
    assert "bot_failed" in await evaluate(api)
    b1 = bot(api)
    assert (b1.run, b1.restarts.failed, nonce(api, "b1")) == ("stopped", True, 2)
    [failed] = await events_of(api, "bot_failed", 1)
    assert failed.reason == "bot_memory_limit"
    assert (await events_of(api, "bot_memory_limit", 3))[2].detail["action"] == "stopped"
    assert nonce(api, "calm") == 0 and bot(api, "calm").run == "running"

    _status, view, _ = await api.call("GET", "/api/bots/b1")
    assert view["status"] == "failed" and view["restarts"]["memoryLimit"] == 2
    assert view["process"]["ownMemoryBytes"] == 150 << 20
    metrics = (await api.call("GET", "/metrics"))[2]
    assert 'ftpool_bot_memory_limit_total{action="restart"} 2.0' in metrics
    assert 'ftpool_bot_memory_limit_total{action="stopped"} 1.0' in metrics
    assert 'ftpool_bot_restarts_total{reason="bot_memory_limit"} 2.0' in metrics
    assert "ftpool_bots_over_memory_limit 1.0" in metrics  # b1's last report; not calm
    _status, pools, _ = await api.call("GET", "/api/pool/status")
    assert pools["pools"][0]["limits"] == {
        "mode": "measured", "oomGuard": None, "botMemoryLimitsBytes": 200 << 20,
        "botsOwnMemoryBytes": (150 + 50) << 20, "botCpuLimits": None, "busyPolicy": None,
        "deprioritised": [],
    }  # fmt: skip


async def test_a_fast_leak_is_restarted_at_its_next_heartbeat_not_after_its_grace(
    make_api: ApiFactory,
) -> None:
    # Each heartbeat that shows it over its limit and grown rings the monitor's alarm for
    # it; its growth since it went over would take it to twice its limit within the grace.
    api: Api = await make_api(BOT_MEMORY_LIMIT="100m", BOT_MEMORY_GRACE="30000")
    await api.provision(instanceId="b1")
    connect(api)
    pools, monitor = api.controller.pools, api.controller.monitor
    for seq, uss in enumerate((130, 160), start=1):
        status = BotStatus("b1", "RUNNING", pid=7, since=1.0, ping_ok=True, uss=uss << 20)
        await pools.heartbeat("pool-1", Heartbeat(seq, 1, [status], PoolStats()))
        if seq == 1:
            async with asyncio.timeout(10):  # judged: over its limit since now
                while monitor._bots.get("b1") is None:
                    await asyncio.sleep(0.01)
            assert nonce(api, "b1") == 0
            api.clock.advance(5)  # a sixth of the grace: its rate counts
    async with asyncio.timeout(10):
        while nonce(api, "b1") == 0:
            await asyncio.sleep(0.01)
    [event] = await events_of(api, "bot_memory_limit", 1)
    assert event.detail["rule"] == "growth" and event.detail["overSeconds"] == 5.0
    assert event.detail["measuredBytes"] == 160 << 20
    assert monitor.last_report is None  # no whole evaluation ran


async def test_an_evaluation_of_many_pools_hands_the_event_loop_back(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole evaluation of a large fleet takes seconds: heartbeats and users' requests
    get their turn every YIELD_EVERY pools and bots instead of waiting for all of it."""
    from controller.health import monitor

    monkeypatch.setattr(monitor, "YIELD_EVERY", 2)
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1")
    for n in range(6):
        await api.provision(instanceId=f"b{n}")
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    await api.controller.monitor.evaluate(wait=False)
    task.cancel()
    # 6 pools and 6 bots, a turn for others every 2 of them.
    assert turns - before >= 5


async def test_a_kernel_oom_kill_in_a_bots_cgroup_is_an_event_with_its_reason(
    make_api: ApiFactory,
) -> None:
    # A pool whose bots have cgroups of their own (agent/cgroups.py) reports each bot's
    # group's OOM kills; a rise is said (the bot's own exit only says SIGKILL), once.
    api: Api = await make_api(BOT_MEMORY_LIMIT="100m")
    await api.provision(instanceId="b1")
    await api.provision(instanceId="calm")
    connect(api)
    pools = api.controller.pools
    cgroup = PoolStats(1, 2, 0.5, True, "cgroup-v1")

    async def beat(seq: int, kills: int, state: str = "RUNNING") -> None:
        statuses = [
            BotStatus("b1", state, pid=7, since=1.0, ping_ok=True, oom_kills=kills),
            BotStatus("calm", "RUNNING", pid=8, since=1.0, ping_ok=True, oom_kills=0),
        ]
        await pools.heartbeat("pool-1", Heartbeat(seq, 1, statuses, cgroup))

    await beat(1, 0)
    await beat(2, 1, "EXITED")
    await beat(3, 1, "EXITED")  # the same kill: said once
    [event] = await events_of(api, "bot_memory_limit", 1)
    assert event.bot_id == "b1" and event.detail["action"] == "oom_kill"
    assert event.reason == "killed by the kernel at its cgroup's memory limit"
    assert (event.detail["limitBytes"], event.detail["kills"]) == (100 << 20, 1)
    metrics = (await api.call("GET", "/metrics"))[2]
    assert "ftpool_bot_oom_kills_total 1.0" in metrics
    assert 'ftpool_pools_by_limits_mode{mode="cgroup-v1"} 1.0' in metrics
    _status, view, _ = await api.call("GET", "/api/pool/status")
    assert view["pools"][0]["limits"]["mode"] == "cgroup-v1"
    assert view["pools"][0]["limits"]["oomGuard"] is True
    # The desired state carries each bot's limit for the pool's kernel.
    desired = pools.registry.desired("pool-1")
    assert {b.id: b.memory for b in desired.bots} == {"b1": 100 << 20, "calm": 100 << 20}
