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


def _long_name_archive(tmp_path: Path, size: int) -> Path:
    """A GNU long name of `size` bytes before a member: tarfile would read it whole."""
    info = tarfile.TarInfo("x")
    info.name = "a" * size
    path = tmp_path / "long.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    return path


def test_a_huge_long_name_is_refused_before_tarfile_reads_it(tmp_path: Path) -> None:
    """A long name of 2 MiB (one of 300 MiB cost tarfile some 900 MiB): refused by the
    raw walk of the headers, and the message does not repeat it."""
    with pytest.raises(ArchiveError, match="an extended header of 2097153 bytes") as refused:
        unpack(_long_name_archive(tmp_path, 2 << 20), tmp_path / "t")
    assert len(str(refused.value)) < 200
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.partial").exists()


def test_a_huge_pax_header_and_a_global_one_are_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "c" * (1 << 20)}
    _refused(tmp_path, [(info, b"")])
    glob = tmp_path / "g.tar"
    with tarfile.open(glob, "w", format=tarfile.PAX_FORMAT, pax_headers={"a": "b"}) as tar:
        tar.addfile(tarfile.TarInfo("x"), io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="a global pax header"):
        unpack(glob, tmp_path / "t")


def test_names_in_messages_are_cut_short() -> None:
    with pytest.raises(ArchiveError) as refused:
        check_name("x/" * 5000)
    assert len(str(refused.value)) < 200 and "10000 characters" in str(refused.value)


def test_pax_sizes_and_long_names_within_bounds_are_walked_as_tarfile_reads_them(
    tmp_path: Path,
) -> None:
    """A pax header's size of the next member is followed (its contents seeked over), so a
    huge long name after it is still found; a long name within bounds unpacks."""
    body = b"z" * 700
    big = tarfile.TarInfo("big")
    big.size, big.pax_headers = len(body), {"size": str(len(body))}
    path = tmp_path / "pax.tar"
    with path.open("wb") as f:
        f.write(big.tobuf(tarfile.PAX_FORMAT))
        f.write(body + bytes(-len(body) % 512))
        f.write(_long_name_archive(tmp_path, 200_000).read_bytes())
    with pytest.raises(ArchiveError, match="an extended header"):
        unpack(path, tmp_path / "t")
    deep = tmp_path / "deep"
    (deep / ("d" * 200) / ("e" * 200)).mkdir(parents=True)
    (deep / ("d" * 200) / ("e" * 200) / ("f" * 200)).write_bytes(b"kept")
    with (tmp_path / "deep.tar").open("wb") as f:
        pack(deep, f)
    unpack(tmp_path / "deep.tar", tmp_path / "out")
    assert (tmp_path / "out" / ("d" * 200) / ("e" * 200) / ("f" * 200)).read_bytes() == b"kept"


def test_a_name_that_is_not_utf8_travels_as_its_bytes(tmp_path: Path) -> None:
    """A Linux name is bytes: one that is not UTF-8 (the bot's user made it) is packed and
    unpacked as it is, never a UnicodeEncodeError that would make the bot unmovable."""
    bot = _bot_dir(tmp_path)
    fd = os.open(bytes(bot) + b"/bad\xffname", os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"kept")
    os.close(fd)
    with (tmp_path / "a.tar").open("wb") as f:
        digest = pack(bot, f)
    unpack(tmp_path / "a.tar", tmp_path / "out")
    assert b"bad\xffname" in os.listdir(bytes(tmp_path / "out"))
    assert Path(os.fsdecode(bytes(tmp_path / "out") + b"/bad\xffname")).read_bytes() == b"kept"
    with (tmp_path / "b.tar").open("wb") as f:
        assert pack(tmp_path / "out", f) == digest  # the same tree: the same archive
    assert check_name(os.fsdecode(b"d/\xff")) == ("d", os.fsdecode(b"\xff"))
    check_name(os.fsdecode(b"\xff" * 255))  # its bytes counted
    with pytest.raises(ArchiveError):
        check_name(os.fsdecode(b"\xff" * 256))
