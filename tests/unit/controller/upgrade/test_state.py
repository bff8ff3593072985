"""An upgrade run survives the store as it was, and a later version's fields are dropped."""

from __future__ import annotations

import json

from controller.upgrade.state import PoolUpgrade, UpgradeRun


def test_a_run_round_trips_and_ignores_fields_it_does_not_know() -> None:
    run = UpgradeRun("upgrade-1", "img:b", "sha256:b", options={"canary": 1},
                     pools=[PoolUpgrade("p1", "img:a", "sha256:a", 3, canary=True,
                                        step="upgraded", bot_downtime_s={"b1": 4.2})])  # fmt: skip
    assert UpgradeRun.load(run.dump()) == run
    raw = json.loads(run.dump())
    raw["future"] = 1
    raw["pools"][0]["future"] = 2
    assert UpgradeRun.load(json.dumps(raw)) == run
    assert not run.finished
