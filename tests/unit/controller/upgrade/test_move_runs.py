"""Whole `move` upgrade runs on the real app over a recording runtime whose pools run
images, with agents that obey at once: each bot leaves its old pool (held, its files
handed over) before it lands in the fresh pool on the new image; a bot that does not
answer there goes back and stops the run; the emptied pool goes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import controller.moves.transfer as transfer_module
from controller.app import build, create_app
from controller.moves.transfer import StepFailed
from controller.upgrade.moving import runs_and_connected
from controller.upgrade.run import UpgradeOptions, Upgrader
from tests.support import make_settings
from tests.unit.controller.apps import (
    Api,
    FakeClock,
    bot_dirs,
    connect,
    obey,
    obey_new_pools,
    record_hand_overs,
    write_bot_dir,
)
from tests.unit.controller.upgrade.test_recovery import A, B, ImageRuntime

BOTS = ("b1", "b2")


@pytest.fixture
async def fleet(tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> Api:
    """Two bots in pool-1 on img:a, each with its trade database; every pool made from
    now on has an agent at once; a bot answers its ping unless a test says otherwise."""
    settings = make_settings(tmp_path, MAX_BOTS_PER_CONTAINER="2")
    runtime = ImageRuntime(settings.pools_dir)
    controller = build(settings, runtime=runtime)
    api = Api(await aiohttp_client(create_app(controller)), controller, runtime, FakeClock())
    for bot in BOTS:
        await api.provision(instanceId=bot)
        write_bot_dir(api, f"pools/pool-1/bots/{bot}")
    obey(api, "pool-1")
    obey_new_pools(api, monkeypatch)
    record_hand_overs(api, monkeypatch)

    async def pong(_session: object, _bot: object) -> bool:
        return True

    monkeypatch.setattr(controller.upgrader.transfer, "ping", pong)
    return api


async def upgrade(api: Api, timeout: float = 5) -> Any:
    upgrader = api.controller.upgrader
    run = await upgrader.start(UpgradeOptions(image=B.ref, method="move", timeout=timeout))
    assert upgrader._task is not None
    await upgrader._task
    return run


async def test_every_bot_moves_into_a_fresh_pool_on_the_new_image(fleet: Api) -> None:
    run = await upgrade(fleet)
    registry = fleet.controller.pools.registry
    assert run.outcome == "upgraded", run
    [entry] = run.pools
    assert (entry.method, entry.to_pool, entry.step) == ("move", "pool-2", "upgraded")
    assert sorted(entry.bot_downtime_s) == list(BOTS)
    assert fleet.runtime.launches["pool-2"].image == B.ref
    assert sorted(registry.pools) == ["pool-2"] and not registry.pools["pool-2"].draining
    assert [(b.pool_id, b.port, b.held) for b in map(registry.bots.get, BOTS)] == [
        ("pool-2", 21002, False), ("pool-2", 21003, False),
    ]  # fmt: skip
    assert [bot_dirs(fleet, b) for b in BOTS] == [
        [f"pools/pool-2/bots/{b}: trades of {b}"] for b in BOTS
    ]
    # One bot at a time: out of the old pool through staging, into the fresh one.
    moves = [call for kind, call in fleet.runtime.calls if kind == "hand_over"]
    assert moves == [
        "pools/pool-1/bots/b1>migrating/b1", "migrating/b1>pools/pool-2/bots/b1",
        "pools/pool-1/bots/b2>migrating/b2", "migrating/b2>pools/pool-2/bots/b2",
    ]  # fmt: skip
    # The fresh pool was made (and its agent connected) before any bot left.
    made = fleet.runtime.calls.index(("create", "pool-2"))
    assert made < fleet.runtime.calls.index(("hand_over", moves[0]))
    assert ("remove", "pool-1") in fleet.runtime.calls


async def test_a_bot_silent_on_the_new_image_goes_back_and_stops_the_run(
    fleet: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def silent_there(_session: object, bot: Any) -> bool:
        return bot.pool_id == "pool-1"

    monkeypatch.setattr(fleet.controller.upgrader.transfer, "ping", silent_there)
    run = await upgrade(fleet, timeout=0.5)
    registry = fleet.controller.pools.registry
    assert run.outcome == "rolled_back", run
    [entry] = run.pools
    assert entry.step == "rolled_back" and "b1" in entry.reason and "back in pool-1" in entry.reason
    # Only b1 moved, and came back; b2 never left; the empty fresh pool is gone.
    assert sorted(registry.pools) == ["pool-1"] and not registry.pools["pool-1"].draining
    assert [(b.pool_id, b.held) for b in map(registry.bots.get, BOTS)] == [
        ("pool-1", False), ("pool-1", False),
    ]  # fmt: skip
    assert [bot_dirs(fleet, b) for b in BOTS] == [
        [f"pools/pool-1/bots/{b}: trades of {b}"] for b in BOTS
    ]
    assert ("remove", "pool-2") in fleet.runtime.calls


class Ticking:
    """A clock that moves on `step` seconds at every reading, from `start`."""

    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start - step, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_times_of_a_move_run_are_the_upgraders_clocks(fleet: Api) -> None:
    old = fleet.controller.upgrader
    clock = Ticking(1_000_000.0, 1.5)
    upgrader = Upgrader(fleet.controller.pools, old.transfer, old.guard, old.mover.placement,
                        clock=clock)  # fmt: skip
    run = await upgrader.start(UpgradeOptions(image=B.ref, method="move", timeout=5))
    assert upgrader._task is not None
    await upgrader._task
    assert run.outcome == "upgraded", run
    assert run.started_at == 1_000_000.0
    # From a bot's hold to its first answer there: two readings, one step apart.
    assert run.pools[0].bot_downtime_s == {"b1": 1.5, "b2": 1.5}
    assert run.finished_at == clock.now


async def test_an_agent_that_never_connects_fails_by_the_clock_not_the_wall(fleet: Api) -> None:
    since = time.time() + 3600  # after pool-1's agent connected: it has not since
    clock = Ticking(since, 60.0)
    with pytest.raises(StepFailed, match="did not connect within 120 s"):
        await runs_and_connected(fleet.controller.pools, "pool-1", A, since, 120.0, clock)
    with pytest.raises(StepFailed, match="runs img:a, not img:b"):
        await runs_and_connected(fleet.controller.pools, "pool-1", B, since, 120.0, clock)


async def test_a_hold_that_times_out_releases_the_bot_again(
    make_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent connected but too slow to apply the hold: the move fails, and the bot is
    released at once (nothing was staged), not left held with nothing to start it."""
    monkeypatch.setattr(transfer_module, "HOLD_TIMEOUT", 0.3)
    api = await make_api()
    await api.provision(instanceId="b1")
    connect(api, "pool-1")  # heard from, but it applies nothing
    api.controller.pools.registry.live["pool-1"].features = frozenset({"held"})
    mover = api.controller.upgrader.mover
    with pytest.raises(StepFailed):
        await mover.move_one(api.controller.pools.registry.bots["b1"], "pool-9", "pool-1", 1.0)
    bot = api.controller.pools.registry.bots["b1"]
    assert (bot.pool_id, bot.held) == ("pool-1", False)


async def test_a_bot_its_move_back_left_held_runs_once_its_pool_can_take_it(
    fleet: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node storage, the fresh pool's agent gone after it connected: b1's files never land
    there and cannot be staged back (they go through that agent), so the move back fails,
    b1 held in pool-2 with its only copy in staging. It is not left so until a restart:
    its recovery is tried again, and once that pool's agent is back b1 runs there."""
    from controller.moves import recovery

    transfer = fleet.controller.upgrader.transfer
    place_staged, stage = transfer.place_staged, transfer.stage
    agent = {"there": False}

    async def landing(bot: Any) -> None:
        if bot.pool_id == "pool-2" and not agent["there"]:
            raise StepFailed("the agent of pool-2 did not connect within 300 s")
        await place_staged(bot)

    async def staging(bot: Any) -> None:
        if transfer.registry.bots[bot.id].pool_id == "pool-2" and not agent["there"]:
            raise OSError("the agent of pool-2 is not connected")
        await stage(bot)

    monkeypatch.setattr(transfer, "place_staged", landing)
    monkeypatch.setattr(transfer, "stage", staging)
    run = await upgrade(fleet)
    assert run.outcome != "upgraded", run
    registry = fleet.controller.pools.registry
    assert (registry.bots["b1"].pool_id, registry.bots["b1"].held) == ("pool-2", True)
    assert bot_dirs(fleet, "b1") == ["migrating/b1: trades of b1"]
    assert "b1" in transfer.stranded
    agent["there"] = True
    await recovery.retry(transfer, fleet.controller.guard, "b1")
    assert (registry.bots["b1"].pool_id, registry.bots["b1"].held) == ("pool-2", False)
    assert bot_dirs(fleet, "b1") == ["pools/pool-2/bots/b1: trades of b1"]
    assert "b1" not in transfer.stranded
