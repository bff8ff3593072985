"""Legacy mode and the migration tool against real supervisord pools and real agents.

Bots provisioned with POOL_MODE_ENABLED=false run in legacy pools of their own; the
migration CLI (a real subprocess) moves them into pools and back through the running
controller. Every bot's trade database holds known rows that must survive each move,
and no bot ever runs twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.support import (
    ControllerClient,
    ControllerProcess,
    bot_processes,
    fakebot_pids,
    file_digests,
    kill_pools,
    read_rows,
    settings_env,
    user_token,
    wait_for,
    write_rows,
)

pytestmark = pytest.mark.integration

ALICE = user_token("alice")
BOB = user_token("bob")
DB = "tradesv3.dryrun.sqlite"
ROWS = {
    "mig-a1": [(1, "BTC/USDT"), (2, "ETH/USDT")],
    "mig-a2": [(7, "XRP/USDT")],
    "mig-b1": [(3, "SOL/USDT"), (4, "ADA/USDT"), (5, "DOT/USDT")],
}


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (but the controller's own store and logs, and the backups,
    which the agents write continuously) and its content."""
    return file_digests(root, lambda rel: "ftpool.sqlite3" in rel or "/log/" in f"/{rel}"
                        or rel.endswith((".pid", ".sock"))
                        or rel.startswith("backups/"))  # fmt: skip


async def placement(h: ControllerClient) -> dict[str, tuple[str, str, int]]:
    """bot → (mode, pool, port), as GET /api/pool/bot/{id} tells."""
    out = {}
    for bot in await h.bots():
        status, info = await h.call("GET", f"/api/pool/bot/{bot}")
        assert status == 200, info
        out[bot] = (info["mode"], info["poolId"], info["connection"]["port"])
    return out


async def ping(h: ControllerClient, bot: str, token: str) -> bool:
    status, body = await h.call("GET", f"/api/bots/{bot}/ping", token)
    return status == 200 and body == {"status": "pong"}


async def answering(h: ControllerClient, bots: dict[str, str]) -> None:
    """Each bot answers through the proxy, and exactly one process of each runs."""
    for bot in bots:
        await h.wait_running(bot)
    for bot, token in bots.items():
        assert await ping(h, bot, token), bot
    command = h.settings.bot_command[-1]
    counts = Counter(
        b for pool in h.settings.pools_dir.iterdir()
        for b, pids in bot_processes(pool / "bots", command).items() for _ in pids
    )  # fmt: skip
    assert {b: counts[b] for b in bots} == dict.fromkeys(bots, 1), counts


def rows_of(h: ControllerClient, pool_id: str, bot: str) -> list[tuple[int, str]]:
    return read_rows(h.pool_dir(pool_id) / "bots" / bot / DB)


async def test_legacy_bots_migrate_into_pools_and_back(harness_factory):
    h = await harness_factory(POOL_MODE_ENABLED="false", MAX_BOTS_PER_CONTAINER="4",
                              POOL_BASE_PORT="23000")  # fmt: skip
    owners = {"mig-a1": ALICE, "mig-a2": ALICE, "mig-b1": BOB}
    for bot, token in owners.items():
        await h.provision(token, instanceId=bot)
    await answering(h, owners)
    where = await placement(h)
    assert {m for m, _p, _port in where.values()} == {"legacy"}
    assert len({p for _m, p, _port in where.values()}) == 3  # a container per bot
    _status, st = await h.call("GET", "/api/pool/status")
    assert {p["mode"] for p in st["pools"]} == {"legacy"}
    for bot, rows in ROWS.items():
        write_rows(h.pool_dir(where[bot][1]) / "bots" / bot / DB, rows)

    # Pool mode on again: the legacy bots keep running, untouched.
    pids = await h.pids()
    port = str(h.settings.controller_port)
    await h.stop()
    h = await harness_factory(MAX_BOTS_PER_CONTAINER="4", POOL_BASE_PORT="23000",
                              CONTROLLER_PORT=port)  # fmt: skip
    await answering(h, owners)
    assert await h.pids() == pids
    assert await placement(h) == where

    # A dry run prints the plan and changes nothing: files, records, processes.
    before = (tree_digest(h.settings.bot_base_dir), await h.records())
    code, out = await h.migrate("--dry-run", "--verbose")
    assert code == 0, out
    assert "3 bot(s) to migrate" in out
    for bot in owners:
        assert bot in out
    code, out = await h.migrate("--dry-run", "--json")
    plan = json.loads(out)
    assert [b["instanceId"] for b in plan["bots"]] == ["mig-a1", "mig-a2", "mig-b1"]
    assert {b["toPool"] for b in plan["bots"]} == {"pool-4"}
    assert [b["port"] for b in plan["bots"]] == [23012, 23013, 23014]
    after = (tree_digest(h.settings.bot_base_dir), await h.records())
    assert after == before

    # A forced failure (no bot answers within 1 ms) rolls back: the legacy bot runs again.
    code, out = await h.migrate("--execute", "--bot", "mig-b1", "--verify-timeout", "0.001")
    assert code == 1, out
    assert "rolled_back" in out
    assert (await placement(h))["mig-b1"] == where["mig-b1"]
    await answering(h, owners)
    assert rows_of(h, where["mig-b1"][1], "mig-b1") == ROWS["mig-b1"]

    # Alice's bots migrate; Bob's stays where it is.
    code, out = await h.migrate("--execute", "--user", "alice")
    assert code == 0, out
    assert "2 of 2 migrated" in out
    moved = await placement(h)
    assert moved["mig-a1"][:2] == moved["mig-a2"][:2] == ("pooled", "pool-4")
    assert moved["mig-b1"] == where["mig-b1"]
    await answering(h, owners)
    for bot in ("mig-a1", "mig-a2"):
        assert rows_of(h, "pool-4", bot) == ROWS[bot]
        assert not (h.pool_dir(where[bot][1])).exists()  # the legacy pool is gone
    # A re-run skips what is done and migrates the rest.
    code, out = await h.migrate("--execute")
    assert code == 0, out
    assert "1 of 1 migrated" in out
    assert (await placement(h))["mig-b1"][:2] == ("pooled", "pool-4")
    assert rows_of(h, "pool-4", "mig-b1") == ROWS["mig-b1"]
    await answering(h, owners)

    # --status reads the log: every bot's latest run and its steps.
    code, out = await h.migrate("--status", "--verbose")
    assert code == 0, out
    assert "3 bot(s) in the migration log: 3 migrated" in out
    assert "verify" in out and "cleanup" in out
    logged = json.loads((h.settings.bot_base_dir / ".migration-log.json").read_text())
    outcomes = [(r["bot"], r["outcome"]) for r in logged["runs"]]
    assert outcomes == [("mig-b1", "rolled_back"), ("mig-a1", "migrated"),
                        ("mig-a2", "migrated"), ("mig-b1", "migrated")]  # fmt: skip

    # --rollback returns a bot to a legacy container of its own, with its data.
    code, out = await h.migrate("--rollback=mig-a2")
    assert code == 0, out
    mode, pool_id, _port = (await placement(h))["mig-a2"]
    assert mode == "legacy" and pool_id != "pool-4"
    assert rows_of(h, pool_id, "mig-a2") == ROWS["mig-a2"]
    await answering(h, owners)
    code, out = await h.migrate("--rollback=mig-a2")
    assert code == 1 and "legacy container already" in out


async def test_migration_api_checks_its_input_and_role(harness_factory):
    h = await harness_factory()
    await h.provision(ALICE, instanceId="mig-in-1")
    for method, path in [
        ("GET", "/api/pool/migration/plan"),
        ("GET", "/api/pool/migration/log"),
        ("POST", "/api/pool/migration/bots/mig-in-1"),
        ("POST", "/api/pool/migration/bots/mig-in-1/rollback"),
    ]:
        status, body = await h.call(method, path, ALICE)
        assert status == 403 and body["success"] is False, (path, body)
    status, body = await h.call("GET", "/api/pool/migration/plan?bot=../etc")
    assert status == 400, body
    for bad in ({"verifyTimeout": "soon"}, {"verifyTimeout": 0}, {"other": 1}, [1]):
        status, body = await h.call("POST", "/api/pool/migration/bots/mig-in-1", json=bad)
        assert status == 400 and "error" in body, (bad, body)
    status, body = await h.call("POST", "/api/pool/migration/bots/nobody")
    assert status == 404, body
    # A pooled bot is skipped; a user cannot touch a bot while it is held.
    status, body = await h.call("POST", "/api/pool/migration/bots/mig-in-1")
    assert status == 200 and body["run"]["outcome"] == "skipped", body


def processes_per_bot(base_dir: Path, bots: list[str]) -> dict[str, int]:
    return {
        b: sum(len(fakebot_pids(d / "bots" / b)) for d in (base_dir / "pools").iterdir())
        for b in bots
    }


async def test_controller_killed_while_migrating_loses_nothing(tmp_path: Path):
    env = settings_env(tmp_path, POOL_BASE_PORT="23400", MAX_BOTS_PER_CONTAINER="4",
                       POOL_MODE_ENABLED="false")  # fmt: skip
    bots = ["kill-1", "kill-2", "kill-3"]
    first = await ControllerProcess(env).start()
    second = None
    try:
        await first.provision_running(*bots)
        where = await placement(first)
        for bot in bots:
            write_rows(first.pool_dir(where[bot][1]) / "bots" / bot / DB, [(1, bot)])
        log_file = tmp_path / ".migration-log.json"

        def first_bot_backed_up() -> bool:
            runs = json.loads(log_file.read_text())["runs"] if log_file.exists() else []
            return any(s["name"] == "backup" and s["ok"] for r in runs for s in r["steps"])

        migration = asyncio.create_task(first.migrate("--execute"))
        # SIGKILL in the middle of the first bot's move: stopped, backed up, being moved.
        await wait_for(first_bot_backed_up, timeout=60, step=0.01)
        await first.kill()
        code, out = await migration
        assert code == 3, out  # the tool says it lost the controller

        second = await ControllerProcess(env).start()
        # At start-up the held bot is released where its record is: every bot runs once.
        await asyncio.gather(*(second.wait_running(b, timeout=60) for b in bots))
        assert processes_per_bot(tmp_path, bots) == dict.fromkeys(bots, 1)
        code, out = await second.migrate("--execute")
        assert code == 0, out
        final = await placement(second)
        assert {final[b][:2] for b in bots} == {("pooled", "pool-4")}
        await asyncio.gather(*(second.wait_running(b, timeout=60) for b in bots))
        assert processes_per_bot(tmp_path, bots) == dict.fromkeys(bots, 1)
        for bot in bots:
            assert read_rows(second.pool_dir("pool-4") / "bots" / bot / DB) == [(1, bot)]
        assert sorted(p.name for p in (tmp_path / "pools").iterdir()) == ["pool-4"]
        assert not any((tmp_path / "migrating").iterdir())
    finally:
        for process in (first, second):
            if process is not None:
                await process.close()
        kill_pools(tmp_path)


async def test_deleting_a_legacy_bot_removes_its_container(harness_factory):
    h = await harness_factory(POOL_MODE_ENABLED="false", POOL_BASE_PORT="23600")
    await h.provision_running("del-leg")
    pool_id = (await h.bot("del-leg"))["poolId"]
    status, body = await h.call("DELETE", "/api/bots/del-leg")
    assert status == 200 and body["archived"] is True, body

    async def gone() -> bool:
        _status, st = await h.call("GET", "/api/pool/status")
        return st["totalPools"] == 0 and not h.pool_dir(pool_id).exists()

    assert await wait_for(gone, timeout=30)
    [archived] = list((h.settings.bot_base_dir / "archive").iterdir())
    assert archived.name.startswith("del-leg-")  # its data is kept
