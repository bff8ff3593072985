"""Where the controller is and which token to send: flags, then the environment (its
FTPOOL_* settings, common/settings/client.py), then a config file (TOML). A file that holds
a token must be private (mode 0600 or stricter)."""

from __future__ import annotations

import os
import stat
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.settings import ClientSettings

DEFAULT_URL = "http://127.0.0.1:5000"
CONFIG_KEYS = {"url", "token", "token_file"}


class ConfigError(Exception):
    """The connection cannot be set up: a usage error, never showing the token."""


@dataclass(frozen=True, slots=True)
class Connection:
    url: str
    token: str = ""

    def __repr__(self) -> str:  # the token never reaches a traceback or a log
        return f"Connection(url={self.url!r}, token=<hidden>)"


@dataclass(frozen=True, slots=True)
class Flags:
    url: str | None = None
    token: str | None = None
    token_file: str | None = None
    config: str | None = None


def config_path(flags: Flags, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file and whether it was named explicitly (then it must exist)."""
    named = flags.config or ClientSettings.from_env(env).config
    if named:
        return Path(named).expanduser(), True
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "ftpool" / "config.toml", False


def check_private(path: Path) -> None:
    """Refuse a file holding a token that others can read or that is not the caller's."""
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} holds a token and is readable by others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    if info.st_uid != os.getuid():
        raise ConfigError(f"{path} holds a token and belongs to another user")


def read_config(path: Path, required: bool) -> dict[str, str]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(data) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    if any(not isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{path}: url, token and token_file must be strings")
    if "token" in data:
        check_private(path)
    return data


def read_token_file(name: str, relative_to: Path | None = None) -> str:
    path = Path(name).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    try:
        check_private(path)
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None


def checked_token(token: str) -> str:
    token = token.strip()
    if not token:
        raise ConfigError("the token is empty")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in token):
        raise ConfigError("the token holds spaces or control characters")
    return token


def checked_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"the controller URL must start with http:// or https://: {url!r}")
    if "@" in urllib.parse.urlsplit(url).netloc:
        # Credentials in the URL would be shown in every error message.
        raise ConfigError("the controller URL holds credentials: give the token on its own")
    return url.rstrip("/")


def resolve(flags: Flags, env: Mapping[str, str]) -> Connection:
    """The connection, each part from the first place that has it: flags, environment, file."""
    settings = ClientSettings.from_env(env)
    path, required = config_path(flags, env)
    file = read_config(path, required)
    url = flags.url or settings.url or file.get("url") or DEFAULT_URL
    if flags.token:
        token = flags.token
    elif flags.token_file:
        token = read_token_file(flags.token_file)
    elif settings.token:
        token = settings.token
    elif settings.token_file:
        token = read_token_file(settings.token_file)
    elif file.get("token"):
        token = file["token"]
    elif file.get("token_file"):
        token = read_token_file(file["token_file"], relative_to=path.parent)
    else:
        raise ConfigError(
            "no token: pass --token-file FILE, set FTPOOL_TOKEN or FTPOOL_TOKEN_FILE, "
            f"or put token_file in {path} (see docs/cli.md)"
        )
    return Connection(checked_url(url), checked_token(token))
