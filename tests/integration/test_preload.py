"""Preloaded bots: forked by the pool's preloader, stood in for by their launchers.

The fake bot is a Python script, so the preloader (with aiohttp preloaded) forks it like
it forks freqtrade. Whatever happens to a launcher or to the preloader, no bot process
may be left behind, and every bot comes back exactly once.
"""

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.support import parent_of, pid_alive, supervisor_processes, wait_for

pytestmark = pytest.mark.integration
BOTS = ["pre-1", "pre-2", "pre-3"]


async def test_preloaded_bots_live_and_die_with_their_launchers(harness_factory):
    h = await harness_factory(
        BOT_LAUNCH="preload",
        PRELOAD_MODULES="aiohttp,yarl",
        MAX_BOTS_PER_CONTAINER="3",
        POOL_BASE_PORT="23000",
    )
    await h.provision_running(*BOTS)
    pool_dir = h.pool_dir("pool-1")
    programs = supervisor_processes(pool_dir)
    preloader = programs["preloader"]["pid"]
    pids = await h.pids()
    for bot in BOTS:
        # The reported pid is the bot itself (it tells its own pid), a fork of the preloader
        # running in its own directory, not its launcher.
        status, config = await h.call("GET", f"/bots/{bot}/api/v1/show_config")
        assert status == 200 and config["pid"] == pids[bot]
        assert parent_of(pids[bot]) == preloader
        assert Path(os.readlink(f"/proc/{pids[bot]}/cwd")) == (pool_dir / "bots" / bot).resolve()
        assert programs[f"bot-{bot}"]["pid"] != pids[bot]

    # Stop: the bot shuts down (its launcher forwarded supervisord's SIGTERM), nothing stays.
    launcher = programs["bot-pre-2"]["pid"]
    assert (await h.call("POST", "/api/bots/pre-2/stop"))[0] == 200
    await wait_for(lambda: not pid_alive(pids["pre-2"]) and not pid_alive(launcher), 30)

    # The bot dies on its own: supervisord restarts its launcher, which forks it anew.
    os.kill(pids["pre-1"], signal.SIGKILL)

    async def pre1_back():
        info = await h.wait_running("pre-1")
        return info if info["process"]["pid"] != pids["pre-1"] else None

    reborn = (await wait_for(pre1_back, 30))["process"]["pid"]
    assert parent_of(reborn) == preloader

    # The preloader dies: every bot it forked dies with it (no orphan keeps trading), and
    # the bots that should run come back, forked by the new preloader.
    running = [reborn, pids["pre-3"]]
    os.kill(preloader, signal.SIGKILL)
    await wait_for(lambda: not any(pid_alive(p) for p in running), 10)

    async def all_back():
        # Answering pings: forked and serving, so the launcher has recorded the bot's pid.
        await asyncio.gather(h.wait_running("pre-1"), h.wait_running("pre-3"))
        new = await h.pids()
        alive = [new[b] for b in ("pre-1", "pre-3")]
        return new if all(p and p not in running and pid_alive(p) for p in alive) else None

    new = await wait_for(all_back, 60)
    successor = supervisor_processes(pool_dir)["preloader"]["pid"]
    assert successor != preloader
    assert parent_of(new["pre-1"]) == successor and parent_of(new["pre-3"]) == successor
    assert new["pre-2"] is None  # still stopped
