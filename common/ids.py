"""The one identifier pattern used for instance ids, user ids and pool ids.

Ids end up in supervisord section names, file paths, container names and URLs,
so they are restricted to characters that are safe in all of them.
"""

import re

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_ID_RE = re.compile(rf"\A{ID_PATTERN}\Z")
# Strategy names are Python class names; freqtrade loads <name>.py by class name.
_STRATEGY_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class InvalidId(ValueError):
    """An id or name that does not match its pattern."""


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.match(value) is not None


def check_id(value: object, what: str = "id") -> str:
    if not is_valid_id(value):
        raise InvalidId(f"{what} must match {ID_PATTERN}")
    return value  # type: ignore[return-value]


def check_strategy_name(value: object) -> str:
    if not isinstance(value, str) or _STRATEGY_RE.match(value) is None:
        raise InvalidId("strategy must be a Python class name (letters, digits, _; max 64)")
    return value
