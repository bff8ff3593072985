"""A `move` upgrade a dead controller left behind, at the next start (after the moves'
crash recovery put each held bot where the store has it): by where the pool's bots are,
the emptied old pool goes, or the empty fresh one goes, or both stay, each taking bots
again; the run ends "interrupted"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.app import build, create_app
from controller.upgrade.plan import CREATING, FAILED, MOVE, MOVING, NOT_STARTED, UPGRADED
from controller.upgrade.state import PoolUpgrade, UpgradeRun
from tests.support import make_settings
from tests.unit.controller.apps import Api, FakeClock
from tests.unit.controller.upgrade.test_recovery import A, B, ImageRuntime


@pytest.mark.parametrize(
    ("step", "moved", "step_after", "pools_after"),
    [
        (CREATING, 0, NOT_STARTED, ["pool-1"]),  # the fresh pool, empty, goes
        (MOVING, 1, FAILED, ["pool-1", "pool-2"]),  # split: both run their bots
        (MOVING, 2, UPGRADED, ["pool-2"]),  # all moved: the emptied old pool goes
    ],
)
async def test_a_move_cut_short_ends_by_where_its_bots_are(
    tmp_path: Path, aiohttp_client: Any, step: str, moved: int, step_after: str,
    pools_after: list[str],
) -> None:  # fmt: skip
    settings = make_settings(tmp_path, MAX_BOTS_PER_CONTAINER="2")
    runtime = ImageRuntime(settings.pools_dir)
    controller = build(settings, runtime=runtime)
    api = Api(await aiohttp_client(create_app(controller)), controller, runtime, FakeClock())
    for bot in ("b1", "b2"):
        await api.provision(instanceId=bot)  # both in pool-1, on img:a
    # The dead controller's fresh pool on img:b, and the bots it had moved into it.
    store, registry = controller.store, controller.pools.registry
    placement = controller.upgrader.mover.placement
    await registry.apply(await store.new_pool(placement, "", None, 2))
    await registry.apply(await store.set_draining("pool-1", True))
    for bot in ("b1", "b2")[:moved]:
        await registry.apply(await store.relocate(bot, placement, "", held=False, into="pool-2"))
    run = UpgradeRun("upgrade-1", B.ref, B.id, pools=[
        PoolUpgrade("pool-1", A.ref, A.id, 2, method=MOVE, to_pool="pool-2", step=step),
    ])  # fmt: skip
    await store.save_upgrade(run.id, run.started_at, False, run.dump())

    await controller.upgrader.recover()

    kept = [UpgradeRun.load(doc) for doc in await store.upgrades()]
    assert [(r.outcome, r.pools[0].step) for r in kept] == [("interrupted", step_after)]
    assert sorted(registry.pools) == pools_after
    assert not any(p.draining for p in registry.pools.values())  # each takes bots again
    assert sorted(b.id for b in registry.bots.values()) == ["b1", "b2"]
