"""A tar archive's headers walked raw, before tarfile reads it (common/bot_archive.py).

tarfile reads a GNU long name or link ('L', 'K') or a pax header ('x') whole into memory
before any member it names can be checked: a 300 MiB long name costs some 900 MiB. So
each header is read here first, 512 bytes at a time, the members' contents seeked over
as tarfile would skip them (a pax header's `size` included), and an archive is refused
whole if an extended header is over MAX_EXTENDED, or is of a kind a bot's directory never
has and whose layout tarfile reads differently (a global pax header, a GNU sparse file).
"""

from __future__ import annotations

import os
import tarfile
from typing import IO

MAX_EXTENDED = 64 << 10  # a pax header or long name: a few hundred bytes in a bot's directory
_BLOCK = tarfile.BLOCKSIZE
_LONG = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_REFUSED = {
    tarfile.XGLTYPE: "a global pax header",
    tarfile.GNUTYPE_SPARSE: "a GNU sparse file",
}


class ArchiveError(ValueError):
    """The archive is refused: what it says names the first rule it broke."""


def check_headers(f: IO[bytes], limit: int = MAX_EXTENDED) -> None:
    """ArchiveError at the first extended header over `limit` bytes, or of a refused kind.
    Stops where tarfile stops (the end blocks, a header it cannot read: it says so itself);
    leaves `f` where it was."""
    start = f.tell()
    try:
        _walk(f, limit)
    finally:
        f.seek(start)


def _walk(f: IO[bytes], limit: int) -> None:
    size_next: int | None = None  # a pax header's size of the member after it
    while True:
        block = f.read(_BLOCK)
        if len(block) < _BLOCK or block == bytes(_BLOCK):
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            return
        if info.type in _REFUSED:
            raise ArchiveError(f"{_REFUSED[info.type]} is not accepted")
        if info.type in _LONG or info.type in _PAX:
            if not 0 <= info.size <= limit:
                raise ArchiveError(f"an extended header of {info.size} bytes (at most {limit})")
            data = f.read(info.size)
            f.seek(_padding(info.size), os.SEEK_CUR)
            if info.type in _PAX:
                size_next = _pax_size(data)
            continue
        size = info.size if size_next is None else size_next
        size_next = None
        if size < 0:
            raise ArchiveError("a member of negative size")
        f.seek(size + _padding(size), os.SEEK_CUR)


def _padding(size: int) -> int:
    return -size % _BLOCK


def _pax_size(data: bytes) -> int | None:
    """The `size` record of a pax header (None: it has none); ArchiveError if the records
    are broken, or describe a sparse file."""
    size, pos = None, 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        if space < 0:
            raise ArchiveError("a broken pax header")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ArchiveError("a broken pax header") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise ArchiveError("a broken pax header")
        key, value = record[:-1].split(b"=", 1)
        if key.startswith(b"GNU.sparse"):
            raise ArchiveError(_REFUSED[tarfile.GNUTYPE_SPARSE] + " is not accepted")
        if key == b"size":
            try:
                size = int(value)
            except ValueError:
                raise ArchiveError("a broken pax header") from None
        pos += length
    return size
