"""Sizes as people and Docker write them."""

from __future__ import annotations

import pytest

from common.units import MAX_BYTES, parse_bytes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("512m", 512 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29), ("100", 100), ("64k", 64 << 10),
     ("2gb", 2 << 30), ("2GiB", 2 << 30), (" 7b ", 7), (4096, 4096), (0, 0), ("1t", 1 << 40)],
)  # fmt: skip
def test_sizes(raw: object, expected: int) -> None:
    assert parse_bytes(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "m", "-1", "1x", "1 g g", "1e9", True, None, 1.5, -1, MAX_BYTES + 1, "9" * 30]
)
def test_not_sizes(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_bytes(raw)
