"""The one crash recovery of every move: a controller that died in the middle of a move
(an evacuation's or a migration's) is followed by one that starts over the same files,
and finds each bot in exactly one pool, released, with its own files there."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import replace
from typing import Any

import pytest

from controller.moves.transfer import Transfer
from tests.unit.controller.apps import (
    Api,
    ApiFactory,
    bot_dirs,
    connect,
    events_of,
    obey,
    obey_new_pools,
    write_bot_dir,
)
from tests.unit.controller.moves.test_failover import bot_db, lose_node, write_point


class Crash(BaseException):
    """The controller dies here: nothing after it runs, no handler of errors either."""


def crash_at(api: Api, monkeypatch: pytest.MonkeyPatch, step: str, bot_id: str) -> None:
    """The controller dies as the transfer of `bot_id` begins `step`."""
    transfer: Transfer = api.controller.transfer
    original = getattr(transfer, step)

    async def dying(bot: Any, *args: Any, **kw: Any) -> Any:
        if bot.id == bot_id:
            raise Crash(f"killed as {bot_id} began {step}")
        return await original(bot, *args, **kw)

    monkeypatch.setattr(transfer, step, dying)


def running_once(api: Api) -> dict[str, str]:
    """Each bot, by the pool whose desired state runs it; a bot in two would show."""
    registry = api.controller.pools.registry
    found = [(s.id, pool_id, s.run) for pool_id in registry.pools
             for s in registry.desired(pool_id).bots]  # fmt: skip
    assert len({bot for bot, _pool, _run in found}) == len(found), found
    assert all(run == "running" for _bot, _pool, run in found), found
    return {bot: pool for bot, pool, _run in found}


@pytest.mark.parametrize(
    ("step", "bot_id", "where"),
    [
        ("relocate", "b1", "pool-1"),  # staged, not relocated: back in the lost pool
        ("land", "b1", "pool-2"),  # relocated to a pool with an agent, not landed
        ("land", "b2", "pool-3"),  # relocated to a new pool, not landed, the pool not made
    ],
)
async def test_an_evacuation_cut_short_is_finished_by_the_next_start(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch, step: str, bot_id: str, where: str
) -> None:
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="2")
    for bot in ("b1", "b2", "b3"):
        await api.provision(instanceId=bot)  # pool-1: b1, b2; pool-2: b3
    obey(api, "pool-2")
    obey_new_pools(api, monkeypatch)
    for bot in ("b1", "b2"):
        write_bot_dir(api, f"pools/pool-1/bots/{bot}")
    crash_at(api, monkeypatch, step, bot_id)
    api.runtime.launches.pop("pool-1")  # lost
    with pytest.raises(Crash):
        await api.controller.evacuation.evacuate(api.controller.pools.registry.pools["pool-1"])
    assert api.controller.pools.registry.bots[bot_id].held
    assert bot_dirs(api, bot_id) == [f"migrating/{bot_id}: trades of {bot_id}"]

    again: Api = await make_api(MAX_BOTS_PER_CONTAINER="2")
    registry = again.controller.pools.registry
    assert registry.bots[bot_id].pool_id == where and not registry.bots[bot_id].held
    placed = running_once(again)
    for bot in ("b1", "b2"):
        assert bot_dirs(again, bot) == [f"pools/{placed[bot]}/bots/{bot}: trades of {bot}"]
    # Its pool was made at this start, after its files were there (adopt runs after).
    assert ("create", where) in again.runtime.calls
    # The lost pool takes bots again while it has any (if still lost, it is evacuated
    # again); emptied, it waits for cleanup like any empty pool.
    pool_1 = registry.pools["pool-1"]
    assert pool_1.draining is (not registry.bots_in("pool-1"))
    await again.controller.pools.lifecycle.cleanup(0)
    assert ("pool-1" in registry.pools) is bool(registry.bots_in("pool-1"))


async def test_a_migration_cut_short_is_finished_by_the_same_path(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api: Api = await make_api(POOL_MODE_ENABLED="false")
    await api.provision(instanceId="leg-1")  # pool-1: a legacy pool of its own
    obey(api, "pool-1")
    obey_new_pools(api, monkeypatch)
    write_bot_dir(api, "pools/pool-1/bots/leg-1")
    crash_at(api, monkeypatch, "land", "leg-1")
    with pytest.raises(Crash):
        await api.controller.migrator.migrate("leg-1", verify_timeout=5)
    assert bot_dirs(api, "leg-1") == ["migrating/leg-1: trades of leg-1"]

    again: Api = await make_api(POOL_MODE_ENABLED="false")
    bot = again.controller.pools.registry.bots["leg-1"]
    assert (bot.pool_id, bot.held) == ("pool-2", False)
    assert running_once(again) == {"leg-1": "pool-2"}
    assert bot_dirs(again, "leg-1") == ["pools/pool-2/bots/leg-1: trades of leg-1"]


async def test_the_recovery_moves_only_staged_files_and_never_overwrites(
    make_api: ApiFactory,
) -> None:
    """A directory of a bot in some pool's directory is never taken from there (that pool
    may run it); staged files that would overwrite a directory stay staged, and their
    bot stays held, for an operator, while every other bot starts."""
    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1")
    for bot in ("b1", "b2", "b3"):
        await api.provision(instanceId=bot)  # pool-1, pool-2, pool-3
    store, registry = api.controller.pools.store, api.controller.pools.registry
    for bot in ("b1", "b2", "b3"):
        await registry.apply(await store.update_bot(bot, held=1))
    write_bot_dir(api, "pools/pool-9/bots/b1")  # b1's files elsewhere, not staged
    write_bot_dir(api, "migrating/b2")
    write_bot_dir(api, "migrating/b3")
    write_bot_dir(api, "pools/pool-3/bots/b3")  # in the way of b3's staged files

    again: Api = await make_api(MAX_BOTS_PER_CONTAINER="1")
    bots = again.controller.pools.registry.bots
    assert [(b, bots[b].held) for b in ("b1", "b2", "b3")] == [
        ("b1", False), ("b2", False), ("b3", True)
    ]  # fmt: skip
    assert bot_dirs(again, "b1") == ["pools/pool-9/bots/b1: trades of b1"]
    assert bot_dirs(again, "b2") == ["pools/pool-2/bots/b2: trades of b2"]
    assert bot_dirs(again, "b3") == [
        "migrating/b3: trades of b3",
        "pools/pool-3/bots/b3: trades of b3",
    ]
    assert [s.run for s in again.controller.pools.registry.desired("pool-3").bots] == ["held"]
    # Left held, it is an event (its user sees it too), not a log line alone.
    [event] = await events_of(again, "bot_move_failed", 1)
    assert (event.bot_id, event.user_id, event.reason) == ("b3", "admin", "recovery_failed")


async def test_a_failover_cut_short_is_taken_up_again_never_landed_in_the_lost_pool(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A controller that died failing over a pool: at its next start the abandoned pool is
    neither recreated nor un-drained, its held bot's staged backup is not landed in it (its
    directory is the lost node's), and the monitor fails it over again from its backups."""
    api = await lose_node(make_api, monkeypatch)
    settings = {"MAX_BOTS_PER_CONTAINER": "2", "POOL_GRACE": "1",
                "AGENT_FENCE_TIMEOUT": "10000", "AGENT_FENCE_MARGIN": "5000"}  # fmt: skip
    write_point(api, "pool-1", "b1", time.time() + 1, "b1's backup")
    write_bot_dir(api, "pools/pool-1/bots/b1")  # the lost node's disk (shared storage)
    crash_at(api, monkeypatch, "relocate", "b1")
    api.clock.advance(15)
    with pytest.raises(Crash):
        await api.controller.monitor.failover.fail_over(
            api.controller.pools.registry.pools["pool-1"], api.clock() - 15)  # fmt: skip

    again: Api = await make_api(**settings)
    registry = again.controller.pools.registry
    pool = registry.pools["pool-1"]
    assert (pool.abandoned, pool.draining) == (True, True)
    assert all(registry.bots[b].held for b in ("b1", "b2"))
    assert ("create", "pool-1") not in again.runtime.calls  # not made again on a ready node
    base = again.controller.settings.bot_base_dir
    assert (base / "migrating" / "b1" / "tradesv3.dryrun.sqlite").read_text() == "b1's backup"
    lost = base / "pools" / "pool-1" / "bots" / "b1"  # nothing landed there
    assert sorted(p.name for p in lost.iterdir()) == ["user_data"]
    obey_new_pools(again, monkeypatch)
    await again.controller.monitor.evaluate()  # seen missing: unreachable, being failed over
    again.clock.advance(16)  # its fence, counted from this start, and the margin
    report = await again.controller.monitor.evaluate()
    assert {"action": "failover", "poolId": "pool-1", "ok": True} in report.recovery_actions
    b1, b2 = registry.bots["b1"], registry.bots["b2"]
    assert (b1.pool_id, b1.run, b1.held) == ("pool-2", "running", False)
    assert (b2.pool_id, b2.run, b2.held) == ("pool-2", "stopped", False)  # no backup
    assert bot_db(again, "b1") == "b1's backup"
    assert ("create", "pool-1") not in again.runtime.calls


async def test_on_node_storage_staged_files_wait_for_their_pools_agent(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POOL_STORAGE=node: staged files land only through their pool's agent, which is not
    connected at start-up: their bot stays held (its agent runs nothing of it) until
    land_later has landed them: not tried while the agent is away, tried again after a
    failure once its backoff has passed; a bot with nothing staged is released at once."""
    from controller.moves import recovery

    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1")
    for bot in ("b1", "b2"):
        await api.provision(instanceId=bot)
    store, registry = api.controller.pools.store, api.controller.pools.registry
    for bot in ("b1", "b2"):
        await registry.apply(await store.update_bot(bot, held=1))
    write_bot_dir(api, "migrating/b2")
    transfer: Transfer = api.controller.transfer
    guard = api.controller.guard
    transfer.files = object()  # type: ignore[assignment]  # through the agents
    attempts: list[str] = []

    async def land(bot: Any, created: bool, token: str) -> None:
        attempts.append(bot.id)
        if len(attempts) == 1:
            raise OSError("the agent of pool-2 went away")
        shutil.rmtree(transfer.staging / bot.id)  # landed

    monkeypatch.setattr(transfer, "land", land)
    await recovery.recover_moves(transfer, guard)
    assert (registry.bots["b1"].held, registry.bots["b2"].held) == (False, True)
    assert [s.run for s in registry.desired("pool-2").bots] == ["held"]
    assert "b2" in transfer.stranded and transfer.stranded.due() == ["b2"]
    async with guard.lock:  # a move runs: its agent is not there, so not even waited for
        await asyncio.wait_for(recovery.retry(transfer, guard, "b2"), 5)
    assert attempts == [] and "b2" in transfer.stranded
    connect(api, "pool-2")
    await recovery.retry(transfer, guard, "b2")
    assert attempts == ["b2"] and registry.bots["b2"].held
    assert transfer.stranded.due() == []  # after its backoff
    [failed] = await events_of(api, "bot_move_failed", 1)
    assert (failed.bot_id, failed.reason, failed.detail["held"]) == ("b2", "recovery_failed", True)
    api.clock.advance(10)
    assert transfer.stranded.due() == ["b2"]
    await recovery.retry(transfer, guard, "b2")
    assert attempts == ["b2", "b2"] and not registry.bots["b2"].held
    assert "b2" not in transfer.stranded


async def test_land_later_outlives_any_error_and_drops_bots_no_longer_its_own(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error of any kind (an archive refused is a ValueError) is logged and the bot
    stays queued; a bot released, deleted or in an abandoned pool leaves the queue."""
    from controller.moves import recovery

    api: Api = await make_api(MAX_BOTS_PER_CONTAINER="1")
    for bot in ("b1", "b2"):
        await api.provision(instanceId=bot)
    store, registry = api.controller.pools.store, api.controller.pools.registry
    transfer: Transfer = api.controller.transfer
    for bot in ("b1", "b2"):
        await registry.apply(await store.update_bot(bot, held=1))
        transfer.stranded.add(registry.bots[bot], "its move failed", failed=False)

    async def refused(bot: Any) -> Any:
        raise ValueError("a broken tar archive")

    monkeypatch.setattr(transfer, "recover", refused)
    await recovery.retry(transfer, api.controller.guard, "b1")
    assert "b1" in transfer.stranded and not api.controller.guard.lock.locked()
    await registry.apply(await store.update_bot("b2", held=0))  # released by someone else
    await recovery.retry(transfer, api.controller.guard, "b2")
    assert "b2" not in transfer.stranded
    assert recovery.retry_action(None, None, False, False) == "drop"
    b1, pool = registry.bots["b1"], registry.pools["pool-1"]
    assert recovery.retry_action(b1, pool, True, False) == "wait"
    assert recovery.retry_action(b1, pool, True, True) == "retry"
    assert recovery.retry_action(b1, replace(pool, abandoned=True), True, True) == "drop"


def test_a_stranded_bots_retries_back_off_to_five_minutes() -> None:
    from controller.moves.stranded import backoff

    assert [backoff(n) for n in (0, 1, 2, 3, 5, 9)] == [10, 10, 20, 40, 160, 300]
