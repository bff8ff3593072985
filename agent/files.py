"""Writing a bot's files into its directory without trusting anything the bot put there.

The bot's own user owns its directory and may replace anything in it with a symbolic
link, while the agent writes as root. So every step goes through directory descriptors
opened with O_NOFOLLOW, new files are created with O_EXCL and owned through their
descriptor, and the final rename replaces whatever entry is there without following it.
A planted link can at worst make a write fail; it never redirects one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from common.ownership import own_tree

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW

Owner = tuple[int, int] | None


def _own(fd: int, owner: Owner) -> None:
    if owner is not None:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != owner:
            os.fchown(fd, *owner)


def _subdir(parent: int, name: str, owner: Owner) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent)
    fd = os.open(name, _DIR, dir_fd=parent)
    _own(fd, owner)
    return fd


def _same_content(dir_fd: int, name: str, content: bytes) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return False  # missing, or a link: (re)write it
    with os.fdopen(fd, "rb") as f:
        return f.read() == content


def _write_at(dir_fd: int, name: str, content: bytes, owner: Owner) -> bool:
    if _same_content(dir_fd, name, content):
        return False
    tmp = f".{name}.ftpool-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
        _own(f.fileno(), owner)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return True


def copy_in(dir_fd: int, name: str, source: Path, owner: Owner) -> None:
    """`source` (root's) copied to a new file `name` in the directory, owned by `owner` and
    on disk (fsynced) before this returns; FileExistsError if `name` is there."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        with source.open("rb") as src, os.fdopen(os.dup(fd), "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
        _own(fd, owner)
        os.fsync(fd)
    except BaseException:
        os.unlink(name, dir_fd=dir_fd)
        raise
    finally:
        os.close(fd)


def make_bot_dir(bot_dir: Path, owner: Owner) -> None:
    """The bot's directory (its parent is root's): private to the bot's user.

    A directory owned by someone else came with a bot moved here from another pool (the
    controller hands it over owned by root): all of it becomes the new slot user's.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(bot_dir, 0o700)
    fd = os.open(bot_dir, _DIR)
    try:
        if owner is not None and (os.fstat(fd).st_uid, os.fstat(fd).st_gid) != owner:
            own_tree(fd, *owner)
        _own(fd, owner)
        # Private to its bot, whatever mode a moved-in directory came with.
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def write_bot_files(bot_dir: Path, files: dict[str, bytes], owner: Owner) -> None:
    """Write `files` (validated relative paths) below bot_dir, owned by `owner`."""
    root = os.open(bot_dir, _DIR)
    try:
        for rel, content in files.items():
            *parents, name = rel.split("/")
            fd = os.dup(root)
            try:
                for part in parents:
                    child = _subdir(fd, part, owner)
                    os.close(fd)
                    fd = child
                _write_at(fd, name, content, owner)
            finally:
                os.close(fd)
    finally:
        os.close(root)
