"""Sizes as people and Docker write them: 512m, 1.5g, 1048576."""

from __future__ import annotations

import re

_SIZE = re.compile(r"\A(\d{1,15}(?:\.\d{1,6})?)\s*([bkmgt]?)(?:i?b)?\Z", re.IGNORECASE)
_UNIT = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MAX_BYTES = 1 << 50


def parse_bytes(raw: object) -> int:
    """Bytes of a size: an int, or a number with Docker's units (b, k, m, g, t; binary).

    Raises ValueError for anything else, negative or past MAX_BYTES."""
    if isinstance(raw, bool):
        raise ValueError("must be a size such as 512m or a number of bytes")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and (match := _SIZE.match(raw.strip())):
        value = int(float(match.group(1)) * _UNIT[match.group(2).lower()])
    else:
        raise ValueError("must be a size such as 512m or a number of bytes")
    if not 0 <= value <= MAX_BYTES:
        raise ValueError(f"must be between 0 and {MAX_BYTES} bytes")
    return value
