"""Reading a decoded frame's fields: each checked for its type and bounds, so a malformed
frame is a ProtocolError, never a crash or an unchecked value further in; and the checks
of paths and restore points the agent acts on."""

from __future__ import annotations

import re
from typing import Any

from common.heartbeat_wire import MAX_BOTS_PER_FRAME
from common.ids import is_valid_id

MAX_FILE_BYTES = 1024 * 1024
_FILE_PART = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


class ProtocolError(ValueError):
    """A frame that does not follow the protocol."""


def check_relpath(path: object) -> str:
    """A relative path of safe components: no '..', no absolute paths, no hidden files."""
    if not isinstance(path, str) or not path or len(path) > 256:
        raise ProtocolError("bad file path")
    parts = path.split("/")
    if len(parts) > 4 or not all(_FILE_PART.match(p) for p in parts):
        raise ProtocolError(f"bad file path {path!r}")
    return path


def typed(m: dict[str, Any], key: str, kind: type | tuple[type, ...], optional: bool = False):
    value = m.get(key)
    if value is None and optional:
        return None
    # bool is an int subclass; never accept it where a number is meant.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise ProtocolError(f"field {key!r} must be {kind}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def int_in(m: dict[str, Any], key: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    value = typed(m, key, int)
    if not lo <= value <= hi:
        raise ProtocolError(f"field {key!r} out of range")
    return value


def opt_number(m: dict[str, Any], key: str) -> float | None:
    value = typed(m, key, (int, float), optional=True)
    if value is not None and not 0 <= value < 1e15:
        raise ProtocolError(f"field {key!r} out of range")
    return value


def short_str(m: dict[str, Any], key: str, max_len: int = 256) -> str:
    value = typed(m, key, str)
    if len(value) > max_len:
        raise ProtocolError(f"field {key!r} too long")
    return value


def valid_id(m: dict[str, Any], key: str) -> str:
    value = m.get(key)
    if not is_valid_id(value):
        raise ProtocolError(f"field {key!r} is not a valid id")
    return value


def bounded_list(m: dict[str, Any], key: str, limit: int = MAX_BOTS_PER_FRAME) -> list[Any]:
    value = typed(m, key, list)
    if len(value) > limit:
        raise ProtocolError(f"field {key!r} has too many items")
    return value


def as_map(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a map")
    return value


# What a backup's file name may be: a database's snapshot, <stamp>.sqlite (agent/backups.py).
_POINT = re.compile(r"\A[0-9]{8}T[0-9]{6}\.[0-9]{6}Z\Z")
_DB_NAME = re.compile(r"\Atradesv3(\.dryrun)?\.sqlite\Z")


_HEX = re.compile(r"\A[0-9a-f]{64}\Z")


def is_hex64(value: object) -> bool:
    """Whether `value` is a transfer's token or a sha256: 64 lowercase hex digits."""
    return isinstance(value, str) and _HEX.match(value) is not None


def check_hex(value: object) -> str:
    """A transfer's token or an archive's sha256: 64 lowercase hex digits."""
    if not is_hex64(value):
        raise ProtocolError("bad token or digest")
    return value


def check_restore_point(db: object, point: object) -> tuple[str, str]:
    """A restore point: one of FreqTrade's database names and a snapshot's time stamp."""
    if not isinstance(db, str) or not _DB_NAME.match(db):
        raise ProtocolError("bad database name")
    if not isinstance(point, str) or not _POINT.match(point):
        raise ProtocolError("bad restore point")
    return db, point
