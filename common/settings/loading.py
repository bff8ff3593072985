"""Reading settings: the environment over `.env`, every value parsed, every error named."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from common.logging import is_secret_name
from common.settings.parsing import SettingsError


def load_env(dotenv: Path | None = None) -> dict[str, str]:
    """The process environment over the values of `.env` (or ENV_FILE)."""
    path = dotenv or Path(os.environ.get("ENV_FILE", ".env"))
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    values.update(os.environ)
    return values


def _build(cls: type, env: Mapping[str, str]) -> Any:
    values: dict[str, Any] = {}
    errors: list[str] = []
    for f in fields(cls):
        meta = f.metadata
        raw = env.get(meta["env"], meta["default"])
        try:
            values[f.name] = meta["parse"](raw)
        except ValueError as exc:
            errors.append(f"{meta['env']} {exc} ({_shown(meta['env'], raw)})")
    if errors:
        raise SettingsError("invalid settings: " + "; ".join(errors))
    return cls(**values)


# Not secrets by name, but configs that could carry one by mistake (ccxt's credentials).
UNSHOWN = frozenset(("PRELOAD_MARKETS",))


def _shown(env: str, raw: str) -> str:
    """What an error says of a rejected value: never a secret's, even an invalid one."""
    if is_secret_name(env) or env in UNSHOWN:
        return f"got {len(raw.strip())} characters; the value is not shown"
    # A URL's user and password (refused by web_url) are not repeated either.
    return f"got {re.sub(r'(?<=://)[^/@]*@', '***@', raw)!r}"


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting of `cls`; used by docs and tests."""
    return [(f.metadata["env"], f.metadata["default"], f.metadata["doc"]) for f in fields(cls)]
