"""What pooling saves against one container per bot: a pool's figure and the fleet's."""

from __future__ import annotations

from controller.pools.savings import PoolMemory, fleet_saving, pool_saving

MIB = 1 << 20
LEGACY = 273 * MIB


def test_a_pool_saves_its_running_bots_containers_minus_what_it_takes() -> None:
    assert pool_saving(PoolMemory(10, 1250 * MIB), LEGACY) == (2730 - 1250) * MIB
    # One bot alone costs more pooled than in a container of its own.
    assert pool_saving(PoolMemory(1, 367 * MIB), LEGACY) == (273 - 367) * MIB
    assert pool_saving(PoolMemory(0, 100 * MIB), LEGACY) == -100 * MIB


def test_no_figure_without_a_measurement_or_a_legacy_figure() -> None:
    assert pool_saving(PoolMemory(3, None), LEGACY) is None
    assert pool_saving(PoolMemory(3, 500 * MIB), 0) is None


def test_the_fleet_adds_up_the_pools_with_a_figure() -> None:
    pools = [PoolMemory(10, 1250 * MIB), PoolMemory(2, None), PoolMemory(4, 592 * MIB)]
    saving = fleet_saving(pools, LEGACY)
    assert saving == {
        "legacyContainerBytes": LEGACY, "runningBots": 14, "poolsBytes": 1842 * MIB,
        "legacyBytes": 14 * LEGACY, "savedBytes": (14 * 273 - 1842) * MIB,
        "savedPercent": round(100 * (14 * 273 - 1842) / (14 * 273), 1),
    }  # fmt: skip


def test_an_empty_or_unmeasured_fleet_has_no_figure() -> None:
    for pools in ([], [PoolMemory(2, None)]):
        saving = fleet_saving(pools, LEGACY)
        assert (saving["savedBytes"], saving["savedPercent"], saving["poolsBytes"]) == (
            None, None, None,
        )  # fmt: skip
    # Pools, but no bot running: what they take is all cost.
    saving = fleet_saving([PoolMemory(0, 100 * MIB)], LEGACY)
    assert (saving["savedBytes"], saving["savedPercent"]) == (-100 * MIB, None)
