"""Event-driven agents on real supervisord: a killed bot is seen and restarted with the poll
off; a pool made before the event listener existed still works, and so do an agent of the
previous version beside the new listener and a new agent under a controller of the
previous version."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.runtimes.local import LocalRuntime
from controller.runtimes.local_conf import listener_section
from tests.support import (
    ControllerProcess,
    fakebot_pids,
    kill_pools,
    settings_env,
    supervisor_processes,
    wait_for,
)

pytestmark = pytest.mark.integration

# The agent polls once an hour and reports once every two minutes: only supervisord's
# events and the processes' pidfds can tell it of anything sooner.
POLL_OFF = {"AGENT_POLL_INTERVAL": "3600000", "HEARTBEAT_INTERVAL": "120000",
            "POOL_GRACE": "600000", "LOG_LEVEL": "info"}  # fmt: skip
# The agent before supervisord's events (the commit this work started from).
PREVIOUS = "1ec6457f56091b2652f7d886c8c307995fe4ee2f"
SOURCE = Path(__file__).parents[2]


def agent_log(pool: Path) -> list[dict]:
    lines = (pool / "logs" / "agent.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def restarted(h, bot: str, old_pid: int) -> None:
    """Until the bot runs and answers again, as a new process."""

    async def new_process() -> bool:
        return ((await h.bot(bot))["process"] or {}).get("pid") not in (None, old_pid)

    await wait_for(new_process, 30)
    await h.wait_running(bot, timeout=30)


@pytest.mark.parametrize(("launch", "base"), [("exec", 25000), ("preload", 25002)])
async def test_a_killed_bot_is_seen_and_restarted_with_the_poll_off(harness_factory, launch, base):
    h = await harness_factory(
        POOL_BASE_PORT=str(base), MAX_BOTS_PER_CONTAINER="2", BOT_LAUNCH=launch,
        PRELOAD_MODULES="aiohttp,yarl", **POLL_OFF,
    )  # fmt: skip
    # Even coming up (RUNNING after startsecs) is told by supervisord's event, not a poll.
    pids = await h.provision_running("ev-1", "ev-2")
    pool = h.pool_dir("pool-1")
    processes = supervisor_processes(pool)
    assert processes["agent-events"]["statename"] == "RUNNING"
    # The program's process: the bot itself, or (preloaded) its launcher, which exits when
    # the preloader tells it of the bot's end.
    program = processes["bot-ev-1"]["pid"]
    assert (program == pids["ev-1"]) == (launch == "exec")

    os.kill(pids["ev-1"], signal.SIGKILL)
    # Restarted long before the next poll or heartbeat, and the monitor never ticked
    # (HEALTH_CHECK_INTERVAL is ten minutes here): the report of the exit rang it.
    await restarted(h, "ev-1", pids["ev-1"])
    assert fakebot_pids(pool / "bots" / "ev-1") == [(await h.pids())["ev-1"]]
    assert (await h.pids())["ev-2"] == pids["ev-2"]  # its neighbour never noticed

    # The agent learnt of the exit from the process's pidfd, and from supervisord's event.
    log = agent_log(pool)
    exits = [(e["program"], e["pid"]) for e in log if e["event"] == "process_exit_seen"]
    assert ("bot-ev-1", program) in exits or any(e["event"] == "pidfd_unavailable" for e in log)
    events = [(e["program"], e["state"]) for e in log if e["event"] == "process_event"]
    assert ("bot-ev-1", "EXITED") in events and ("bot-ev-1", "RUNNING") in events
    _status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    kinds = [(e["type"], e["reason"]) for e in body["events"] if e["instanceId"] == "ev-1"]
    assert kinds.index(("bot_restart", "bot_not_running")) > kinds.index(("bot_state", "EXITED"))


def without_listener(conf: str) -> str:
    """A pool's supervisord.conf as the previous version wrote it: no event listener."""
    return re.sub(r"\[eventlistener:agent-events\]\n(?:.+\n)*\n", "", conf)


async def pool_remade(harness_factory, tmp_path, bot: str, rewrite, **overrides):
    """A pool with one running bot, its supervisord.conf rewritten by `rewrite` and started
    again while no controller runs, then adopted by a new controller: (controller, pool)."""
    h = await harness_factory(**overrides)
    await h.provision_running(bot)
    await h.stop()
    pool = h.pool_dir("pool-1")
    conf = pool / "supervisord.conf"
    conf.write_text(rewrite(conf.read_text()))
    await LocalRuntime(h.settings.pools_dir, tmp_path / "archive").restart("pool-1")
    h2 = await harness_factory(CONTROLLER_PORT=str(h.settings.controller_port), **overrides)
    await h2.wait_running(bot, timeout=40)
    return h2, pool


async def kill_and_see_restarted(h, pool: Path, bot: str) -> None:
    pid = (await h.pids())[bot]
    os.kill(pid, signal.SIGKILL)
    await restarted(h, bot, pid)
    assert fakebot_pids(pool / "bots" / bot) == [(await h.pids())[bot]]


async def test_a_pool_made_before_the_event_listener_still_works(harness_factory, tmp_path):
    h, pool = await pool_remade(harness_factory, tmp_path, "pre-1", without_listener,
                                POOL_BASE_PORT="25010", MAX_BOTS_PER_CONTAINER="2")  # fmt: skip
    assert "eventlistener" not in (pool / "supervisord.conf").read_text()
    assert "agent-events" not in supervisor_processes(pool)
    await kill_and_see_restarted(h, pool, "pre-1")


def process_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(entry.split("=", 1) for entry in raw.split("\0") if "=" in entry)


def previous_version(into: Path) -> Path:
    """The previous version's agent, common and controller packages (skip without history)."""
    archive = subprocess.run(
        ["git", "-C", str(SOURCE), "archive", PREVIOUS, "agent", "common", "controller"],
        capture_output=True, check=False,
    )  # fmt: skip
    if archive.returncode != 0:
        pytest.skip(f"no git history with {PREVIOUS}")
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    assert not (into / "agent" / "eventlistener.py").exists()
    return into


def agent_code(tree: Path) -> Callable[[str], str]:
    """A rewrite of a pool's supervisord.conf: its agent runs the code of `tree`."""

    def rewrite(conf: str) -> str:
        return re.sub(r"(\[program:agent\]\n(?:.+\n)*?environment=.*)\n",
                      rf'\1,PYTHONPATH="{tree}"\n', conf)  # fmt: skip

    return rewrite


async def test_an_agent_of_the_previous_version_works_beside_the_new_listener(
    harness_factory, tmp_path
):
    old = previous_version(tmp_path / "previous")
    # The listener stays.
    h, pool = await pool_remade(harness_factory, tmp_path, "old-1", agent_code(old),
                                POOL_BASE_PORT="25020", MAX_BOTS_PER_CONTAINER="2")  # fmt: skip
    agents = (await h.call("GET", "/api/agents"))[1]["agents"]
    assert [a["connected"] for a in agents] == [True]
    processes = supervisor_processes(pool)
    assert processes["agent-events"]["statename"] == "RUNNING"
    environ = process_environment(processes["agent"]["pid"])
    assert environ.get("PYTHONPATH") == str(old)  # the previous version's agent it is
    await kill_and_see_restarted(h, pool, "old-1")
    # The listener told no one, and never held supervisord up.
    assert "event not delivered" in (pool / "logs" / "eventlistener.log").read_text()


async def test_a_new_agent_works_with_a_controller_of_the_previous_version(tmp_path):
    old = previous_version(tmp_path / "previous")
    env = settings_env(tmp_path / "data", POOL_BASE_PORT="25030", MAX_BOTS_PER_CONTAINER="2")
    env["PYTHONPATH"] = str(old)
    controller = await ControllerProcess(env, source=old).start()
    try:
        await controller.provision_running("new-1")  # its pool runs its own (old) agent
        await controller.kill()
        pool = controller.pool_dir("pool-1")
        conf = pool / "supervisord.conf"
        # This version's agent, and its event listener, in the pool the old controller made.
        text = agent_code(SOURCE)(conf.read_text())
        conf.write_text(text.replace("[include]", "\n".join(listener_section(pool)) + "[include]"))
        await LocalRuntime(controller.settings.pools_dir, tmp_path / "archive").restart("pool-1")
        await controller.start()  # the old controller adopts the pool again
        await controller.wait_running("new-1", timeout=40)
        processes = supervisor_processes(pool)
        assert processes["agent-events"]["statename"] == "RUNNING"
        assert process_environment(processes["agent"]["pid"]).get("PYTHONPATH") == str(SOURCE)
        assert (pool / "run" / "events.sock").exists()  # this version's agent listens
        await kill_and_see_restarted(controller, pool, "new-1")
        assert (await controller.call("GET", "/api/bots/new-1/ping"))[0] == 200
    finally:
        await controller.close()
        kill_pools(tmp_path / "data")
