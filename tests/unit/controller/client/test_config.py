"""Where the client finds the controller and its token: flags, environment, config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.client.config import DEFAULT_URL, ConfigError, Connection, Flags, resolve

TOKEN = "t" * 40


def private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    private(tmp_path / "ftpool" / "config.toml", f'url = "http://file:1"\ntoken = "{"f" * 40}"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve(Flags(), env) == Connection("http://file:1", "f" * 40)
    env |= {"FTPOOL_URL": "http://env:2/", "FTPOOL_TOKEN": "e" * 40}
    assert resolve(Flags(), env) == Connection("http://env:2", "e" * 40)
    flags = Flags(url="https://flag:3", token="x" * 40)
    assert resolve(flags, env) == Connection("https://flag:3", "x" * 40)


def test_a_blank_variable_is_unset(tmp_path: Path) -> None:
    private(tmp_path / "ftpool" / "config.toml", f'url = "http://file:1"\ntoken = "{"f" * 40}"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path), "FTPOOL_URL": "  ", "FTPOOL_TOKEN": " "}
    assert resolve(Flags(), env) == Connection("http://file:1", "f" * 40)


def test_token_files_and_the_default_url(tmp_path: Path) -> None:
    token_file = private(tmp_path / "secret" / "token", TOKEN + "\n")
    config = private(tmp_path / "c.toml", 'token_file = "secret/token"\n')
    # A relative token_file is relative to the config file's directory.
    assert resolve(Flags(config=str(config)), {}) == Connection(DEFAULT_URL, TOKEN)
    assert (
        resolve(Flags(), {"FTPOOL_TOKEN_FILE": str(token_file), "HOME": str(tmp_path)}).token
        == TOKEN
    )
    assert resolve(Flags(token_file=str(token_file)), {"FTPOOL_TOKEN": "e" * 40}).token == TOKEN


def test_a_token_others_can_read_is_refused(tmp_path: Path) -> None:
    token_file = private(tmp_path / "token", TOKEN)
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as exc:
        resolve(Flags(token_file=str(token_file)), {})
    assert TOKEN not in str(exc.value)
    config = private(tmp_path / "ftpool" / "config.toml", f'token = "{TOKEN}"\n')
    config.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        resolve(Flags(), {"XDG_CONFIG_HOME": str(tmp_path)})
    # Without a token in it, a config file may be readable.
    config.write_text('url = "http://h:1"\n')
    assert (
        resolve(Flags(), {"XDG_CONFIG_HOME": str(tmp_path), "FTPOOL_TOKEN": TOKEN}).url
        == "http://h:1"
    )


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (Flags(), {}, "no token"),
        (Flags(config="/nonexistent/ftpool.toml"), {"FTPOOL_TOKEN": TOKEN}, "does not exist"),
        (Flags(url="ftp://x", token=TOKEN), {}, "http:// or https://"),
        (Flags(url=f"http://admin:{TOKEN}@h:1", token=TOKEN), {}, "holds credentials"),
        (Flags(token="a b"), {}, "spaces or control"),
        (Flags(token=" "), {}, "empty"),
        (Flags(token_file="/nonexistent/token"), {}, "cannot read the token file"),
    ],
)
def test_clear_errors(tmp_path: Path, flags: Flags, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(flags, {"HOME": str(tmp_path), **env})


def test_a_bad_config_file_is_named(tmp_path: Path) -> None:
    for text, message in (("url = [", "not valid TOML"), ("colour = 'red'", "unknown keys colour"),
                          ("url = 5", "must be strings")):  # fmt: skip
        config = private(tmp_path / "c.toml", text)
        with pytest.raises(ConfigError, match=message):
            resolve(Flags(config=str(config), token=TOKEN), {})


def test_the_token_never_shows_in_a_repr() -> None:
    assert TOKEN not in repr(Connection("http://h", TOKEN))
