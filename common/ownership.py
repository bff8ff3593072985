"""Giving a whole directory tree to one owner without following anything a bot planted."""

from __future__ import annotations

import os


def own_tree(fd: int, uid: int, gid: int) -> None:
    """chown everything below the directory open at `fd` (not itself) to uid:gid.

    fwalk without following links: a planted link is re-owned itself, never its target.
    """
    for _path, dirs, files, dir_fd in os.fwalk(dir_fd=fd, follow_symlinks=False):
        for name in dirs + files:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
