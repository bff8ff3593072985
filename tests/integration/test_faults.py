"""Faults with real processes: a crash-looping bot, a controller killed mid-provisioning,
a controller down for a minute. Each ends by counting bot processes: never two of a bot.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from controller.errors import RuntimeFailure
from tests.support import (
    ControllerProcess,
    fakebot_pids,
    kill_pools,
    settings_env,
    supervisor_processes,
    supervisord_pid,
    wait_for,
)

pytestmark = pytest.mark.integration


async def events_of(h, bot: str, kind: str) -> list[dict]:
    status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    assert status == 200, body
    return [e for e in body["events"] if e["type"] == kind and e["instanceId"] == bot]


async def test_a_crash_loop_gets_exactly_its_attempts_then_is_failed(harness_factory):
    h = await harness_factory(
        POOL_BASE_PORT="23200", MAX_RESTART_ATTEMPTS="2", RESTART_BACKOFF="300",
        RESTART_COOLDOWN="3000", RESTART_CYCLES="1",
    )  # fmt: skip
    healthy = (await h.provision_running("cl-1", "cl-2"))["cl-2"]
    bot_dir = h.pool_dir("pool-1") / "bots" / "cl-1"
    (bot_dir / "crash-on-start").touch()
    # Crash the running bot: from now on it dies at every start.
    assert (await h.call("POST", "/bots/cl-1/api/v1/exit?code=3"))[0] == 200

    async def failed() -> bool:
        return (await h.bot("cl-1"))["status"] == "failed"

    await wait_for(failed, 30)
    info = await h.bot("cl-1")
    assert info["restarts"]["failed"] is True and info["desired"] == "running"
    restarts = await events_of(h, "cl-1", "bot_restart")
    assert [e["detail"]["attempt"] for e in restarts] == [1, 2]
    # The cooldown came between the last attempt and giving up.
    [gave_up] = await events_of(h, "cl-1", "bot_failed")
    assert gave_up["id"] > restarts[-1]["id"]
    await asyncio.sleep(2)  # left alone: no further attempt
    assert len(await events_of(h, "cl-1", "bot_restart")) == 2
    assert fakebot_pids(bot_dir) == []
    assert (await h.pids())["cl-2"] == healthy  # its neighbour never noticed

    # Fixed (the marker gone), the owner starts it: it runs again, with a clean record.
    (bot_dir / "crash-on-start").unlink()
    assert (await h.call("POST", "/api/bots/cl-1/start"))[0] == 200
    info = await h.wait_running("cl-1")
    assert info["restarts"] == {"attempts": 0, "cycles": 0, "lastAt": None, "failed": False,
                                "memoryLimit": 0}  # fmt: skip
    assert fakebot_pids(bot_dir) == [info["process"]["pid"]]

    # A user's stop is final, even for a bot that would crash.
    (bot_dir / "crash-on-start").touch()
    assert (await h.call("POST", "/api/bots/cl-1/stop"))[0] == 200
    await asyncio.sleep(2)
    assert (await h.bot("cl-1"))["process"]["state"] == "STOPPED"
    assert len(await events_of(h, "cl-1", "bot_restart")) == 2


def bot_anywhere(base_dir: Path, bot: str) -> list[int]:
    return [pid for d in base_dir.glob(f"pools/*/bots/{bot}") for pid in fakebot_pids(d)]


def store_slots(db_path: Path) -> tuple[dict[str, int], dict[str, int], list[int]]:
    """Each pool's `used` count, its bots counted, and every bot's port, from the store."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        used = dict(db.execute("SELECT id, used FROM pools").fetchall())
        counted = dict(db.execute("SELECT pool_id, count(*) FROM bots GROUP BY pool_id"))
        ports = [p for (p,) in db.execute("SELECT port FROM bots")]
    finally:
        db.close()
    return used, counted, ports


async def test_a_controller_killed_mid_provisioning_leaves_each_bot_once_or_not_at_all(
    tmp_path: Path,
):
    env = settings_env(tmp_path, POOL_BASE_PORT="23300", MAX_BOTS_PER_CONTAINER="4")
    first = await ControllerProcess(env).start()
    bots = [f"mp-{i}" for i in range(10)]
    try:
        calls = [
            asyncio.ensure_future(first.call("POST", "/api/bots", json={"instanceId": b}))
            for b in bots
        ]
        # Kill it as soon as the first bot is placed: the others are in flight.
        await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        await first.kill()
        answered = [c.result()[1]["instanceId"] for c in calls if c.done() and not c.exception()
                    and c.result()[0] == 201]  # fmt: skip
        for c in calls:
            c.cancel()
        assert answered, "no provision was answered before the kill"

        second = await ControllerProcess(env).start()
        try:
            listed = await second.bots()
            # Every bot that was confirmed exists; every bot that exists runs exactly once.
            assert set(answered) <= set(listed) <= set(bots)
            await asyncio.gather(*(second.wait_running(b, timeout=60) for b in listed))
            pids = await second.pids()
            for bot, view in listed.items():
                assert fakebot_pids(second.pool_dir(view["poolId"]) / "bots" / bot) == [pids[bot]]
            for bot in set(bots) - set(listed):
                assert not bot_anywhere(tmp_path, bot)
            # No slot leaked: each pool counts exactly its bots, and ports are unique.
            used, counted, ports = store_slots(second.settings.database_path)
            assert used == {p: counted.get(p, 0) for p in used}
            assert len(ports) == len(set(ports)) == len(listed)
            # The rest can be provisioned now, into the free slots.
            for bot in sorted(set(bots) - set(listed)):
                assert (await second.call("POST", "/api/bots", json={"instanceId": bot}))[0] == 201
            await asyncio.gather(*(second.wait_running(b, timeout=60) for b in bots))
            used, counted, ports = store_slots(second.settings.database_path)
            assert sorted(ports) == list(range(23300, 23310))
        finally:
            await second.close()
    finally:
        await first.close()
        kill_pools(tmp_path)


async def test_a_controller_down_for_a_minute_changes_nothing(harness_factory):
    # POOL_GRACE as deployed (20 s): longer than an agent's reconnect backoff (at most
    # 12 s), so the agents' reconnection after the outage is awaited, not forced.
    settings = {"POOL_BASE_PORT": "23400", "HEALTH_CHECK_INTERVAL": "2000", "POOL_GRACE": "20000"}
    h = await harness_factory(**settings)
    bots = ("dn-1", "dn-2")
    pids = await h.provision_running(*bots)
    pool = h.pool_dir("pool-1")
    agent = supervisor_processes(pool)["agent"]["pid"]
    await h.stop()
    await asyncio.sleep(60)
    # Meanwhile the bots ran on, and so did their agent, retrying the connection.
    assert {b: fakebot_pids(pool / "bots" / b) for b in bots} == {b: [pids[b]] for b in bots}
    assert supervisor_processes(pool)["agent"]["pid"] == agent
    back = await harness_factory(**settings, CONTROLLER_PORT=str(h.settings.controller_port))
    await back.wait_applied("pool-1")
    await asyncio.gather(*(back.wait_running(b) for b in bots))
    await asyncio.sleep(3)  # a health check or two on the reconnected pool
    assert await back.pids() == pids
    views = await back.bots()
    assert all(v["restarts"]["attempts"] == 0 for v in views.values())
    assert supervisor_processes(pool)["agent"]["pid"] == agent


def break_pool(pool_dir: Path) -> None:
    """The pool breaks for good: its supervisord dies and its configuration is ruined."""
    (pool_dir / "supervisord.conf").write_text("[this is not supervisord's configuration\n")
    os.kill(supervisord_pid(pool_dir), signal.SIGKILL)


async def test_a_pool_that_cannot_start_again_has_its_bots_moved_with_their_data(
    harness_factory,
):
    h = await harness_factory(
        POOL_BASE_PORT="23500", MAX_BOTS_PER_CONTAINER="2", POOL_START_ATTEMPTS="2",
        POOL_GRACE="2000", HEALTH_CHECK_INTERVAL="2000",
    )  # fmt: skip
    before = await h.provision_running("ev-1", "ev-2", "ev-3")
    old = h.pool_dir("pool-1")
    for bot in ("ev-1", "ev-2"):
        (old / "bots" / bot / "user_data" / "tradesv3.sqlite").write_text(f"trades of {bot}")
    break_pool(old)  # for good

    async def moved() -> bool:
        bots = await h.bots()
        return bots["ev-1"]["poolId"] != "pool-1" and bots["ev-2"]["poolId"] != "pool-1"

    await wait_for(moved, 90, step=0.5)
    await asyncio.gather(*(h.wait_running(b, timeout=60) for b in ("ev-1", "ev-2")))
    bots = await h.bots()
    assert (bots["ev-1"]["poolId"], bots["ev-1"]["port"]) == ("pool-2", 23503)
    assert (bots["ev-2"]["poolId"], bots["ev-2"]["port"]) == ("pool-3", 23504)
    pids = await h.pids()
    for bot in ("ev-1", "ev-2"):
        bot_dir = h.pool_dir(bots[bot]["poolId"]) / "bots" / bot
        assert (bot_dir / "user_data" / "tradesv3.sqlite").read_text() == f"trades of {bot}"
        assert fakebot_pids(bot_dir) == [pids[bot]]
        assert (await h.call("GET", f"/api/bots/{bot}/ping"))[0] == 200
    assert pids["ev-3"] == before["ev-3"]  # its pool was never touched
    # The lost pool is gone, its directory too (nothing was left in it).
    status = (await h.call("GET", "/api/pool/status"))[1]
    assert not old.exists() and "pool-1" not in {p["id"] for p in status["pools"]}


@pytest.mark.parametrize(
    ("step", "base_port", "placed"),
    [
        # Staged, its record not moved: back in the lost pool, which is evacuated again.
        ("relocate", "23800", "pool-3"),
        # Its record moved to a new pool, not made yet, its files still staged.
        ("land", "23900", "pool-3"),
    ],
)
async def test_a_controller_killed_mid_evacuation_leaves_each_bot_once_with_its_data(
    tmp_path: Path, step: str, base_port: str, placed: str
):
    env = settings_env(
        tmp_path, POOL_BASE_PORT=base_port, MAX_BOTS_PER_CONTAINER="2", POOL_START_ATTEMPTS="2",
        POOL_GRACE="2000", HEALTH_CHECK_INTERVAL="2000", POOL_CLEANUP_GRACE="0",
    )  # fmt: skip
    bots = ["ev-1", "ev-2", "ev-3"]
    first = ControllerProcess({**env, "FTPOOL_TEST_DIE_AT": f"{step}:ev-2"},
                              module="tests.integration.dying_controller")  # fmt: skip
    second = None
    try:
        await first.start()
        before = await first.provision_running(*bots)  # pool-1: ev-1, ev-2; pool-2: ev-3
        old = first.pool_dir("pool-1")
        for bot in ("ev-1", "ev-2"):
            (old / "bots" / bot / "user_data" / "tradesv3.sqlite").write_text(f"trades of {bot}")
        break_pool(old)
        # Evacuated: ev-1 into pool-2; ev-2 is staged when the controller dies.
        assert first.process is not None
        await asyncio.wait_for(first.process.wait(), 90)
        assert first.process.returncode == -signal.SIGKILL
        staged = tmp_path / "migrating" / "ev-2"
        assert (staged / "user_data" / "tradesv3.sqlite").read_text() == "trades of ev-2"
        assert bot_anywhere(tmp_path, "ev-2") == []  # held, and its pool dead: not running

        second = await ControllerProcess(env).start()
        await asyncio.gather(*(second.wait_running(b, timeout=90) for b in bots))
        views = await second.bots()
        assert {b: v["poolId"] for b, v in views.items()} == {
            "ev-1": "pool-2", "ev-2": placed, "ev-3": "pool-2"
        }  # fmt: skip
        pids = await second.pids()
        assert pids["ev-3"] == before["ev-3"]  # its pool was never touched
        for bot in bots:
            bot_dir = second.pool_dir(views[bot]["poolId"]) / "bots" / bot
            assert bot_anywhere(tmp_path, bot) == fakebot_pids(bot_dir) == [pids[bot]]
            if bot != "ev-3":
                assert (bot_dir / "user_data" / "tradesv3.sqlite").read_text() == f"trades of {bot}"
            assert (await second.call("GET", f"/api/bots/{bot}/ping"))[0] == 200
        assert not staged.exists()
        # The lost pool goes, with nothing left in it: at the end of the evacuation that
        # started again, or as the empty pool it was left (draining) at the crash.
        status, body = await second.call("POST", "/api/pool/cleanup")
        assert status == 200, body
        pools = {p["id"] for p in (await second.call("GET", "/api/pool/status"))[1]["pools"]}
        assert pools == {"pool-2", "pool-3"} and not old.exists()
        assert not list((tmp_path / "archive").glob("ev-*"))  # no bot's files left behind
    finally:
        for process in (first, second):
            if process is not None:
                await process.close()
        kill_pools(tmp_path)


async def test_a_pool_whose_creation_failed_halfway_leaves_nothing_in_the_way(
    harness_factory, monkeypatch: pytest.MonkeyPatch
):
    h = await harness_factory(POOL_BASE_PORT="23700")
    runtime = h.controller.pools.runtime
    start = runtime._start

    async def started_then_failed(pool_id: str) -> None:
        await start(pool_id)  # supervisord and its agent run...
        raise RuntimeFailure(f"{pool_id} did not come up in time")  # ...but too late

    monkeypatch.setattr(runtime, "_start", started_then_failed)
    status, body = await h.call("POST", "/api/bots", json={"instanceId": "half-1"})
    assert status == 502 and "did not come up" in body["error"], body
    assert supervisord_pid(h.pool_dir("pool-1")) is None  # what it made is gone
    monkeypatch.setattr(runtime, "_start", start)
    # The next pool takes the same number, and comes up.
    assert (await h.provision(instanceId="half-2"))["poolId"] == "pool-1"
    await h.wait_running("half-2")
