"""The upgrade's pure decisions: which pools go, in what order, the canary, what a
restarted controller does with each pool a run left, and a run's outcome."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.protocol import BotStatus
from common.states import ProcessState, RunState
from controller.records import BotRecord, BotSecrets
from controller.runtimes.base import ImageInfo
from controller.upgrade.plan import (
    CREATING,
    FAILED,
    MOVE,
    MOVING,
    NOT_STARTED,
    PENDING,
    RECREATE,
    REPLACING,
    ROLLED_BACK,
    ROLLING_BACK,
    STOPPING,
    UPGRADED,
    VERIFYING,
    PoolView,
    Selection,
    move_order,
    move_recovery,
    plan_upgrade,
    pool_method,
    recovery_action,
    run_outcome,
    unhealthy_bots,
)

A = ImageInfo("freqtrade-pool:latest", "sha256:aaa")
B = ImageInfo("freqtrade-pool:test-b", "sha256:bbb")


def pool(pool_id: str, image: ImageInfo | None = A, bots: dict[str, str] | None = None,
         busy: str = "") -> PoolView:  # fmt: skip
    bots = bots or {}
    return PoolView(pool_id, image, frozenset(bots), frozenset(bots.values()), busy)


FLEET = [
    pool("p1", bots={"b1": "alice", "b2": "bob"}),
    pool("p2", bots={"b3": "carol"}),
    pool("p3", image=B, bots={"b4": "alice"}),
    pool("p4", image=None, bots={"b5": "dave"}),
    pool("p5", bots={"b6": "erin"}, busy="a move has its bots"),
]


def test_every_pool_not_on_the_target_goes_in_order_and_the_rest_say_why_not() -> None:
    plan = plan_upgrade(FLEET, B, Selection())
    assert [p.id for p in plan.pools] == ["p1", "p2"]
    assert dict(plan.skipped) == {
        "p3": "runs freqtrade-pool:test-b already",
        "p4": "its container does not run",
        "p5": "a move has its bots",
    }


def test_selection_by_pool_user_or_bot() -> None:
    by_user = plan_upgrade(FLEET, B, Selection(users=frozenset({"carol"})))
    assert [p.id for p in by_user.pools] == ["p2"]
    by_bot = plan_upgrade(FLEET, B, Selection(bots=frozenset({"b2"})))
    assert [p.id for p in by_bot.pools] == ["p1"]
    by_pool = plan_upgrade(FLEET, B, Selection(pools=frozenset({"p2", "nope"})))
    assert [p.id for p in by_pool.pools] == ["p2"]
    assert ("nope", "no such pool") in by_pool.skipped
    # alice's bots are in p1 (to go) and p3 (there already)
    alice = plan_upgrade(FLEET, B, Selection(users=frozenset({"alice"})))
    assert [p.id for p in alice.pools] == ["p1"] and alice.skipped[0][0] == "p3"


def test_the_canary_is_the_first_pools_and_never_more_than_there_are() -> None:
    plan = plan_upgrade(FLEET, B, Selection(), canary=1)
    assert plan.to_json()["pools"] == [
        {"poolId": "p1", "from": A.to_json(), "bots": 2, "canary": True},
        {"poolId": "p2", "from": A.to_json(), "bots": 1, "canary": False},
    ]
    assert plan_upgrade(FLEET, B, Selection(), canary=9).canary == 2


def bot(bot_id: str, run: RunState = RunState.RUNNING) -> BotRecord:
    return BotRecord(bot_id, "u", "p1", 0, 9000, "S", b"", {}, BotSecrets("u", "p", "j", "w"),
                     run=run)  # fmt: skip


def status(bot_id: str, state: ProcessState, ping: bool | None) -> BotStatus:
    return BotStatus(bot_id, state, ping_ok=ping)


def test_a_bot_is_well_when_it_is_as_its_user_wants_it() -> None:
    bots = [bot("up"), bot("down", RunState.STOPPED), bot("mute"), bot("crashed"), bot("new")]
    statuses = {
        "up": status("up", ProcessState.RUNNING, True),
        "down": status("down", ProcessState.STOPPED, None),
        "mute": status("mute", ProcessState.RUNNING, False),
        "crashed": status("crashed", ProcessState.BACKOFF, None),
    }
    assert unhealthy_bots(bots, statuses, connected=True) == ["mute", "crashed", "new"]
    # an agent that is away vouches for nothing
    assert unhealthy_bots(bots[:2], statuses, connected=False) == ["up", "down"]


@pytest.mark.parametrize(
    ("step", "now", "action"),
    [
        (PENDING, A, "keep"),
        (UPGRADED, B, "keep"),
        (ROLLED_BACK, A, "keep"),
        (NOT_STARTED, A, "keep"),
        (FAILED, None, "keep"),
        (STOPPING, A, "keep"),  # its old container is still there
        (REPLACING, None, "rollback"),  # gone, and no new one yet
        (REPLACING, A, "keep"),
        (VERIFYING, B, "rollback"),  # the new image was never verified
        (VERIFYING, None, "rollback"),
        (ROLLING_BACK, B, "rollback"),
        (ROLLING_BACK, A, "keep"),  # its old image runs again
    ],
)
def test_what_a_restarted_controller_does_with_each_pool(
    step: str, now: ImageInfo | None, action: str
) -> None:
    assert recovery_action(step, now, A) == action


def test_a_runs_outcome() -> None:
    assert run_outcome([UPGRADED, UPGRADED], False) == "upgraded"
    assert run_outcome([UPGRADED, ROLLED_BACK, NOT_STARTED], False) == "rolled_back"
    assert run_outcome([ROLLED_BACK, FAILED], False) == "failed"
    assert run_outcome([ROLLED_BACK, NOT_STARTED], True) == "canary_failed"
    assert run_outcome([], False) == "upgraded"


# -- the `move` method ---------------------------------------------------------------------


def test_a_legacy_pool_is_recreated_whatever_method_is_asked() -> None:
    assert pool_method(MOVE, legacy=False) == MOVE
    assert pool_method(RECREATE, legacy=False) == RECREATE
    assert pool_method(MOVE, legacy=True) == RECREATE


def test_bots_move_stopped_ones_first_then_by_slot() -> None:
    def at(bot_id: str, slot: int, run: RunState = RunState.RUNNING) -> BotRecord:
        return replace(bot(bot_id, run), slot=slot)

    bots = [at("r2", 2), at("r0", 0), at("s3", 3, RunState.STOPPED), at("r1", 1)]
    assert [b.id for b in move_order(bots)] == ["s3", "r0", "r1", "r2"]


@pytest.mark.parametrize(
    ("step", "old", "new", "expected"),
    [
        (CREATING, 3, 0, ("remove_new", NOT_STARTED)),  # no bot moved: the fresh pool goes
        (MOVING, 0, 3, ("remove_old", UPGRADED)),  # all moved: the emptied old pool goes
        (MOVING, 1, 2, ("keep_both", FAILED)),  # split: both pools keep running their bots
        (MOVING, 3, 0, ("remove_new", NOT_STARTED)),
        (UPGRADED, 0, 3, ("keep", UPGRADED)),
        (ROLLED_BACK, 2, 1, ("keep", ROLLED_BACK)),
        (PENDING, 3, 0, ("keep", PENDING)),
    ],
)
def test_a_move_cut_short_is_finished_or_undone_by_where_its_bots_are(
    step: str, old: int, new: int, expected: tuple[str, str]
) -> None:
    assert move_recovery(step, old, new) == expected
