"""`ftpool bots|pools|events|status` against a real controller (local runtime, real
supervisord pools, fake bots), every call through the installed `ftpool` entry point in a
subprocess, as an operator or a script runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import ADMIN_TOKEN, ControllerHarness, user_token, wait_for

pytestmark = pytest.mark.integration

FTPOOL = Path(sys.executable).with_name("ftpool")
POOL = {"MAX_BOTS_PER_CONTAINER": "3"}
ALICE, BOB = user_token("alice"), user_token("bob")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


def environment(h: ControllerHarness, token: str | None, home: Path) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "FTPOOL_URL": h.base}
    return env | ({"FTPOOL_TOKEN": token} if token else {})


async def ftpool(
    h: ControllerHarness, *args: str, token: str | None = ADMIN_TOKEN, stdin: str = ""
) -> Result:
    """Run `ftpool ARGS` against h with token (from the environment); stdin is no terminal."""
    process = await asyncio.create_subprocess_exec(
        FTPOOL, *args, env=environment(h, token, h.settings.bot_base_dir),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    result = Result(process.returncode or 0, out.decode(), err.decode())
    for text in (result.out, result.err):
        assert ADMIN_TOKEN not in text and ALICE not in text
    return result


def rows(table: str) -> dict[str, list[str]]:
    """A printed table as {first cell: cells}."""
    return {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}


async def test_an_admin_drives_a_bot_through_its_life(harness_factory) -> None:
    h = await harness_factory(POOL_BASE_PORT="26500", **POOL)
    made = (await ftpool(h, "bots", "create", "cli-1", "--wait", "--json")).json()
    assert (made["instanceId"], made["poolId"], made["status"]) == ("cli-1", "pool-1", "running")

    table = await ftpool(h, "bots", "ls")
    assert table.code == 0
    header, row = rows(table.out)["ID"], rows(table.out)["cli-1"]
    assert header[:6] == ["ID", "USER", "POOL", "PORT", "STRATEGY", "STATUS"]
    assert row[:6] == ["cli-1", "admin", "pool-1", "26500", "SampleStrategy", "running"]
    listed = (await ftpool(h, "bots", "ls", "--json")).json()["bots"]
    assert [b["instanceId"] for b in listed] == ["cli-1"]
    pid = (await ftpool(h, "bots", "show", "cli-1", "--json")).json()["process"]["pid"]
    assert pid == (await h.bot("cli-1"))["process"]["pid"]
    shown = rows((await ftpool(h, "bots", "show", "cli-1")).out)
    assert shown["status"] == ["status", "running"] and shown["pid"] == ["pid", str(pid)]

    stopped = await ftpool(h, "bots", "stop", "cli-1", "--wait")
    assert stopped.code == 0 and stopped.out.startswith("cli-1: stop (stopped)")
    assert (await h.bot("cli-1"))["process"]["pid"] is None
    assert (await ftpool(h, "bots", "start", "cli-1", "--wait")).code == 0
    started = (await h.bot("cli-1"))["process"]["pid"]
    assert (await ftpool(h, "bots", "restart", "cli-1", "--wait", "--json")).json()["status"] == (
        "running")  # fmt: skip
    assert (await h.bot("cli-1"))["process"]["pid"] not in (None, started)

    log = await ftpool(h, "bots", "logs", "cli-1")
    assert log.code == 0 and log.out.count("fakebot cli-1 on 26500") == 3  # three starts

    pools = rows((await ftpool(h, "pools", "ls")).out)
    assert pools["pool-1"][1:5] == ["running", "pooled", "1/3", "33%"]
    assert (await ftpool(h, "pools", "ls", "--json")).json()["totalPools"] == 1
    pool = await ftpool(h, "pools", "show", "pool-1")
    assert "cli-1" in rows(pool.out) and rows(pool.out)["container"][1] == "freqtrade-pool-pool-1"
    missing = await ftpool(h, "pools", "show", "pool-9")
    assert missing.code == 5
    assert missing.err == "ftpool: the controller answered 404: no pool pool-9\n"

    status = (await ftpool(h, "status", "--json")).json()
    assert status["bots"] == {"total": 1, "byStatus": {"running": 1}}
    assert status["fleet"]["health"]["status"] == "healthy"
    assert "healthy" in rows((await ftpool(h, "status")).out)["health"]

    events = (await ftpool(h, "events", "--json", "--limit", "1000")).json()["events"]
    states = [e["reason"] for e in events if (e["type"], e["instanceId"]) == ("bot_state", "cli-1")]
    assert states.count("RUNNING") == 3
    assert "bot_state" in (await ftpool(h, "events")).out

    refused = await ftpool(h, "bots", "rm", "cli-1")  # no terminal to ask on, no --yes
    assert refused.code == 2 and "needs --yes" in refused.err
    assert "cli-1" in await h.bots()
    removed = (await ftpool(h, "bots", "rm", "cli-1", "--yes", "--json")).json()
    assert removed["status"] in ("deleted", "deleting") and removed["archived"] is True
    await wait_for(lambda: _gone(h, "cli-1"))
    gone = await ftpool(h, "bots", "show", "cli-1")
    assert gone.code == 5 and "404" in gone.err


async def _gone(h: ControllerHarness, bot: str) -> bool:
    return bot not in await h.bots()


async def test_a_user_sees_and_touches_only_their_own_bots(harness_factory) -> None:
    h = await harness_factory(POOL_BASE_PORT="26510", **POOL)
    config = json.dumps({"max_open_trades": 2})
    made = await ftpool(h, "bots", "create", "a-1", "--config-file", "-", "--wait", token=ALICE,
                        stdin=config)  # fmt: skip
    assert made.code == 0 and made.out.startswith("created a-1 in pool-1"), made.err
    await h.provision(BOB, instanceId="b-1")
    await h.wait_running("b-1")

    mine = (await ftpool(h, "bots", "ls", "--json", token=ALICE)).json()["bots"]
    assert [(b["instanceId"], b["userId"]) for b in mine] == [("a-1", "alice")]
    assert set(rows((await ftpool(h, "bots", "ls", token=ALICE)).out)) == {"ID", "a-1"}
    everyone = rows((await ftpool(h, "bots", "ls", "--user", "bob")).out)
    assert set(everyone) == {"ID", "b-1"}  # the admin filters by user

    for argv in (["bots", "show", "b-1"], ["bots", "stop", "b-1"], ["bots", "logs", "b-1"],
                 ["bots", "rm", "b-1", "--yes"]):  # fmt: skip
        other = await ftpool(h, *argv, token=ALICE)
        assert other.code == 4, (argv, other)
        assert other.err == "ftpool: the controller answered 403: not your bot\n"
    assert (await h.bot("b-1"))["status"] == "running"
    pools = await ftpool(h, "pools", "ls", token=ALICE)
    assert pools.code == 4 and "admin role required" in pools.err

    status = (await ftpool(h, "status", "--json", token=ALICE)).json()
    assert status["bots"]["total"] == 1 and "fleet" not in status
    events = (await ftpool(h, "events", "--json", token=ALICE)).json()["events"]
    assert events and {e["instanceId"] for e in events} == {"a-1"}


async def test_wrong_tokens_and_refusals_are_clear_errors(harness_factory, tmp_path: Path) -> None:
    h = await harness_factory(POOL_BASE_PORT="26520", **POOL)
    wrong = "wrong-token-" + "w" * 30
    for argv in (["bots", "ls"], ["status"], ["events", "-f"], ["pools", "ls"]):
        result = await ftpool(h, *argv, token=wrong)
        assert result.code == 4, (argv, result)
        assert result.err.startswith("ftpool: the controller answered 401: invalid token")
        assert wrong not in result.out + result.err
    unknown = await ftpool(h, "bots", "create", "--strategy", "NoSuchStrategy")
    assert unknown.code == 1 and "answered 400" in unknown.err and "NoSuchStrategy" in unknown.err
    managed = await ftpool(h, "bots", "create", "x-1", "--config-json", '{"db_url": "sqlite://"}')
    assert managed.code == 1 and "db_url" in managed.err
    assert (await h.bots()) == {}

    # The token from a private file, the URL from a config file.
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    token_file.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{h.base}"\ntoken_file = "token"\n')
    result = await ftpool(h, "bots", "ls", "--json", "--config", str(config), token=None)
    assert result.json() == {"success": True, "bots": []}
    token_file.chmod(0o644)
    result = await ftpool(h, "bots", "ls", "--config", str(config), token=None)
    assert result.code == 2 and "chmod 600" in result.err


async def follower(h: ControllerHarness, *args: str) -> asyncio.subprocess.Process:
    """`ftpool ARGS` as the admin, left running: a follower (-f) the test reads and ends.
    It starts with Ctrl-C as a terminal gives it (SIGINT default and unblocked), whatever
    the test process's own state: an ignored or blocked signal is inherited across exec,
    and in the whole suite's run a follower never saw the test's SIGINT."""
    return await asyncio.create_subprocess_exec(
        FTPOOL, *args, env=environment(h, ADMIN_TOKEN, h.settings.bot_base_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_terminal_sigint,
    )  # fmt: skip


async def interrupted(process: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """A follower's output once it ended after its SIGINT; if it does not end within 30 s,
    the failure says what state the process was in (diagnosis of a full-suite failure)."""
    try:
        return await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        proc = Path(f"/proc/{process.pid}")
        try:
            status = (proc / "status").read_text().splitlines()[:12]
            fds = sorted(os.listdir(proc / "fd"))
            sig = [line for line in (proc / "status").read_text().splitlines()
                   if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]  # fmt: skip
        except OSError as exc:
            status, fds, sig = [f"gone ({exc})"], [], []
        raise AssertionError(
            f"follower {process.pid} did not end after SIGINT: {status} {sig} fds={fds}"
        ) from None


def _terminal_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


async def read_until(
    stream: asyncio.StreamReader, wanted: str, seen: list[str], start: int = 0
) -> None:
    """Read lines into `seen` until one from `start` on holds `wanted` (the caller bounds it)."""
    while not any(wanted in line for line in seen[start:]):
        line = await stream.readline()
        assert line, f"the stream ended before {wanted!r}: {seen}"
        seen.append(line.decode())


async def test_logs_and_events_follow_until_ctrl_c(harness_factory) -> None:
    h = await harness_factory(POOL_BASE_PORT="26530", **POOL)
    assert (await ftpool(h, "bots", "create", "f-1", "--wait")).code == 0
    logs = await follower(h, "bots", "logs", "f-1", "-f", "--interval", "0.2")
    events = await follower(h, "events", "-f", "--json", "--limit", "1000")
    log_lines: list[str] = []
    event_lines: list[str] = []
    assert logs.stdout and events.stdout
    await asyncio.wait_for(read_until(logs.stdout, "fakebot f-1 on", log_lines), 30)
    await asyncio.wait_for(read_until(events.stdout, '"reason":"RUNNING"', event_lines), 30)
    last = json.loads(event_lines[-1])["id"]

    # A restart: its new start line reaches the followed log, its states the event stream.
    assert (await ftpool(h, "bots", "restart", "f-1", "--wait")).code == 0
    before = len(event_lines)
    await asyncio.wait_for(read_until(logs.stdout, "fakebot f-1 on", log_lines, 1), 30)
    await asyncio.wait_for(read_until(events.stdout, '"reason":"RUNNING"', event_lines, before), 30)
    ids = [json.loads(line)["id"] for line in event_lines]
    assert ids == sorted(set(ids)) and ids[before] > last  # in order, none twice

    for process in (logs, events):  # Ctrl-C: a clean end, no traceback
        process.send_signal(signal.SIGINT)
        _out, err = await interrupted(process)
        assert process.returncode == 130 and b"Traceback" not in err, err


async def test_followers_ride_out_a_controller_restart(harness_factory) -> None:
    h = await harness_factory(POOL_BASE_PORT="26540", **POOL)
    assert (await ftpool(h, "bots", "create", "r-1", "--wait")).code == 0
    logs = await follower(h, "bots", "logs", "r-1", "-f", "--interval", "0.2")
    events = await follower(h, "events", "-f", "--json", "--limit", "1000")
    assert logs.stdout and events.stdout
    log_lines: list[str] = []
    event_lines: list[str] = []
    await asyncio.wait_for(read_until(logs.stdout, "fakebot r-1 on", log_lines), 30)
    await asyncio.wait_for(read_until(events.stdout, '"reason":"RUNNING"', event_lines), 30)

    # The controller goes away and comes back on the same port and data (its bots run on).
    await h.stop()
    for process in (logs, events):  # both noticed, and keep trying
        assert process.stderr
        await asyncio.wait_for(read_until(process.stderr, "trying again", []), 30)
    h = await harness_factory(
        CONTROLLER_PORT=str(h.settings.controller_port), POOL_BASE_PORT="26540", **POOL
    )
    await h.wait_running("r-1")
    before = len(event_lines)
    assert (await ftpool(h, "bots", "restart", "r-1", "--wait")).code == 0
    await asyncio.wait_for(read_until(logs.stdout, "fakebot r-1 on", log_lines, 1), 60)
    await asyncio.wait_for(read_until(events.stdout, '"reason":"RUNNING"', event_lines, before), 60)
    ids = [json.loads(line)["id"] for line in event_lines]
    assert ids == sorted(set(ids))  # resumed after the last id: none twice, in order

    for process in (logs, events):
        process.send_signal(signal.SIGINT)
        _out, err = await interrupted(process)
        assert process.returncode == 130, err
        assert b"reconnected" in err and b"Traceback" not in err
