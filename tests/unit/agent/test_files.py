"""A bot may plant symbolic links in its own directory; the root agent must not follow them."""

import os
from pathlib import Path

import pytest

from agent.files import make_bot_dir, write_bot_files

NOBODY = (65534, 65534)


@pytest.fixture
def bot_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bots" / "b1"
    path.parent.mkdir()
    make_bot_dir(path, NOBODY)
    return path


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    target = tmp_path / "victim"
    target.mkdir()
    (target / "secret").write_text("root's")
    return target


def test_files_are_written_private_and_owned_by_the_bot(bot_dir: Path) -> None:
    write_bot_files(bot_dir, {"config.json": b"{}", "user_data/strategies/S.py": b"x"}, NOBODY)
    for path in (bot_dir, bot_dir / "config.json", bot_dir / "user_data/strategies/S.py"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == NOBODY
        assert st.st_mode & 0o077 == 0
    assert (bot_dir / "config.json").read_bytes() == b"{}"


def test_a_linked_directory_is_not_followed(bot_dir: Path, victim: Path) -> None:
    (bot_dir / "user_data").symlink_to(victim)
    with pytest.raises(OSError):
        write_bot_files(bot_dir, {"user_data/strategies/S.py": b"x"}, NOBODY)
    assert os.listdir(victim) == ["secret"]
    assert victim.stat().st_uid == 0


def test_a_linked_file_or_temp_file_is_replaced_not_followed(bot_dir: Path, victim: Path) -> None:
    (bot_dir / "config.json").symlink_to(victim / "secret")
    (bot_dir / ".config.json.ftpool-tmp").symlink_to(victim / "secret")
    write_bot_files(bot_dir, {"config.json": b"{}"}, NOBODY)
    assert (victim / "secret").read_text() == "root's"
    assert (victim / "secret").stat().st_uid == 0
    assert not (bot_dir / "config.json").is_symlink()
    assert (bot_dir / "config.json").read_bytes() == b"{}"


def test_unchanged_files_are_not_rewritten(bot_dir: Path) -> None:
    write_bot_files(bot_dir, {"config.json": b"{}"}, NOBODY)
    before = (bot_dir / "config.json").stat().st_ino
    write_bot_files(bot_dir, {"config.json": b"{}"}, NOBODY)
    assert (bot_dir / "config.json").stat().st_ino == before


def test_a_moved_in_directory_becomes_the_new_users_without_following_links(
    bot_dir: Path, victim: Path
) -> None:
    """A bot moved from another pool arrives owned by root; all of it is handed over."""
    (bot_dir / "user_data").mkdir()
    (bot_dir / "user_data" / "tradesv3.sqlite").write_bytes(b"trades")
    (bot_dir / "user_data" / "escape").symlink_to(victim)
    os.chown(bot_dir, 0, 0)
    make_bot_dir(bot_dir, (65533, 65533))
    for path in (bot_dir, bot_dir / "user_data", bot_dir / "user_data" / "tradesv3.sqlite"):
        assert (path.stat().st_uid, path.stat().st_gid) == (65533, 65533)
    assert (bot_dir / "user_data" / "escape").lstat().st_uid == 65533
    assert victim.stat().st_uid == 0 and (victim / "secret").stat().st_uid == 0
