"""A bot's directory as a tar archive, to travel between a pool's agent and the controller
(POOL_STORAGE=node: pools on their node's own disk, docs/swarm.md#bot-directories).

Packing reads through directory descriptors opened with O_NOFOLLOW: a link the bot's user
planted is left out, never followed (nor is a socket or a device). Unpacking trusts nothing
in the archive: its headers are walked raw first (common/tar_headers.py: no long name or
pax header over 64 KiB, which tarfile would read whole into memory), then only regular
files and directories, relative names of plain parts (no `..`, no absolute path, no empty
or dot part, no NUL), bounded depth, count and size, each name once; it never calls
tarfile's extract (it writes each file itself, O_EXCL and O_NOFOLLOW below a directory it
made), and every file and directory is on disk (fsynced) before the whole directory takes
its place in one rename. Interrupted anywhere, the target is either absent or whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from common.ids import is_valid_id
from common.tar_headers import ArchiveError, check_headers

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 8 << 30  # the files' contents together
    max_members: int = 100_000
    max_depth: int = 32
    max_name: int = 255  # one part of a name


LIMITS = Limits()
# The archive's headers and padding over the files' own bytes (a 512-byte header or three
# per member, and the end): bounded like the members themselves.
MAX_ARCHIVE_BYTES = LIMITS.max_bytes + 3 * 512 * LIMITS.max_members + (1 << 20)
SHA_HEADER = "X-Ftpool-Sha256"  # an uploaded archive's sha256 (hex)


def shown(name: str) -> str:
    """A member's name for a message: quoted, and cut short (a name may be 64 KiB)."""
    return repr(name) if len(name) <= 120 else f"{name[:100]!r}... ({len(name)} characters)"


def check_name(name: str, limits: Limits = LIMITS) -> tuple[str, ...]:
    """The parts of a member's relative name; ArchiveError unless every part is plain."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise ArchiveError(f"bad member name {shown(str(name))}")
    parts = tuple(name.removesuffix("/").split("/"))
    if name.startswith("/") or len(parts) > limits.max_depth:
        raise ArchiveError(f"bad member name {shown(name)}")
    for part in parts:
        # Its bytes on disk: a name that is not UTF-8 (a Linux name is bytes) travels as it
        # is, its bytes kept by surrogateescape on both sides (tarfile's and the os module's).
        if part in ("", ".", "..") or len(os.fsencode(part)) > limits.max_name:
            raise ArchiveError(f"bad member name {shown(name)}")
    return parts


def _mode(st_mode: int, directory: bool) -> int:
    """Private modes only: 0700 for directories and executables, else 0600."""
    return 0o700 if directory or st_mode & 0o100 else 0o600


# -- packing --------------------------------------------------------------------------


def _walk(dir_fd: int, prefix: str, depth: int, limits: Limits) -> Iterator[tuple[str, int, int]]:
    """(relative name, fd, mode) of each directory and regular file below dir_fd; the fd is
    closed once the consumer moves on."""
    if depth > limits.max_depth:
        raise ArchiveError(f"{prefix} is nested deeper than {limits.max_depth}")
    for name in sorted(os.listdir(dir_fd)):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            continue  # a link (ELOOP) or gone meanwhile: left out
        try:
            st = os.fstat(fd)
            rel = f"{prefix}{name}"
            if stat.S_ISDIR(st.st_mode):
                yield rel, fd, st.st_mode
                yield from _walk(fd, rel + "/", depth + 1, limits)
            elif stat.S_ISREG(st.st_mode):
                yield rel, fd, st.st_mode
        finally:
            os.close(fd)


def pack(directory: Path, out: IO[bytes], limits: Limits = LIMITS) -> str:
    """Write the directory's tree as an uncompressed tar to `out`; its sha256 (hex). The same
    tree (names, contents, files' times, modes as packed) packs to the same bytes: a tree
    unpacked from an archive packs back to it.
    ArchiveError if it is over the limits; OSError if it cannot be read."""
    digest = _Digest(out)
    root = os.open(directory, _DIR)
    total = members = 0
    try:
        with tarfile.open(fileobj=digest, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for rel, fd, mode in _walk(root, "", 1, limits):
                members += 1
                if members > limits.max_members:
                    raise ArchiveError(f"more than {limits.max_members} files")
                info = tarfile.TarInfo(rel)
                if stat.S_ISDIR(mode):  # its time is not kept (unpacking changes it)
                    info.type, info.mode = tarfile.DIRTYPE, _mode(mode, True)
                    tar.addfile(info)
                    continue
                st = os.fstat(fd)
                info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), _mode(mode, False)
                total += info.size
                if total > limits.max_bytes:
                    raise ArchiveError(f"more than {limits.max_bytes} bytes")
                with os.fdopen(os.dup(fd), "rb") as f:
                    tar.addfile(info, _Exactly(f, info.size))
    finally:
        os.close(root)
    return digest.hexdigest()


def pack_to(directory: Path, archive: Path) -> str:
    """pack() into a new private file `archive` (fsynced); its sha256."""
    fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        digest = pack(directory, out)
        out.flush()
        os.fsync(out.fileno())
    return digest


class _Digest:
    """A write-only file that hashes what passes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.hash = out, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.out.write(data)

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


class _Exactly:
    """A file's first `size` bytes, zero-padded if it shrank meanwhile (a tar member's
    size is written before its content)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        data += b"\0" * (n - len(data))
        self.left -= n
        return data


# -- unpacking ------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def unpack(archive: Path, target: Path, limits: Limits = LIMITS) -> None:
    """The archive's tree as the new directory `target` (root's, private), whole or not at
    all: unpacked into `<target>.partial` (made again if an earlier attempt left it), every
    file fsynced, then renamed. FileExistsError if target exists; ArchiveError if the
    archive breaks a rule (nothing is left of it then)."""
    if target.exists():
        raise FileExistsError(f"{target} exists already; not overwriting it")
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    os.mkdir(partial, 0o700)
    try:
        root = os.open(partial, _DIR)
        try:
            with archive.open("rb") as f:
                check_headers(f)  # before tarfile reads any: none it would hold whole
                _unpack_into(f, root, limits)
            _fsync_tree(root)
        finally:
            os.close(root)
        os.rename(partial, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _unpack_into(f: IO[bytes], root: int, limits: Limits) -> None:
    try:
        with tarfile.open(fileobj=f, mode="r|") as tar:  # type: ignore[call-overload]
            _members(tar, root, limits)
    except tarfile.TarError as exc:
        raise ArchiveError(f"a broken tar archive: {exc}") from None


def _members(tar: tarfile.TarFile, root: int, limits: Limits) -> None:
    seen: set[tuple[str, ...]] = set()
    total = 0
    for member in tar:
        if len(seen) >= limits.max_members:
            raise ArchiveError(f"more than {limits.max_members} files")
        parts = check_name(member.name, limits)
        if parts in seen:
            raise ArchiveError(f"{shown(member.name)} is in the archive twice")
        seen.add(parts)
        if member.isdir():
            _in_dir(root, parts, _mkdir)
        elif member.isreg():
            total += member.size
            if member.size < 0 or total > limits.max_bytes:
                raise ArchiveError(f"more than {limits.max_bytes} bytes")
            source = tar.extractfile(member)
            assert source is not None
            mode = _mode(member.mode, False)
            write = partial(_write, source=source, size=member.size, mode=mode, mtime=member.mtime)
            _in_dir(root, parts, write)
        else:
            raise ArchiveError(f"{shown(member.name)} is not a file or a directory")


def _mkdir(dir_fd: int, name: str) -> None:
    os.mkdir(name, 0o700, dir_fd=dir_fd)


def _in_dir(root: int, parts: tuple[str, ...], act: Callable[[int, str], None]) -> None:
    """Run act(fd, name) for the last part in the directory of the others below root,
    each opened without following a link (each made by this unpacking, from a directory
    member before)."""
    *parents, name = parts
    fd = os.dup(root)
    try:
        for part in parents:
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                raise ArchiveError(f"{'/'.join(parents)} comes after what is in it") from None
            os.close(fd)
            fd = child
        act(fd, name)
    except FileExistsError:
        raise ArchiveError(f"{'/'.join(parents)}: a name is in the archive twice") from None
    except NotADirectoryError:
        raise ArchiveError(f"{'/'.join(parents)} is not a directory in the archive") from None
    finally:
        os.close(fd)


def _write(
    dir_fd: int, name: str, *, source: IO[bytes], size: int, mode: int, mtime: float
) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as out:
        left = size
        while left:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                raise ArchiveError(f"{shown(name)} ends early")
            out.write(chunk)
            left -= len(chunk)
        out.flush()
        os.fchmod(out.fileno(), mode)
        # Its time as packed: the same tree packs to the same archive again (same sha256).
        os.utime(out.fileno(), (mtime, mtime))
        os.fsync(out.fileno())


def sweep(directory: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Remove what an interrupted transfer left in `directory`: each entry named a bot id
    with one of `suffixes` (nothing else is touched); the names removed. Run at start-up,
    before any transfer."""
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        bot_id, dot, suffix = entry.name.partition(".")
        if dot and f".{suffix}" in suffixes and is_valid_id(bot_id):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry.name)
    return removed


def _fsync_tree(dir_fd: int) -> None:
    """Every directory below (files were fsynced as they were written)."""
    for name in os.listdir(dir_fd):
        with contextlib.suppress(NotADirectoryError):
            child = os.open(name, _DIR, dir_fd=dir_fd)
            try:
                _fsync_tree(child)
            finally:
                os.close(child)
    os.fsync(dir_fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, _DIR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
