"""POST /api/pool/upgrade's body: what it may hold, and the clear error for what not."""

from __future__ import annotations

import pytest

from common.ids import InvalidId
from controller.api.upgrade import parse_upgrade
from controller.errors import BadRequest
from controller.upgrade.plan import Selection
from controller.upgrade.run import UpgradeOptions


def test_an_empty_body_upgrades_every_pool_to_pool_image_one_at_a_time() -> None:
    assert parse_upgrade({}) == (UpgradeOptions(), False)


def test_every_option() -> None:
    options, dry_run = parse_upgrade({
        "image": "registry.example:5000/freqtrade-pool:2026.10@sha256:abc", "dryRun": True,
        "pools": ["p1"], "users": ["alice"], "bots": ["bot-1"], "canary": 2, "soak": 30,
        "concurrency": 3, "pause": 1.5, "timeout": 60, "method": "move",
    })  # fmt: skip
    assert dry_run
    assert options == UpgradeOptions(
        image="registry.example:5000/freqtrade-pool:2026.10@sha256:abc",
        selection=Selection(frozenset({"p1"}), frozenset({"alice"}), frozenset({"bot-1"})),
        canary=2, soak=30.0, concurrency=3, pause=1.5, timeout=60.0, method="move",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "JSON object"),
        ({"imag": "x"}, "unknown field(s): imag"),
        ({"image": "x; rm -rf /"}, "image must be"),
        ({"image": "-x"}, "image must be"),
        ({"image": 5}, "image must be"),
        ({"canary": -1}, "canary must be a number from 0"),
        ({"canary": 1.5}, "canary must be a whole number"),
        ({"concurrency": 0}, "concurrency must be"),
        ({"timeout": True}, "timeout must be"),
        ({"soak": "10"}, "soak must be"),
        ({"pools": "p1"}, "pools must be a list"),
        ({"bots": ["../etc"]}, "instanceId"),
        ({"dryRun": "yes"}, "dryRun must be"),
        ({"method": "rebuild"}, "method must be one of recreate, move"),
        ({"method": ["move"]}, "method must be one of"),
        (None, "body must be a JSON object"),  # a body `null` (no body at all is {})
    ],
)
def test_bad_bodies_are_refused_clearly(body: object, says: str) -> None:
    with pytest.raises((BadRequest, InvalidId)) as refused:
        parse_upgrade(body)
    assert says in str(refused.value)
