"""Preloaded bots behave as plain ones under crashes, kills and agent restarts; and the
operator's preloader actions (restart it, switch a pool between preload and exec).

Every test ends with each bot running exactly once: counted in /proc, not as reported.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.support import (
    ControllerHarness,
    fakebot_pids,
    parent_of,
    pid_alive,
    supervisor_processes,
    supervisord_pid,
    wait_for,
)

pytestmark = pytest.mark.integration
BOTS = ("ln-1", "ln-2", "ln-3")


async def start(harness_factory, launch: str) -> ControllerHarness:
    h = await harness_factory(
        BOT_LAUNCH=launch, PRELOAD_MODULES="aiohttp,yarl", MAX_BOTS_PER_CONTAINER="3",
        POOL_BASE_PORT="23100",
    )  # fmt: skip
    await h.provision_running(*BOTS)
    return h


async def replaced(h: ControllerHarness, bot: str, old_pid: int) -> int:
    """Wait until the bot runs and answers again as a process other than old_pid."""

    async def back() -> int | None:
        info = await h.wait_running(bot)
        pid = info["process"]["pid"]
        return pid if pid != old_pid and not pid_alive(old_pid) else None

    return await wait_for(back, 30)


def assert_each_runs_once(h: ControllerHarness, pids: dict[str, int | None]) -> None:
    for bot, pid in pids.items():
        assert fakebot_pids(h.pool_dir("pool-1") / "bots" / bot) == ([pid] if pid else []), bot


def parents(pids: dict[str, int | None]) -> set[int]:
    return {parent_of(pid) for pid in pids.values() if pid}


@pytest.mark.parametrize("launch", ["exec", "preload"])
async def test_crashed_and_killed_bots_come_back_once(harness_factory, launch):
    h = await start(harness_factory, launch)
    pids = await h.pids()

    # A crash (exit 3 at run time): supervisord restarts the bot (with preload: its launcher,
    # which passed the exit status on, asks for a new fork).
    status, body = await h.call("POST", "/bots/ln-1/api/v1/exit?code=3")
    assert status == 200 and body == {"exiting": 3}
    pids["ln-1"] = await replaced(h, "ln-1", pids["ln-1"])

    # kill -9 of the bot itself.
    os.kill(pids["ln-2"], signal.SIGKILL)
    pids["ln-2"] = await replaced(h, "ln-2", pids["ln-2"])

    assert (await h.pids())["ln-3"] == pids["ln-3"]
    assert_each_runs_once(h, pids)
    status, config = await h.call("GET", "/bots/ln-1/api/v1/show_config")
    assert status == 200 and config["pid"] == pids["ln-1"]


@pytest.mark.parametrize("launch", ["exec", "preload"])
async def test_a_killed_agent_leaves_every_bot_running(harness_factory, launch):
    h = await start(harness_factory, launch)
    pool = h.pool_dir("pool-1")
    pids = await h.pids()
    agent = supervisor_processes(pool)["agent"]["pid"]
    os.kill(agent, signal.SIGKILL)

    async def new_agent_applied() -> bool:
        info = supervisor_processes(pool)["agent"]
        if info["statename"] != "RUNNING" or info["pid"] == agent:
            return False
        await h.wait_applied("pool-1")
        return True

    await wait_for(new_agent_applied, 30)
    await asyncio.gather(*(h.wait_running(b) for b in BOTS))
    assert await h.pids() == pids
    assert_each_runs_once(h, pids)


def title_of(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().rstrip(b"\0").decode()


async def test_a_killed_launcher_takes_its_bot_along(harness_factory):
    h = await start(harness_factory, "preload")
    pids = await h.pids()
    # ps shows each forked bot as itself, not as the preloader it was forked from.
    assert {bot: title_of(pid) for bot, pid in pids.items()} == {
        bot: f"freqtrade bot {bot}" for bot in BOTS
    }
    launcher = supervisor_processes(h.pool_dir("pool-1"))["bot-ln-1"]["pid"]
    assert launcher != pids["ln-1"]
    os.kill(launcher, signal.SIGKILL)
    # The preloader kills the orphaned bot; supervisord starts a new launcher and bot.
    pids["ln-1"] = await replaced(h, "ln-1", pids["ln-1"])
    assert supervisor_processes(h.pool_dir("pool-1"))["bot-ln-1"]["pid"] != launcher
    assert_each_runs_once(h, pids)


async def test_restarting_the_preloader_restarts_its_running_bots_once(harness_factory):
    h = await start(harness_factory, "preload")
    pool = h.pool_dir("pool-1")
    assert (await h.call("POST", "/api/bots/ln-3/stop"))[0] == 200

    async def stopped() -> bool:
        return (await h.bots())["ln-3"]["process"]["state"] == "STOPPED"

    await wait_for(stopped, 30)
    pids = await h.pids()
    preloader = supervisor_processes(pool)["preloader"]["pid"]
    assert parents(pids) == {preloader}

    status, body = await h.call("POST", "/api/pool/pools/pool-1/preloader/restart")
    assert (status, body["preloaderRestarts"]) == (200, 1)
    for bot in ("ln-1", "ln-2"):
        pids[bot] = await replaced(h, bot, pids[bot])
    successor = supervisor_processes(pool)["preloader"]["pid"]
    assert successor != preloader and not pid_alive(preloader)
    assert parents(pids) == {successor}
    assert pids["ln-3"] is None and (await h.bot("ln-3"))["desired"] == "stopped"
    assert_each_runs_once(h, pids)
    [view] = (await h.call("GET", "/api/pool/status"))[1]["pools"]
    assert view["launch"]["preloader"] == "RUNNING"


async def test_a_pool_switches_between_preload_and_exec_keeping_its_bots(harness_factory):
    h = await start(harness_factory, "preload")
    pool = h.pool_dir("pool-1")
    for bot in BOTS:
        (pool / "bots" / bot / "user_data" / "kept.txt").write_text(bot)
    pids = await h.pids()

    status, body = await h.call("PUT", "/api/pool/pools/pool-1/launch", json={"launch": "exec"})
    assert (status, body["launch"]) == (200, "exec")
    for bot in BOTS:
        pids[bot] = await replaced(h, bot, pids[bot])
    # Plain processes now: children of supervisord itself, and no preloader left.
    assert parents(pids) == {supervisord_pid(pool)}
    assert "preloader" not in supervisor_processes(pool)
    assert_each_runs_once(h, pids)

    status, body = await h.call("PUT", "/api/pool/pools/pool-1/launch", json={"launch": None})
    assert (status, body["launch"]) == (200, "preload")
    for bot in BOTS:
        pids[bot] = await replaced(h, bot, pids[bot])
    assert parents(pids) == {supervisor_processes(pool)["preloader"]["pid"]}
    assert_each_runs_once(h, pids)
    for bot in BOTS:
        assert (pool / "bots" / bot / "user_data" / "kept.txt").read_text() == bot
