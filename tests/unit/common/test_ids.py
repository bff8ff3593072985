"""Ids and strategy names: the one pattern that keeps ids safe in INI, paths, URLs."""

from __future__ import annotations

import pytest

from common.ids import InvalidId, check_id, check_strategy_name, is_valid_id

HOSTILE_IDS = [
    "",
    "../x",
    "..",
    ".",
    "a b",
    "x\n[program:evil]",
    "x\r",
    "x\x00",
    "a/b",
    "a\\b",
    "-leading-dash",
    "_leading_underscore",
    "x" * 65,
    "semi;colon",
    "per%cent",
    "colon:x",
    "é",
    "bot\u2028x",
    "x\n",
]


@pytest.mark.parametrize("value", ["a", "A", "0", "bot-1", "user_2-bot-abc", "x" * 64])
def test_valid_ids(value: str) -> None:
    assert is_valid_id(value)
    assert check_id(value) == value


@pytest.mark.parametrize("value", HOSTILE_IDS)
def test_hostile_ids_are_rejected(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidId, match="instanceId"):
        check_id(value, "instanceId")


@pytest.mark.parametrize("value", [None, 1, 1.0, b"bot", ["bot"], True])
def test_non_strings_are_not_ids(value: object) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidId):
        check_id(value)


@pytest.mark.parametrize("name", ["SampleStrategy", "_Private", "s1", "A" * 64])
def test_valid_strategy_names(name: str) -> None:
    assert check_strategy_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "1Strategy", "../Evil", "Evil.py", "a-b", "a b", "A" * 65, "Evil\n", "/abs", None, 3],
)
def test_invalid_strategy_names(name: object) -> None:
    with pytest.raises(InvalidId):
        check_strategy_name(name)


def test_invalid_id_is_a_value_error() -> None:
    assert issubclass(InvalidId, ValueError)
