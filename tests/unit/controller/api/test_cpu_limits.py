"""Per-bot CPU limits, users' CPU quotas and the busy state of bots through the real app (a
runtime that runs nothing; heartbeats as an agent would send them)."""

from __future__ import annotations

import asyncio
from typing import Any

from common.protocol import BotStatus, Heartbeat, PoolStats
from tests.support import ADMIN_TOKEN
from tests.unit.controller.apps import ALICE, BOB, Api, ApiFactory, connect, events_of


async def provision(api: Api, token: str, **body: Any) -> tuple[int, Any]:
    return await api.try_provision(token, **body)


async def test_a_bots_own_cpu_limit_reaches_its_view_and_its_pools_desired_state(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(BOT_CPU_LIMIT="0.5")
    status, body = await provision(api, ALICE, instanceId="own", limits={"cpu": 0.25})
    assert status == 201 and body["limits"] == {"memoryBytes": None, "cpu": 0.25}
    assert (await provision(api, ALICE, instanceId="default"))[0] == 201
    # A user may ask for less than BOT_CPU_LIMIT, never more; the admin for anything.
    status, body = await provision(api, ALICE, instanceId="more", limits={"cpu": 1})
    assert status == 403 and "at most 0.5 CPUs" in body["error"], body
    status, body = await provision(api, ADMIN_TOKEN, instanceId="big", limits={"cpu": 2.5})
    assert status == 201 and body["limits"]["cpu"] == 2.5
    views = {b["instanceId"]: b for b in (await api.call("GET", "/api/bots"))[1]["bots"]}
    assert {k: (v["limits"]["cpu"], v["limits"]["cpuOwn"]) for k, v in views.items()} == {
        "own": (0.25, True), "default": (0.5, False), "big": (2.5, True),
    }  # fmt: skip
    # Not heard from yet: how it is enforced is not known, nor what it uses.
    assert views["own"]["limits"]["cpuEnforcement"] == "none"
    assert views["own"]["usage"]["cpu"] == {"percent": None, "limitPercent": 25.0,
                                            "ofLimitPercent": None}  # fmt: skip
    desired = api.controller.pools.registry.desired("pool-1")
    assert {b.id: b.cpu for b in desired.bots} == {"own": 0.25, "default": 0.5, "big": 2.5}
    # The wire carries it to the agent; an older agent ignores the key.
    assert desired.bots[0].to_wire()["cpu"] == 0.25
    # The store keeps it across a controller over the same store.
    again: Api = await make_api(BOT_CPU_LIMIT="0.5")
    assert again.controller.pools.registry.bots["own"].cpu_limit == 0.25
    _status, status_view, _ = await api.call("GET", "/api/pool/status")
    assert status_view["pools"][0]["limits"]["botCpuLimits"] == 3.25


async def test_without_a_default_a_bot_has_no_cpu_limit_unless_given_one(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api()
    status, body = await provision(api, ALICE, instanceId="free")
    assert status == 201 and body["limits"]["cpu"] is None
    # Without BOT_CPU_LIMIT a user may set one: it only limits their own bot.
    status, body = await provision(api, ALICE, instanceId="capped", limits={"cpu": 3})
    assert status == 201 and body["limits"]["cpu"] == 3
    desired = api.controller.pools.registry.desired("pool-1")
    assert "cpu" not in desired.bots[0].to_wire()  # none: nothing sent


async def test_bad_cpu_limits_and_quotas_are_refused_with_clear_errors(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api()
    for bad, says in ((0, "from 0.01"), (-1, "from 0.01"), (0.001, "from 0.01"),
                      (1025, "to 1024"), ("1", "a number"), (True, "a number"),
                      ([1], "a number")):  # fmt: skip
        status, body = await provision(api, ALICE, instanceId="bad", limits={"cpu": bad})
        assert status == 400 and says in body["error"], (bad, body)
    assert "bad" not in api.controller.pools.registry.bots
    for bad in ({"maxCpu": -1}, {"maxCpu": "2"}, {"maxCpu": True}, {"maxCpu": 5000}):
        status, body, _ = await api.call("PUT", "/api/users/alice/quota", json=bad)
        assert status == 400 and "maxCpu" in body["error"], bad
    status, _, _ = await api.call("PUT", "/api/users/alice/quota", ALICE, json={"maxCpu": 9})
    assert status == 403


async def test_a_users_cpu_quota_bounds_the_sum_of_their_bots_cpu_limits(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(BOT_CPU_LIMIT="0.5", USER_MAX_CPU="1")
    status, body, _ = await api.call("GET", "/api/users/alice/quota", ALICE)
    assert (body["maxCpu"], body["cpu"], body["ownCpu"], body["defaultCpu"]) == (1, 0, None, 1)
    assert (await provision(api, ALICE, instanceId="a1"))[0] == 201  # the default: 0.5
    assert (await provision(api, ALICE, instanceId="a2", limits={"cpu": 0.3}))[0] == 201
    # 0.8 taken: 0.3 more would pass the quota of 1, 0.2 fits it exactly.
    status, body = await provision(api, ALICE, instanceId="a3", limits={"cpu": 0.3})
    assert status == 403 and "quota of 1" in body["error"], body
    assert body["quota"] == {"maxCpu": 1.0, "cpu": 0.8, "needCpu": 0.3}
    assert "a3" not in api.controller.pools.registry.bots
    assert (await provision(api, ALICE, instanceId="a3", limits={"cpu": 0.2}))[0] == 201
    # Another user's quota is their own; the admin's own bots count against none.
    assert (await provision(api, BOB, instanceId="b1"))[0] == 201
    for name in ("x1", "x2", "x3"):
        assert (await provision(api, ADMIN_TOKEN, instanceId=name))[0] == 201
    # The admin gives alice her own quota; 0 is none for her; null is the default again.
    status, body, _ = await api.call("PUT", "/api/users/alice/quota", json={"maxCpu": 1.5})
    assert status == 200 and (body["maxCpu"], body["ownCpu"], body["cpu"]) == (1.5, 1.5, 1.0)
    assert (await provision(api, ALICE, instanceId="a4"))[0] == 201
    assert (await provision(api, ALICE, instanceId="a5"))[0] == 403
    await api.call("PUT", "/api/users/alice/quota", json={"maxCpu": 0})
    assert (await provision(api, ALICE, instanceId="a5"))[0] == 201
    status, body, _ = await api.call("PUT", "/api/users/alice/quota", json={"maxCpu": None})
    assert status == 200 and (body["maxCpu"], body["ownCpu"], body["cpu"]) == (1, None, 2.0)
    assert (await provision(api, ALICE, instanceId="a6"))[0] == 403
    # The own quota survives a new controller over the same store.
    await api.call("PUT", "/api/users/bob/quota", json={"maxCpu": 4})
    again: Api = await make_api(BOT_CPU_LIMIT="0.5", USER_MAX_CPU="1")
    status, body, _ = await again.call("GET", "/api/users/bob/quota")
    assert (body["maxCpu"], body["ownCpu"], body["cpu"]) == (4, 4, 0.5)


async def test_concurrent_provisions_never_pass_the_cpu_quota_together(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(BOT_CPU_LIMIT="0.25")
    await api.call("PUT", "/api/users/alice/quota", json={"maxCpu": 0.75})
    results = await asyncio.gather(*(provision(api, ALICE, instanceId=f"c{i}") for i in range(8)))
    assert sorted(status for status, _ in results) == [201] * 3 + [403] * 5
    alice = [b for b in api.controller.pools.registry.bots.values() if b.user_id == "alice"]
    assert len(alice) == 3


async def test_with_a_cpu_quota_a_bot_needs_a_cpu_limit(make_api: ApiFactory) -> None:
    api: Api = await make_api(USER_MAX_CPU="2")  # no BOT_CPU_LIMIT: bots have none
    status, body = await provision(api, ALICE, instanceId="a1")
    assert status == 403 and "need a CPU limit" in body["error"], body
    assert (await provision(api, ALICE, instanceId="a1", limits={"cpu": 1.5}))[0] == 201


async def test_a_busy_bots_state_shows_against_its_limits_with_events_and_metrics(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(BOT_CPU_LIMIT="0.5", BOT_MEMORY_LIMIT="100m")
    await api.provision(instanceId="spin")
    await api.provision(instanceId="calm")
    connect(api)
    pools = api.controller.pools
    stats = PoolStats(1 << 30, 0, 60.0, None, None, "idle")

    async def beat(seq: int, since: float | None, pid: int = 7) -> None:
        statuses = [
            BotStatus("spin", "RUNNING", pid=pid, since=1.0, ping_ok=True, cpu=49.5,
                      uss=50 << 20, nice=19 if since else 0, busy_since=since),
            BotStatus("calm", "RUNNING", pid=8, since=1.0, ping_ok=True, cpu=2.0, uss=25 << 20),
        ]  # fmt: skip
        await pools.heartbeat("pool-1", Heartbeat(seq, 1, statuses, stats))

    await beat(1, None)
    await beat(2, 1000.0)
    await beat(3, 1000.0)  # still: said once
    [event] = await events_of(api, "bot_deprioritised", 1)
    assert (event.bot_id, event.pool_id, event.user_id) == ("spin", "pool-1", "admin")
    assert event.detail["policy"] == "idle" and event.detail["since"] == 1000.0
    assert event.detail["nice"] == 19
    _status, view, _ = await api.call("GET", "/api/bots/spin")
    assert view["busy"] == {"deprioritised": True, "since": 1000.0, "policy": "idle"}
    assert view["limits"]["cpuEnforcement"] == "priority"  # no cgroups: the busy rule
    assert view["usage"] == {
        "cpu": {"percent": 49.5, "limitPercent": 50.0, "ofLimitPercent": 99.0},
        "memory": {"ownBytes": 50 << 20, "limitBytes": 100 << 20, "ofLimitPercent": 50.0},
    }
    _status, calm, _ = await api.call("GET", "/api/bots/calm")
    assert calm["busy"] == {"deprioritised": False, "since": None, "policy": "idle"}
    _status, located, _ = await api.call("GET", "/api/pool/bot/spin")
    assert located["busy"]["deprioritised"] is True and located["usage"] == view["usage"]
    _status, status_view, _ = await api.call("GET", "/api/pool/status")
    limits = status_view["pools"][0]["limits"]
    assert (limits["busyPolicy"], limits["deprioritised"]) == ("idle", ["spin"])
    metrics = (await api.call("GET", "/metrics"))[2]
    assert 'ftpool_bots_deprioritised{policy="idle"} 1.0' in metrics
    assert 'ftpool_bots_deprioritised{policy="nice"} 0.0' in metrics
    assert "ftpool_bot_deprioritisations_total 1.0" in metrics
    assert "ftpool_bots_at_cpu_limit 1.0" in metrics  # 49.5 of 50 %

    await beat(4, None)  # calm for a window: its priority back
    [back] = await events_of(api, "bot_reprioritised", 1)
    assert back.bot_id == "spin" and back.detail["policy"] == "idle"
    _status, view, _ = await api.call("GET", "/api/bots/spin")
    assert view["busy"]["deprioritised"] is False
    # A process that ended took its state with it: no second event for a new pid.
    await beat(5, 2000.0)
    await beat(6, None, pid=9)
    await events_of(api, "bot_deprioritised", 2)
    assert len([e for e in await api.controller.events.recent(100)
                if e.type == "bot_reprioritised"]) == 1  # fmt: skip


async def test_a_pool_with_cgroups_enforces_cpu_limits_by_its_kernel(make_api: ApiFactory) -> None:
    api: Api = await make_api(BOT_CPU_LIMIT="0.5")
    await api.provision(instanceId="b1")
    connect(api)
    status = BotStatus("b1", "RUNNING", pid=7, since=1.0, ping_ok=True, cpu=10.0)
    await api.controller.pools.heartbeat(
        "pool-1", Heartbeat(1, 1, [status], PoolStats(1, 2, 0.5, True, "cgroup-v1"))
    )
    _status, view, _ = await api.call("GET", "/api/bots/b1")
    assert view["limits"]["cpuEnforcement"] == "cgroup"
    # An agent from before the busy state says nothing of it: not known, not "no".
    assert view["busy"] == {"deprioritised": None, "since": None, "policy": None}
