"""What every setting is made of: its parsers, which range-check a raw value and raise
ValueError with what is wrong, and `setting`, the dataclass field that names its variable.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.units import parse_bytes


class SettingsError(ValueError):
    """One or more settings are invalid; the message names each variable."""


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def integer(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("must be an integer") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def text(raw: str) -> str:
    return raw.strip()


def web_url(raw: str) -> str:
    """An http(s) URL to a web page, or empty: no credentials, query or fragment in it."""
    value = raw.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not hold credentials, a query or a fragment")
    return value


def absolute_path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("must not be empty")
    return Path(raw.strip()).expanduser().absolute()


def command(raw: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(raw))
    except ValueError as exc:
        raise ValueError(f"is not a valid command line: {exc}") from None
    if not argv:
        raise ValueError("must not be empty")
    return argv


def secret(raw: str) -> str:
    value = raw.strip()
    if value and len(value) < 32:
        raise ValueError("must be at least 32 characters")
    return value


def size(raw: str) -> int:
    """A size such as 512m; empty is 0 (none)."""
    return parse_bytes(raw) if raw.strip() else 0


MS = integer(1, 24 * 3600 * 1000)


def setting(env: str, parse: Callable[[str], Any], default: str, doc: str) -> Any:
    """A dataclass field read from the variable `env`; `default` is in env syntax."""
    return field(metadata={"env": env, "parse": parse, "default": default, "doc": doc})
