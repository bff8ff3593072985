"""Values for supervisord's INI files, which are executed as configuration."""

_FORBIDDEN = ("\n", "\r", "\x00")


class RenderError(ValueError):
    """A value that cannot be put into a supervisord config safely."""


def ini_value(value: str) -> str:
    if any(c in value for c in _FORBIDDEN):
        raise RenderError("value contains a line break or NUL")
    # supervisord expands %(name)s in values; a literal % must be doubled.
    return value.replace("%", "%%")


def ini_environment(env: dict[str, str]) -> str:
    """supervisord's `environment=` syntax: KEY="value",... (values may not hold quotes)."""
    parts = []
    for key, value in env.items():
        if not key.isidentifier() or any(c in value for c in '"\\'):
            raise RenderError(f"environment entry {key!r} cannot be rendered safely")
        parts.append(f'{key}="{ini_value(value)}"')
    return ",".join(parts)
