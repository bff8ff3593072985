"""Failover: the bots of a pool on an unreachable node start elsewhere from their latest
backups, once its agent has surely fenced, as the monitor runs it over the real app."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from common.protocol import Hello
from common.restore_points import CHECKED, stamp_of, time_of
from controller.backups.points import RestorePoint, checked_at
from controller.errors import Conflict
from controller.moves.restore_points import recovery_point
from controller.pools.live import hash_token
from tests.unit.controller.apps import (
    Api,
    ApiFactory,
    events_of,
    obey,
    obey_new_pools,
    write_bot_dir,
)

DB = "tradesv3.dryrun.sqlite"


def write_point(api: Api, pool_id: str, bot_id: str, at: float, content: str) -> str:
    """A restore point as the pool's agent writes it to the backup target; its id."""
    root = api.controller.settings.backups_path
    assert root is not None
    directory = root / "pools" / pool_id / bot_id / DB
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stamp_of(at)}.sqlite").write_text(content)
    return f"{DB}@{stamp_of(at)}"


def bot_db(api: Api, bot_id: str) -> str:
    pool_id = api.controller.pools.registry.bots[bot_id].pool_id
    return (api.controller.settings.pools_dir / pool_id / "bots" / bot_id / DB).read_text()


def fail_once(monkeypatch: pytest.MonkeyPatch, obj: object, name: str, error: Exception) -> None:
    """obj's coroutine method `name` raises `error` the first time it is called."""
    real, calls = getattr(obj, name), []

    async def failing_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        if len(calls) == 1:
            raise error
        return await real(*args, **kwargs)

    monkeypatch.setattr(obj, name, failing_once)


async def lose_node(make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch) -> Api:
    """Fencing of 10 s with a margin of 5 s; b1 and b2 in pool-1, whose node is lost: its
    agent last heard from now."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2", POOL_GRACE="1",
                              AGENT_FENCE_TIMEOUT="10000", AGENT_FENCE_MARGIN="5000")  # fmt: skip
    for bot_id in ("b1", "b2"):
        await api.provision(instanceId=bot_id)
    obey(api, "pool-1")
    obey_new_pools(api, monkeypatch)
    live = api.controller.pools.registry.live["pool-1"]
    live.ws = None  # cut off
    live.last_seen = live.disconnected_at = api.clock()
    api.runtime.unreachable.add("pool-1")
    return api


async def test_a_pool_on_a_lost_node_fails_over_from_backups_after_the_fence(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    registry = api.controller.pools.registry
    now = time.time()
    write_point(api, "pool-1", "b1", now + 1, "b1 at +1")
    newest = write_point(api, "pool-1", "b1", now + 2, "b1 at +2")
    # What the lost node's disk holds: never read (in a real swarm, not even reachable).
    write_bot_dir(api, "pools/pool-1/bots/b1")

    api.clock.advance(14.9)  # within AGENT_FENCE_TIMEOUT + AGENT_FENCE_MARGIN: it waits
    report = await api.controller.monitor.evaluate()
    assert report.recovery_actions == [] and registry.bots["b1"].pool_id == "pool-1"
    assert ("restart", "pool-1") not in api.runtime.calls  # never restarted in place

    api.clock.advance(0.1)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions
    assert ("abandon", "pool-1") in api.runtime.calls
    assert ("discard", "pool-1") not in api.runtime.calls  # not confirmable: not waited for
    b1, b2 = registry.bots["b1"], registry.bots["b2"]
    assert (b1.pool_id, b1.run, b1.held) == ("pool-2", "running", False)
    assert bot_db(api, "b1") == "b1 at +2"  # its newest restore point, not the lost disk's
    # b2 has no backup: moved, but stopped rather than trading without its trade database.
    assert (b2.pool_id, b2.run, b2.held) == ("pool-2", "stopped", False)
    # The old pool stays, empty and draining, for the cleanup: its directory is the lost
    # node's, untouched.
    assert registry.pools["pool-1"].draining and not registry.bots_in("pool-1")
    assert (api.controller.settings.pools_dir / "pool-1" / "bots" / "b1").is_dir()

    [moved] = await events_of(api, "bot_failed_over", 1)
    assert (moved.bot_id, moved.pool_id, moved.reason) == ("b1", "pool-2", "node_lost")
    assert moved.detail["fromPool"] == "pool-1" and moved.detail["restorePoint"] == newest
    assert moved.detail["lostSeconds"] == 0  # made after the pool was last heard from
    assert moved.detail["ageSeconds"] >= 0
    [failed] = await events_of(api, "bot_move_failed", 1)
    assert (failed.bot_id, failed.reason, failed.detail["restorePoint"]) == (
        "b2", "no_backup", None)  # fmt: skip

    # Looked at again: the abandoned pool, missing now, is not made again.
    api.clock.advance(10)
    report = await api.controller.monitor.evaluate()
    assert not [a for a in report.recovery_actions if a["poolId"] == "pool-1"]
    assert api.runtime.calls.count(("create", "pool-1")) == 1


async def test_the_agents_own_longer_fence_timeout_is_waited_for(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    # Its agent said in its hello that it fences after 60 s (made before a change, say).
    api.controller.pools.registry.live["pool-1"].fence_timeout = 60.0
    api.clock.advance(64.9)
    assert (await api.controller.monitor.evaluate()).recovery_actions == []
    api.clock.advance(0.1)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions


async def test_a_failover_cut_short_is_taken_up_again_not_the_pool_made_again(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    write_point(api, "pool-1", "b2", time.time() + 1, "b2's")
    registry = api.controller.pools.registry
    transfer = api.controller.transfer
    relocate = transfer.relocate
    calls = []

    async def fails_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the store's disk hiccupped")
        return await relocate(*args, **kwargs)

    monkeypatch.setattr(transfer, "relocate", fails_once)
    api.clock.advance(15)
    report = await api.controller.monitor.evaluate()
    assert [a["ok"] for a in report.recovery_actions] == [False]
    # Left held in the abandoned pool (nothing may run it there) for the next round.
    assert registry.bots["b1"].pool_id == "pool-1" and registry.bots["b1"].held
    api.clock.advance(3)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions
    assert {registry.bots[b].pool_id for b in ("b1", "b2")} == {"pool-2"}
    assert api.runtime.calls.count(("create", "pool-1")) == 1  # never made again
    assert bot_db(api, "b2") == "b2's"


def test_the_recovery_point_an_event_states() -> None:
    def point(at: float) -> RestorePoint:
        return RestorePoint(DB, stamp_of(at), "pool-1", Path("/x"), 1)

    assert recovery_point([], 0.0, 100.0, 200.0) == {"restorePoint": None}
    points = [point(1000.0), point(1090.0)]
    stated = recovery_point(points, 1090.0, heard_at=1095.0, now=1120.0)
    assert stated["restorePoint"] == f"{DB}@{stamp_of(1090.0)}"
    assert (stated["ageSeconds"], stated["lostSeconds"]) == (30.0, 5.0)
    assert stated["pointTime"].startswith("1970-01-01T00:18:10")
    # Found unchanged by a later round, 2 s before the pool was last heard from.
    assert recovery_point(points, 1093.0, heard_at=1095.0, now=1120.0)["lostSeconds"] == 2.0
    # Made during the partition (the target still reachable from the node): nothing lost.
    assert recovery_point([point(1100.0)], 1100.0, 1095.0, 1120.0)["lostSeconds"] == 0


def test_a_database_unchanged_since_its_point_counts_from_its_last_check(tmp_path: Path) -> None:
    directory = tmp_path / DB
    directory.mkdir()
    old, new = stamp_of(1000.0), stamp_of(1090.0)
    for stamp in (old, new):
        (directory / f"{stamp}.sqlite").write_text("db")

    def at(stamp: str, local: bool = True) -> RestorePoint:
        path = directory / f"{stamp}.sqlite"
        return RestorePoint(DB, stamp, "pool-1", path, 2, local=local)

    assert checked_at(at(new)) == time_of(new)  # no mark (an agent from before it)
    (directory / CHECKED).write_text(new)
    os.utime(directory / CHECKED, (1120.0, 1120.0))
    assert checked_at(at(new)) == 1120.0
    assert checked_at(at(old)) == time_of(old)  # the mark is the newest's only
    assert checked_at(at(new, local=False)) == time_of(new)  # from the bucket: its own time


async def test_a_connected_agent_is_never_failed_over_and_the_wait_counts_from_its_close(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    assert api.controller.pools.agent_heartbeat == 2.5  # a quarter of the fence, as agents'
    live = api.controller.pools.registry.live["pool-1"]
    # Silent (no heartbeat) but its connection open: pings go on, its agent is in contact
    # and has not fenced.
    live.ws = FakeSocket()
    api.clock.advance(30)
    assert (await api.controller.monitor.evaluate()).recovery_actions == []
    # The connection closes (1.5 ping periods after the last data): the agent may have
    # heard the controller until then, so its fence counts from there, and so does the wait.
    live.ws, live.disconnected_at = None, api.clock()
    api.clock.advance(14.9)
    assert (await api.controller.monitor.evaluate()).recovery_actions == []
    api.clock.advance(0.1)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions


class FakeSocket:
    closed = False


async def test_bots_never_fail_over_into_another_pool_whose_agent_is_gone(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    await api.provision(instanceId="b3")  # pool-2, a slot to spare
    # pool-2 is on the lost node too (placement does not know nodes); its agent, gone a
    # little later, has not surely fenced yet.
    live = api.controller.pools.registry.live["pool-2"]
    live.ws, live.last_seen = None, api.clock() + 10
    api.runtime.unreachable.add("pool-2")
    api.clock.advance(15)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions
    registry = api.controller.pools.registry
    assert {registry.bots[b].pool_id for b in ("b1", "b2")} == {"pool-3"}
    assert registry.bots["b3"].pool_id == "pool-2"


async def test_a_backup_that_cannot_be_read_now_is_tried_again_not_taken_for_none(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    registry = api.controller.pools.registry
    write_point(api, "pool-1", "b1", time.time() + 1, "b1's")
    write_point(api, "pool-1", "b2", time.time() + 1, "b2's")
    backups = api.controller.monitor.failover.backups
    fail_once(monkeypatch, backups, "stage_latest", OSError("the backup target did not answer"))
    api.clock.advance(15)
    report = await api.controller.monitor.evaluate()
    assert [a["ok"] for a in report.recovery_actions] == [False]
    # Not moved stopped for a passing error: its user's choice stands.
    assert registry.bots["b1"].run == "running"
    api.clock.advance(3)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions
    for bot_id in ("b1", "b2"):
        bot = registry.bots[bot_id]
        assert (bot.pool_id, bot.run, bot.held) == ("pool-2", "running", False)
        assert bot_db(api, bot_id) == f"{bot_id}'s"


@pytest.mark.parametrize("other", ["connected_but_unreachable", "not_connected_since_start"])
async def test_bots_never_fail_over_into_a_pool_that_is_suspect_or_not_running(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch, other: str
) -> None:
    api = await lose_node(make_api, monkeypatch)
    await api.provision(instanceId="b3")  # pool-2, a slot to spare
    live = api.controller.pools.registry.live["pool-2"]
    if other == "connected_but_unreachable":
        # Its agent still connected (not yet cut off), its node down as Swarm sees it.
        obey(api, "pool-2")
        api.runtime.unreachable.add("pool-2")
    else:
        # Its agent has not connected since the controller started: where it is, unknown.
        live.ws, live.connected_at = None, 0.0
    api.clock.advance(15)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions
    registry = api.controller.pools.registry
    assert {registry.bots[b].pool_id for b in ("b1", "b2")} == {"pool-3"}


async def test_no_bot_of_a_pool_being_failed_over_may_run_there_nor_its_agent_come_back(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bots move one at a time: while b1 is staged, b2 must already be held in its old
    pool's desired state, and its agent, back from a short partition with the token it
    had, is refused (it stays fenced) rather than told to run b2 beside its new copy."""
    api = await lose_node(make_api, monkeypatch)
    registry, sessions = api.controller.pools.registry, api.controller.pools.sessions
    old_token = api.runtime.launches["pool-1"].token
    for bot_id in ("b1", "b2"):
        write_point(api, "pool-1", bot_id, time.time() + 1, bot_id)
    backups = api.controller.monitor.failover.backups
    stage_latest, seen = backups.stage_latest, []

    async def stage(bot, target):  # type: ignore[no-untyped-def]
        seen.append({b.id: b.run for b in registry.desired("pool-1").bots})
        back = Hello("pool-1", old_token, "t", 2, registry.pools["pool-1"].port_start)
        seen.append(sessions.verify_hello(back))
        return await stage_latest(bot, target)

    monkeypatch.setattr(backups, "stage_latest", stage)
    api.clock.advance(15)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions
    assert seen[0] == {"b1": "held", "b2": "held"} and seen[1] is False
    assert seen[2] == {"b2": "held"}  # b1 has left


async def test_an_agent_back_before_its_failover_starts_stops_it_and_is_judged_again(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    registry, failover = api.controller.pools.registry, api.controller.monitor.failover
    heard_at = registry.live["pool-1"].contact_ended
    obey(api, "pool-1")  # reconnected (its token unchanged) before the failover ran
    with pytest.raises(Conflict, match="is back"):
        await failover.fail_over(registry.pools["pool-1"], heard_at)
    pool = registry.pools["pool-1"]
    assert not pool.draining and ("abandon", "pool-1") not in api.runtime.calls
    assert not any(b.held for b in registry.bots_in("pool-1"))
    # Not connected, but it spoke after what the judge saw: the same.
    registry.live["pool-1"].ws = None
    with pytest.raises(Conflict, match="is back"):
        await failover.fail_over(registry.pools["pool-1"], heard_at)
    assert registry.pools["pool-1"].token_hash == pool.token_hash


async def test_an_agent_that_got_in_as_its_pool_was_abandoned_applies_the_hold_and_goes(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    registry, store = api.controller.pools.registry, api.controller.pools.store
    abandon_pool = store.abandon_pool
    agent: list[object] = []

    async def agent_gets_in_meanwhile(pool_id, token_hash):  # type: ignore[no-untyped-def]
        obey(api, pool_id)  # its hello passed with the old token just before the write
        agent.append(registry.live[pool_id].ws)
        return await abandon_pool(pool_id, token_hash)

    monkeypatch.setattr(store, "abandon_pool", agent_gets_in_meanwhile)
    await api.controller.monitor.failover.fail_over(
        registry.pools["pool-1"], registry.live["pool-1"].contact_ended)  # fmt: skip
    [ws] = agent
    assert ws.closed and registry.live["pool-1"].bots == {}  # it applied the hold, and went
    assert {registry.bots[b].pool_id for b in ("b1", "b2")} == {"pool-2"}
    assert hash_token(api.runtime.launches["pool-2"].token) == registry.pools["pool-2"].token_hash


async def test_a_new_pool_with_a_failed_over_pools_number_is_recreated_not_failed_over(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    registry = api.controller.pools.registry
    api.clock.advance(15)
    await api.controller.monitor.evaluate()
    assert {registry.bots[b].pool_id for b in ("b1", "b2")} == {"pool-2"}
    assert await api.controller.pools.lifecycle.remove_empty(registry.pools["pool-1"])
    await api.provision(instanceId="b3")  # pool-2 is full: a new pool-1, on a ready node
    assert registry.bots["b3"].pool_id == "pool-1" and not registry.pools["pool-1"].abandoned
    obey(api, "pool-1")
    # Its service goes missing (an operator's `docker service rm`), its agent with it.
    api.runtime.launches.pop("pool-1")
    live = registry.live["pool-1"]
    live.ws, live.last_seen = None, api.clock()
    api.clock.advance(60)
    report = await api.controller.monitor.evaluate()
    assert {"action": "recreate", "poolId": "pool-1", "ok": True} in report.recovery_actions
    assert registry.bots["b3"].pool_id == "pool-1"


async def test_a_failover_waits_for_a_running_move_instead_of_failing_again_and_again(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    registry, monitor = api.controller.pools.registry, api.controller.monitor
    lock = monitor.failover.guard.lock
    await lock.acquire()  # one pool of a node's drain is moving
    api.clock.advance(15)
    report = await monitor.evaluate(wait=False)
    await asyncio.sleep(0.05)
    assert report.recovery_actions == [] and registry.bots["b1"].pool_id == "pool-1"
    assert await monitor.evaluate(wait=False)  # judged again meanwhile: still the one recovery
    lock.release()  # that pool's move ends
    await asyncio.wait(list(monitor._recoveries.values()))
    assert report.recovery_actions == [{"action": "failover", "poolId": "pool-1", "ok": True}]
    assert {registry.bots[b].pool_id for b in ("b1", "b2")} == {"pool-2"}
    [done] = await events_of(api, "pool_recovery", 1)
    assert done.detail.get("ok") is True


async def test_a_directory_an_export_staged_moves_as_it_is_not_replaced_by_backups(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its old pool's agent exported it (that copy gone), then the controller stopped before
    relocating it, and the node was lost: staging holds the newest copy, never overwritten
    by an older backup."""
    api = await lose_node(make_api, monkeypatch)
    registry, store = api.controller.pools.registry, api.controller.pools.store
    write_point(api, "pool-1", "b1", time.time() + 1, "b1's backup")
    staged = api.controller.transfer.staging / "b1"
    staged.mkdir(parents=True)
    (staged / DB).write_text("b1 as exported")
    (staged / "user_data.txt").write_text("its other files")
    await registry.apply(await store.update_bot("b1", held=1))
    api.clock.advance(15)
    report = await api.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions
    b1 = registry.bots["b1"]
    assert (b1.pool_id, b1.run, b1.held) == ("pool-2", "running", False)
    assert bot_db(api, "b1") == "b1 as exported"
    pools_dir = api.controller.settings.pools_dir
    assert (pools_dir / "pool-2" / "bots" / "b1" / "user_data.txt").read_text() == (
        "its other files"
    )
    assert not staged.exists()
    moved = [e for e in await events_of(api, "bot_failed_over", 1) if e.bot_id == "b1"]
    assert moved[0].detail["staged"] is True and moved[0].detail["lostSeconds"] == 0


async def test_backups_a_failed_round_staged_are_staged_afresh_next_round(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await lose_node(make_api, monkeypatch)
    registry = api.controller.pools.registry
    write_point(api, "pool-1", "b1", time.time() + 1, "b1 at +1")
    transfer = api.controller.transfer
    fail_once(monkeypatch, transfer, "relocate", OSError("no slot now"))
    api.clock.advance(15)
    await api.controller.monitor.evaluate()
    assert registry.bots["b1"].pool_id == "pool-1" and not transfer.staged("b1")
    newest = write_point(api, "pool-1", "b1", time.time() + 2, "b1 at +2")
    api.clock.advance(3)
    await api.controller.monitor.evaluate()
    assert registry.bots["b1"].pool_id == "pool-2" and bot_db(api, "b1") == "b1 at +2"
    [moved] = [e for e in await events_of(api, "bot_failed_over", 1) if e.bot_id == "b1"]
    assert moved.detail["restorePoint"] == newest
