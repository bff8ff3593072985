"""Following a bot's log by polling its tail: what is new in a tail since the last one."""

from __future__ import annotations

# The end of the previous tail that is looked for in the next one: long enough to be
# unique in a log of time-stamped lines, short enough to search 16 KiB quickly.
ANCHOR = 512


def new_part(previous: bytes, current: bytes) -> tuple[bytes, bool]:
    """What `current` holds after the end of `previous`, and whether some may be missing.

    Both are tails of one growing log. The last bytes of `previous` are looked for in
    `current`; not found (more was written than a tail holds, or the log began anew), the
    whole of `current` is new and a gap is reported.
    """
    if not previous:
        return current, False
    if current.startswith(previous):  # the log is still shorter than a tail
        return current[len(previous) :], False
    anchor = previous[-ANCHOR:]
    at = current.rfind(anchor)
    if at < 0:
        return current, True
    return current[at + len(anchor) :], False
