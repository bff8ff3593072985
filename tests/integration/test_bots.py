"""Provisioning and the bot lifecycle against real supervisord pools and real agents."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from tests.support import (
    fakebot_pids,
    is_bot,
    pid_alive,
    processes_under,
    user_token,
    wait_for,
)

pytestmark = pytest.mark.integration

ALICE = user_token("alice")
BOB = user_token("bob")


async def test_layout_status_shape_bot_info_and_log(harness_factory):
    base = 22000
    h = await harness_factory(MAX_BOTS_PER_CONTAINER="3", POOL_BASE_PORT=str(base))
    for name in ("lay-1", "lay-2", "lay-3"):
        created = await h.provision(instanceId=name)
        assert created["success"] is True and created["poolId"] == "pool-1"
    # The seed's provisioning route is an alias of POST /api/bots.
    status, created = await h.call("POST", "/api/provision-enhanced", json={"instanceId": "lay-4"})
    assert status == 201, created
    placed = (created["instanceId"], created["poolId"], created["port"])
    assert placed == ("lay-4", "pool-2", base + 3)
    await asyncio.gather(*(h.wait_running(f"lay-{i}") for i in range(1, 5)))

    bots = await h.bots()
    placement = {b["instanceId"]: (b["poolId"], b["port"]) for b in bots.values()}
    assert placement == {
        "lay-1": ("pool-1", base),
        "lay-2": ("pool-1", base + 1),
        "lay-3": ("pool-1", base + 2),
        "lay-4": ("pool-2", base + 3),
    }
    view = bots["lay-2"]
    assert view["userId"] == "admin" and view["strategy"] == "SampleStrategy"
    assert view["desired"] == "running" and view["status"] == "running"
    assert view["process"]["state"] == "RUNNING" and view["process"]["ping"]["ok"] is True
    assert len({b["process"]["pid"] for b in bots.values()}) == 4

    status, st = await h.call("GET", "/api/pool/status")
    assert status == 200
    assert st["success"] is True and st["poolMode"] is True
    assert (st["totalPools"], st["totalBots"]) == (2, 4)
    p1, p2 = st["pools"]
    seed_keys = {
        "id", "containerName", "status", "botsCount", "capacity", "utilizationPercent", "bots",
    }  # fmt: skip
    assert seed_keys <= p1.keys() and seed_keys <= p2.keys()
    assert {k: p1[k] for k in seed_keys} == {
        "id": "pool-1", "containerName": "freqtrade-pool-pool-1", "status": "running",
        "botsCount": 3, "capacity": 3, "utilizationPercent": 100,
        "bots": ["lay-1", "lay-2", "lay-3"],
    }  # fmt: skip
    assert {k: p2[k] for k in seed_keys} == {
        "id": "pool-2", "containerName": "freqtrade-pool-pool-2", "status": "running",
        "botsCount": 1, "capacity": 3, "utilizationPercent": 33, "bots": ["lay-4"],
    }  # fmt: skip
    assert p2["ports"] == {"start": base + 3, "end": base + 5}
    health = st["health"]
    assert health["status"] == "healthy"
    assert health["pools"]["total"] == 2 and health["pools"]["healthy"] == 2
    assert health["bots"]["total"] == 4 and health["bots"]["healthy"] == 4

    status, info = await h.call("GET", "/api/pool/bot/lay-4")
    assert status == 200
    assert info["success"] is True and info["instanceId"] == "lay-4"
    assert info["isPooled"] is True and info["mode"] == "pooled"
    assert info["poolId"] == "pool-2" and info["containerName"] == "freqtrade-pool-pool-2"
    conn = info["connection"]
    assert conn == {"host": "127.0.0.1", "port": base + 3, "url": f"http://127.0.0.1:{base + 3}"}
    # The connection really is the bot (its unauthenticated ping, on loopback).
    async with h.http.get(conn["url"] + "/api/v1/ping") as r:
        assert await r.json() == {"status": "pong"}

    status, text = await h.call("GET", "/api/pool/bot/lay-1/log")
    assert status == 200
    assert f"fakebot lay-1 on {base}" in text.decode()
    status, text = await h.call("GET", "/api/pool/bot/lay-4/log?bytes=4096")
    assert status == 200 and f"fakebot lay-4 on {base + 3}" in text.decode()

    # Admin-only routes refuse users; a user may look up only their own bot.
    for method, path in [("GET", "/api/pool/status"), ("POST", "/api/pool/health-check"),
                         ("POST", "/api/pool/cleanup"), ("GET", "/api/agents")]:  # fmt: skip
        status, body = await h.call(method, path, ALICE)
        assert status == 403 and body["success"] is False, (path, body)
    assert (await h.call("GET", "/api/pool/bot/lay-1", ALICE))[0] == 403
    assert (await h.call("GET", "/api/pool/bot/lay-1/log", ALICE))[0] == 403
    assert (await h.call("GET", "/api/pool/status", None))[0] == 401

    # No response carries a bot's credentials.
    config = json.loads((h.pool_dir("pool-1") / "bots" / "lay-1" / "config.json").read_text())
    api = config["api_server"]
    secrets = [api["password"], api["jwt_secret_key"], api["ws_token"]]
    for path in ["/api/pool/status", "/api/bots", "/api/bots/lay-1", "/api/pool/bot/lay-1",
                 "/api/agents", "/api/bots/lay-1/show_config"]:  # fmt: skip
        async with h.http.get(h.base + path, headers=h.headers()) as r:
            raw = await r.text() + json.dumps(dict(r.headers))
        assert r.status == 200, path
        assert not any(s in raw for s in secrets), path


async def test_concurrent_provisions_get_distinct_ports(harness_factory):
    base = 22100
    h = await harness_factory(MAX_BOTS_PER_CONTAINER="3", POOL_BASE_PORT=str(base))
    names = [f"con-{i}" for i in range(10)]
    created = await asyncio.gather(*(h.provision(instanceId=n) for n in names))
    ports = [c["port"] for c in created]
    assert sorted(ports) == list(range(base, base + 10))
    assert Counter(c["poolId"] for c in created) == {
        "pool-1": 3, "pool-2": 3, "pool-3": 3, "pool-4": 1,
    }  # fmt: skip
    for c in created:
        num = int(c["poolId"].split("-")[1])
        assert base + (num - 1) * 3 <= c["port"] < base + num * 3, c

    await asyncio.gather(*(h.wait_running(n, timeout=60) for n in names))
    pids = await h.pids()
    assert len(set(pids.values())) == 10 and all(pids.values())
    for c in created:
        bot_dir = h.pool_dir(c["poolId"]) / "bots" / c["instanceId"]
        assert fakebot_pids(bot_dir) == [pids[c["instanceId"]]]
    # Each bot answers on its own port, through the proxy.
    for n in names:
        status, cfg = await h.call("GET", f"/api/bots/{n}/show_config")
        assert status == 200 and cfg["bot_name"] == n and cfg["pid"] == pids[n]


@pytest.mark.parametrize("launch", ["exec", "preload"])
async def test_lifecycle_acts_on_exactly_one_bot(harness_factory, launch):
    # Preloaded bots (forked, stood in for by launchers) must behave as plain ones do.
    base = 22200
    h = await harness_factory(
        MAX_BOTS_PER_CONTAINER="3", POOL_BASE_PORT=str(base), BOT_LAUNCH=launch,
        PRELOAD_MODULES="aiohttp,yarl",
    )  # fmt: skip
    pids = await h.provision_running("lc-a", "lc-b", "lc-c", token=ALICE)
    pool = h.pool_dir("pool-1")

    # Another user can neither see nor touch alice's bots.
    status, listing = await h.call("GET", "/api/bots", BOB)
    assert status == 200 and listing["bots"] == []
    status, listing = await h.call("GET", "/api/bots", ALICE)
    assert [b["instanceId"] for b in listing["bots"]] == ["lc-a", "lc-b", "lc-c"]
    for method, path in [
        ("GET", "/api/bots/lc-a"), ("POST", "/api/bots/lc-a/stop"),
        ("POST", "/api/bots/lc-a/start"), ("POST", "/api/bots/lc-a/restart"),
        ("DELETE", "/api/bots/lc-a"), ("GET", "/api/bots/lc-a/ping"),
        ("GET", "/api/pool/bot/lc-a"),
    ]:  # fmt: skip
        status, body = await h.call(method, path, BOB)
        assert status == 403 and body["success"] is False, (method, path, body)
    assert await h.pids() == pids

    # stop: only lc-b stops.
    status, body = await h.call("POST", "/api/bots/lc-b/stop", ALICE)
    assert status == 200 and body["desired"] == "stopped" and body["action"] == "stop"

    async def b_stopped():
        return (await h.bots())["lc-b"]["process"]["state"] == "STOPPED"

    await wait_for(b_stopped)
    await wait_for(lambda: not pid_alive(pids["lc-b"]))
    now = await h.pids()
    assert now["lc-b"] is None
    assert (now["lc-a"], now["lc-c"]) == (pids["lc-a"], pids["lc-c"])
    assert pid_alive(pids["lc-a"]) and pid_alive(pids["lc-c"])
    assert (await h.bot("lc-b"))["desired"] == "stopped"

    # start: only lc-b starts, as a new process.
    status, body = await h.call("POST", "/api/bots/lc-b/start", ALICE)
    assert status == 200 and body["desired"] == "running"
    await h.wait_running("lc-b")
    now = await h.pids()
    assert now["lc-b"] not in (None, pids["lc-b"])
    assert (now["lc-a"], now["lc-c"]) == (pids["lc-a"], pids["lc-c"])
    pids = now

    # restart: only lc-a gets a new process.
    status, body = await h.call("POST", "/api/bots/lc-a/restart", ALICE)
    assert status == 200 and body["action"] == "restart"

    async def a_restarted():
        proc = (await h.bots())["lc-a"]["process"]
        return proc["pid"] not in (None, pids["lc-a"]) and proc["state"] == "RUNNING"

    await wait_for(a_restarted)
    await h.wait_running("lc-a")
    now = await h.pids()
    assert not pid_alive(pids["lc-a"])
    assert (now["lc-b"], now["lc-c"]) == (pids["lc-b"], pids["lc-c"])
    status, cfg = await h.call("GET", "/api/bots/lc-a/show_config", ALICE)
    assert status == 200 and cfg["pid"] == now["lc-a"]
    pids = now

    # delete (default): archived, slot freed, the others untouched.
    status, body = await h.call("DELETE", "/api/bots/lc-c", ALICE)
    assert status == 200, body
    assert body == {"success": True, "instanceId": "lc-c", "status": "deleted", "archived": True}
    assert not pid_alive(pids["lc-c"])
    assert (await h.call("GET", "/api/bots/lc-c", ALICE))[0] == 404
    assert not (pool / "bots" / "lc-c").exists()
    archived = list((pool / "archive").glob("lc-c-*"))
    assert len(archived) == 1 and (archived[0] / "config.json").is_file()
    now = await h.pids()
    assert now == {"lc-a": pids["lc-a"], "lc-b": pids["lc-b"]}

    # The freed slot (and port) is reused by the next bot.
    created = await h.provision(ALICE, instanceId="lc-d")
    assert (created["poolId"], created["port"]) == ("pool-1", base + 2)
    await h.wait_running("lc-d")
    status, cfg = await h.call("GET", "/api/bots/lc-d/show_config", ALICE)
    assert status == 200 and cfg["bot_name"] == "lc-d"
    d_pid = (await h.pids())["lc-d"]

    # delete with purge: the bot's directory is gone, not archived.
    status, body = await h.call("DELETE", "/api/bots/lc-d?purge=true", ALICE)
    assert status == 200 and body["archived"] is False and body["status"] == "deleted"
    assert not pid_alive(d_pid)
    assert not (pool / "bots" / "lc-d").exists()
    assert not list((pool / "archive").glob("lc-d-*"))
    assert await h.pids() == {"lc-a": pids["lc-a"], "lc-b": pids["lc-b"]}
    # A deleted bot can be neither reached nor deleted again; bad input is a 400.
    assert (await h.call("GET", "/api/bots/lc-d/ping", ALICE))[0] == 404
    assert (await h.call("DELETE", "/api/bots/lc-d", ALICE))[0] == 404
    assert (await h.call("DELETE", "/api/bots/lc-a?purge=maybe", ALICE))[0] == 400

    # Exactly one fake bot process per remaining bot, nothing else.
    bots_running = [
        pid for pid, cmd, _ in processes_under(h.pool_dir("pool-1") / "bots")
        if is_bot(cmd, "fakebot")
    ]  # fmt: skip
    assert sorted(bots_running) == sorted([pids["lc-a"], pids["lc-b"]])
    assert set(await h.bots()) == {"lc-a", "lc-b"}
