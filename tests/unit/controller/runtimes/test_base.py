"""The runtimes' shared file moves: a bot's data survives being handed over (a move's
stage and land, controller/moves/transfer.py) and its pool's removal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.runtimes.base import hand_over, retire_pool_dir


def make_bot(pools: Path, pool: str, bot: str) -> Path:
    bot_dir = pools / pool / "bots" / bot
    (bot_dir / "user_data").mkdir(parents=True)
    (bot_dir / "user_data" / "tradesv3.sqlite").write_text(f"trades of {bot}")
    return bot_dir


def test_a_handed_over_bot_keeps_its_files_and_arrives_owned_by_root(tmp_path: Path) -> None:
    source = make_bot(tmp_path, "pool-1", "b1")
    os.chown(source, 20003, 20003)
    os.chown(source / "user_data" / "tradesv3.sqlite", 20003, 20003)
    staged = tmp_path / "migrating" / "b1"
    hand_over(source, staged)
    hand_over(staged, tmp_path / "pool-2" / "bots" / "b1")
    moved = tmp_path / "pool-2" / "bots" / "b1"
    assert (moved / "user_data" / "tradesv3.sqlite").read_text() == "trades of b1"
    assert not source.exists() and not staged.exists()
    assert {p.stat().st_uid for p in [moved, *moved.rglob("*")]} == {0}


def test_a_hand_over_never_overwrites_a_directory_already_there(tmp_path: Path) -> None:
    source = make_bot(tmp_path, "pool-1", "b1")
    (tmp_path / "pool-2" / "bots" / "b1").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        hand_over(source, tmp_path / "pool-2" / "bots" / "b1")
    assert (source / "user_data" / "tradesv3.sqlite").exists()


def test_a_retired_pool_keeps_archives_and_leftover_bots(tmp_path: Path) -> None:
    make_bot(tmp_path, "pool-1", "left")
    (tmp_path / "pool-1" / "archive" / "gone-20260101T000000Z").mkdir(parents=True)
    archive = tmp_path / "archive"
    retire_pool_dir(tmp_path / "pool-1", archive)
    assert not (tmp_path / "pool-1").exists()
    names = sorted(p.name for p in archive.iterdir())
    assert names[0] == "gone-20260101T000000Z" and names[1].startswith("left-leftover-")
    assert (archive / names[1] / "user_data" / "tradesv3.sqlite").read_text() == "trades of left"
