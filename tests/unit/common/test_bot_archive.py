"""A bot's directory packed and unpacked: links left out, every bad member refused whole."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from common.bot_archive import LIMITS, ArchiveError, Limits, check_name, pack, sha256_of, unpack


def _bot_dir(root: Path) -> Path:
    bot = root / "bot"
    (bot / "user_data" / "strategies").mkdir(parents=True)
    (bot / "config.json").write_text('{"a": 1}')
    (bot / "tradesv3.sqlite").write_bytes(b"db" * 1000)
    (bot / "user_data" / "strategies" / "s.py").write_text("class S: pass\n")
    (bot / "run.sh").write_text("#!/bin/sh\n")
    (bot / "run.sh").chmod(0o755)
    return bot


def _archive(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    path = tmp_path / "in.tar"
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_a_directory_round_trips_with_private_modes(tmp_path: Path) -> None:
    bot = _bot_dir(tmp_path)
    out = tmp_path / "bot.tar"
    with out.open("wb") as f:
        digest = pack(bot, f)
    assert digest == sha256_of(out)
    target = tmp_path / "copy"
    unpack(out, target)
    assert (target / "tradesv3.sqlite").read_bytes() == b"db" * 1000
    assert (target / "user_data" / "strategies" / "s.py").read_text() == "class S: pass\n"
    assert (target / "run.sh").stat().st_mode & 0o777 == 0o700
    assert (target / "config.json").stat().st_mode & 0o777 == 0o600
    assert (target / "user_data").stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "copy.partial").exists()


def test_an_unpacked_tree_packs_back_to_the_same_archive(tmp_path: Path) -> None:
    bot = _bot_dir(tmp_path)
    with (tmp_path / "a.tar").open("wb") as f:
        first = pack(bot, f)
    unpack(tmp_path / "a.tar", tmp_path / "copy")
    with (tmp_path / "b.tar").open("wb") as f:
        assert pack(tmp_path / "copy", f) == first
    (tmp_path / "copy" / "config.json").write_text('{"a": 2}')
    with (tmp_path / "c.tar").open("wb") as f:
        assert pack(tmp_path / "copy", f) != first


def test_links_and_special_files_are_left_out_never_followed(tmp_path: Path) -> None:
    bot = _bot_dir(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("other tenant")
    (bot / "link").symlink_to(secret)
    (bot / "dirlink").symlink_to(tmp_path)
    os.mkfifo(bot / "fifo")
    out = tmp_path / "bot.tar"
    with out.open("wb") as f:
        pack(bot, f)
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "link" not in names and "dirlink" not in names and "fifo" not in names
    assert "config.json" in names


def test_packing_over_the_limits_fails(tmp_path: Path) -> None:
    bot = _bot_dir(tmp_path)
    with pytest.raises(ArchiveError, match="bytes"), (tmp_path / "o").open("wb") as f:
        pack(bot, f, Limits(max_bytes=100))
    with pytest.raises(ArchiveError, match="files"), (tmp_path / "o").open("wb") as f:
        pack(bot, f, Limits(max_members=2))


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "", "a\x00b", "a\\b", "x/./y"]
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ArchiveError):
        check_name(name)


def test_plain_names_are_split() -> None:
    assert check_name("user_data/strategies/s.py") == ("user_data", "strategies", "s.py")
    assert check_name("user_data/") == ("user_data",)
    with pytest.raises(ArchiveError):
        check_name("/".join(["d"] * 40))


def _refused(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
             limits: Limits = LIMITS) -> None:  # fmt: skip
    archive = _archive(tmp_path, members)
    with pytest.raises(ArchiveError):
        unpack(archive, tmp_path / "target", limits)
    assert not (tmp_path / "target").exists()
    assert not (tmp_path / "target.partial").exists()


def test_a_traversing_member_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    _refused(tmp_path, [_file("ok"), _file("../escaped")])
    assert not (tmp_path / "escaped").exists()


def test_links_devices_and_hard_links_in_an_archive_are_refused(tmp_path: Path) -> None:
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE):
        info = tarfile.TarInfo("x")
        info.type, info.linkname = kind, "/etc/passwd"
        _refused(tmp_path, [(info, None)])


def test_a_name_twice_and_a_file_under_a_file_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path, [_file("a"), _file("a")])
    _refused(tmp_path, [_file("a"), _file("a/b")])
    _refused(tmp_path, [_file("missing/b")])  # its directory's member never came


def test_archives_over_the_limits_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path, [_file("a", b"x" * 50), _file("b", b"x" * 60)], Limits(max_bytes=100))
    _refused(tmp_path, [_file("a"), _file("b"), _file("c")], Limits(max_members=2))


def test_garbage_and_a_truncated_archive_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "g.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ArchiveError):
        unpack(garbage, tmp_path / "t1")
    whole = _archive(tmp_path, [_file("a", b"y" * 100_000)])
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:5000])
    with pytest.raises(ArchiveError):
        unpack(cut, tmp_path / "t2")
    assert not (tmp_path / "t1").exists() and not (tmp_path / "t2").exists()


def test_an_existing_target_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        unpack(_archive(tmp_path, [_file("keep", b"theirs")]), tmp_path / "target")
    assert (tmp_path / "target" / "keep").read_text() == "mine"


def test_a_partial_left_by_an_interrupted_unpack_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "target.partial").mkdir()
    (tmp_path / "target.partial" / "stale").write_text("old")
    unpack(_archive(tmp_path, [_file("fresh", b"new")]), tmp_path / "target")
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["fresh"]
