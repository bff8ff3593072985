"""Values for supervisord's INI files, which are executed as configuration."""

import re

_FORBIDDEN = ("\n", "\r", "\x00")
# supervisord's parser cuts a value at ';' or '#' after whitespace (an inline comment),
# even inside shell quotes; such a value would silently lose its end.
INLINE_COMMENT = re.compile(r"\s[;#]")


class RenderError(ValueError):
    """A value that cannot be put into a supervisord config safely."""


def ini_value(value: str) -> str:
    if any(c in value for c in _FORBIDDEN):
        raise RenderError("value contains a line break or NUL")
    if INLINE_COMMENT.search(value):
        raise RenderError("value contains ';' or '#' after whitespace (an INI comment)")
    # supervisord expands %(name)s in values; a literal % must be doubled.
    return value.replace("%", "%%")


def ini_environment(env: dict[str, str]) -> str:
    """supervisord's `environment=` syntax: KEY="value",... (values may not hold quotes)."""
    parts = []
    for key, value in env.items():
        # supervisord strips quotes from both ends of each value, so a ' there would be lost.
        quoted_end = value.startswith("'") or value.endswith("'")
        if not key.isidentifier() or any(c in value for c in '"\\') or quoted_end:
            raise RenderError(f"environment entry {key!r} cannot be rendered safely")
        parts.append(f'{key}="{ini_value(value)}"')
    return ",".join(parts)
