"""Per-user quotas and per-bot limits through the real app (a runtime that runs nothing)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support import ADMIN_TOKEN
from tests.unit.controller.apps import ALICE, BOB, Api, ApiFactory


async def provision(api: Api, token: str, **body: Any) -> tuple[int, Any]:
    return await api.try_provision(token, **body)


async def test_a_users_bot_past_their_quota_is_refused_with_a_clear_error(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(USER_MAX_BOTS="2")
    for name in ("a1", "a2"):
        assert (await provision(api, ALICE, instanceId=name))[0] == 201
    status, body = await provision(api, ALICE, instanceId="a3")
    assert status == 403, body
    assert body["success"] is False and "quota is 2" in body["error"]
    assert body["quota"] == {"maxBots": 2, "bots": 2}
    assert "a3" not in api.controller.pools.registry.bots
    # Another user's quota is their own; the admin's bots count against none.
    assert (await provision(api, BOB, instanceId="b1"))[0] == 201
    for name in ("x1", "x2", "x3"):
        assert (await provision(api, ADMIN_TOKEN, instanceId=name))[0] == 201
    # A deleted bot frees its place in the quota once it is gone.
    registry = api.controller.pools.registry
    await registry.apply(await api.controller.store.remove_bot("a2"))
    assert (await provision(api, ALICE, instanceId="a4"))[0] == 201


async def test_concurrent_provisions_never_pass_the_quota_together(make_api: ApiFactory) -> None:
    api: Api = await make_api(USER_MAX_BOTS="3")
    results = await asyncio.gather(*(provision(api, ALICE, instanceId=f"c{i}") for i in range(8)))
    assert sorted(status for status, _ in results) == [201] * 3 + [403] * 5
    alice = [b for b in api.controller.pools.registry.bots.values() if b.user_id == "alice"]
    assert len(alice) == 3


async def test_the_admin_sets_a_users_own_quota(make_api: ApiFactory) -> None:
    api: Api = await make_api(USER_MAX_BOTS="1")
    assert (await provision(api, ALICE, instanceId="a1"))[0] == 201
    assert (await provision(api, ALICE, instanceId="a2"))[0] == 403
    status, body, _ = await api.call("GET", "/api/users/alice/quota", ALICE)
    assert status == 200
    assert body == {"success": True, "userId": "alice", "maxBots": 1, "bots": 1, "own": None,
                    "default": 1, "maxMemoryBytes": None, "memoryBytes": 0, "maxCpu": None,
                    "cpu": 0.0, "ownCpu": None, "defaultCpu": None}  # fmt: skip

    status, body, _ = await api.call("PUT", "/api/users/alice/quota", json={"maxBots": 3})
    assert status == 200 and (body["maxBots"], body["own"]) == (3, 3)
    assert (await provision(api, ALICE, instanceId="a2"))[0] == 201
    assert (await provision(api, ALICE, instanceId="a3"))[0] == 201
    assert (await provision(api, ALICE, instanceId="a4"))[0] == 403
    # 0 is no limit; null gives the default back.
    await api.call("PUT", "/api/users/alice/quota", json={"maxBots": 0})
    assert (await provision(api, ALICE, instanceId="a4"))[0] == 201
    status, body, _ = await api.call("PUT", "/api/users/alice/quota", json={"maxBots": None})
    assert status == 200 and (body["maxBots"], body["own"], body["bots"]) == (1, None, 4)
    assert (await provision(api, ALICE, instanceId="a5"))[0] == 403
    # The own quota survives a new controller over the same store.
    await api.call("PUT", "/api/users/bob/quota", json={"maxBots": 5})
    again: Api = await make_api(USER_MAX_BOTS="1")
    status, body, _ = await again.call("GET", "/api/users/bob/quota")
    assert (body["maxBots"], body["own"]) == (5, 5)


async def test_quota_routes_check_who_asks_and_what_is_sent(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    status, body, _ = await api.call("GET", "/api/users/alice/quota", ALICE)
    assert status == 200 and body["maxBots"] is None  # USER_MAX_BOTS=0: no limit
    assert (await api.call("GET", "/api/users/alice/quota", BOB))[0] == 403
    assert (await api.call("PUT", "/api/users/alice/quota", ALICE, json={"maxBots": 9}))[0] == 403
    for bad in ({}, {"maxBots": -1}, {"maxBots": "3"}, {"maxBots": True}, {"maxBots": 2**40},
                {"maxBots": 1, "x": 1}, [1]):  # fmt: skip
        status, body, _ = await api.call("PUT", "/api/users/alice/quota", json=bad)
        assert status == 400 and body["success"] is False, bad
    status, body, _ = await api.call("PUT", "/api/users/bad%20id/quota", json={"maxBots": 1})
    assert status == 400


async def test_a_users_memory_budget_bounds_the_sum_of_their_bots_limits(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(BOT_MEMORY_LIMIT="256m")
    status, body, _ = await api.call("PUT", "/api/users/alice/quota", json={"maxMemory": "1g"})
    assert status == 200 and (body["maxMemoryBytes"], body["memoryBytes"]) == (1 << 30, 0)
    assert body["maxBots"] is None  # the bot quota untouched
    assert (await provision(api, ALICE, instanceId="a1"))[0] == 201  # the default: 256 MiB
    assert (await provision(api, ALICE, instanceId="a2", limits={"memory": "128m"}))[0] == 201
    # The admin's own bots count against no budget.
    assert (await provision(api, ADMIN_TOKEN, instanceId="x1"))[0] == 201
    for name in ("a3", "a4"):
        assert (await provision(api, ALICE, instanceId=name))[0] == 201
    # 896 MiB taken: 192 more would pass the budget, 128 fit it exactly.
    status, body = await provision(api, ALICE, instanceId="a5", limits={"memory": "192m"})
    assert status == 403, body
    assert "budget" in body["error"]
    assert body["quota"] == {"maxMemoryBytes": 1 << 30, "memoryBytes": 896 << 20,
                             "needBytes": 192 << 20}  # fmt: skip
    assert "a5" not in api.controller.pools.registry.bots
    assert (await provision(api, ALICE, instanceId="a5", limits={"memory": "128m"}))[0] == 201
    status, body, _ = await api.call("GET", "/api/users/alice/quota", ALICE)
    assert (body["maxMemoryBytes"], body["memoryBytes"], body["bots"]) == (1 << 30, 1 << 30, 5)
    # null: no budget again.
    status, body, _ = await api.call("PUT", "/api/users/alice/quota", json={"maxMemory": None})
    assert status == 200 and body["maxMemoryBytes"] is None
    assert (await provision(api, ALICE, instanceId="a6"))[0] == 201


async def test_concurrent_provisions_never_pass_the_memory_budget_together(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(BOT_MEMORY_LIMIT="256m")
    await api.call("PUT", "/api/users/alice/quota", json={"maxMemory": "768m"})
    results = await asyncio.gather(*(provision(api, ALICE, instanceId=f"c{i}") for i in range(8)))
    assert sorted(status for status, _ in results) == [201] * 3 + [403] * 5
    alice = [b for b in api.controller.pools.registry.bots.values() if b.user_id == "alice"]
    assert len(alice) == 3


async def test_with_a_budget_a_bot_needs_a_memory_limit(make_api: ApiFactory) -> None:
    api: Api = await make_api()  # no BOT_MEMORY_LIMIT, no pool limit: bots have none
    await api.call("PUT", "/api/users/alice/quota", json={"maxMemory": 1 << 30})
    status, body = await provision(api, ALICE, instanceId="a1")
    assert status == 403 and "need a memory limit" in body["error"]
    assert (await provision(api, ALICE, instanceId="a1", limits={"memory": "512m"}))[0] == 201


async def test_memory_budget_bodies_are_checked(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    for bad in ({"maxMemory": "lots"}, {"maxMemory": -1}, {"maxMemory": True},
                {"maxMemory": "1m"}, {"maxMemory": 1, "maxBots": 1}):  # fmt: skip
        status, body, _ = await api.call("PUT", "/api/users/alice/quota", json=bad)
        assert status == 400 and body["success"] is False, bad
    status, _, _ = await api.call("PUT", "/api/users/alice/quota", ALICE,
                                  json={"maxMemory": "4g"})  # fmt: skip
    assert status == 403
    status, body, _ = await api.call("PUT", "/api/users/alice/quota",
                                     json={"maxBots": 2, "maxMemory": "2g"})  # fmt: skip
    assert status == 200 and (body["maxBots"], body["maxMemoryBytes"]) == (2, 2 << 30)


async def test_a_bots_memory_limit_defaults_from_the_pool_limit(make_api: ApiFactory) -> None:
    api: Api = await make_api(POOL_MEMORY_LIMIT="1g", MAX_BOTS_PER_CONTAINER="4")
    status, body = await provision(api, ALICE, instanceId="m1")
    assert status == 201 and body["limits"] == {"memoryBytes": 256 << 20, "cpu": None}
    status, body, _ = await api.call("GET", "/api/bots/m1", ALICE)
    assert body["limits"] == {"memoryBytes": 256 << 20, "own": False, "cpu": None,
                              "cpuOwn": False, "cpuEnforcement": None}  # fmt: skip
    assert body["restarts"]["memoryLimit"] == 0

    # A user may ask for less than the default, not more; the admin for anything.
    status, body = await provision(api, ALICE, instanceId="m2", limits={"memory": "128m"})
    assert status == 201 and body["limits"] == {"memoryBytes": 128 << 20, "cpu": None}
    status, body = await provision(api, ALICE, instanceId="m3", limits={"memory": "1g"})
    assert status == 403 and "at most" in body["error"]
    # More than a pool's memory fits no pool: refused, even for the admin.
    status, body = await provision(api, ADMIN_TOKEN, instanceId="m4", limits={"memory": 2 << 30})
    assert status == 400, body
    assert "larger than a pool" in body["error"]
    status, body = await provision(api, ADMIN_TOKEN, instanceId="m4", limits={"memory": "512m"})
    assert status == 201 and body["limits"] == {"memoryBytes": 512 << 20, "cpu": None}
    # pool-1 holds 256 + 128 + 512 MiB of its 1 GiB: the next default bot needs a new pool.
    status, body = await provision(api, ALICE, instanceId="m5")
    assert status == 201 and body["poolId"] == "pool-2"
    views = (await api.call("GET", "/api/bots"))[1]["bots"]
    assert {b["instanceId"]: (b["poolId"], b["limits"]["memoryBytes"]) for b in views} == {
        "m1": ("pool-1", 256 << 20), "m2": ("pool-1", 128 << 20),
        "m4": ("pool-1", 512 << 20), "m5": ("pool-2", 256 << 20),
    }  # fmt: skip


async def test_bad_limits_are_refused(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    for bad in ("512m", {"memory": "lots"}, {"memory": -5}, {"memory": "1m"},
                {"memory": True}, {"cpu": "1"}, {"cpu": 0}, {"cpu": -1}, {"cpu": 0.001},
                {"cpu": 2000}, {"cpu": True}, {"memory": "512m", "disk": 1}):  # fmt: skip
        status, body = await provision(api, ALICE, instanceId="bad", limits=bad)
        assert status == 400 and body["success"] is False, bad
    # Without BOT_MEMORY_LIMIT or POOL_MEMORY_LIMIT bots have no limit unless given one.
    status, body = await provision(api, ALICE, instanceId="free")
    assert status == 201 and body["limits"] == {"memoryBytes": None, "cpu": None}
    status, body = await provision(api, ALICE, instanceId="own", limits={"memory": "3g"})
    assert status == 201 and body["limits"] == {"memoryBytes": 3 << 30, "cpu": None}


async def test_bot_memory_limit_off_leaves_bots_without_one_beside_a_pool_limit(
    make_api: ApiFactory,
) -> None:
    """BOT_MEMORY_LIMIT=off: no measured limit (only the kernel acts, at the pool's), where
    POOL_MEMORY_LIMIT would otherwise give every bot its share."""
    api: Api = await make_api(POOL_MEMORY_LIMIT="1500m", BOT_MEMORY_LIMIT="off")
    assert api.controller.settings.default_bot_memory == 0
    status, body = await provision(api, ALICE, instanceId="free")
    assert status == 201 and body["limits"] == {"memoryBytes": None, "cpu": None}
    shared = await make_api(POOL_MEMORY_LIMIT="1500m")
    assert shared.controller.settings.default_bot_memory == 150 << 20  # 1500m / 10 slots
