"""Program sections: what supervisord reads back is exactly the bot we meant to run."""

from __future__ import annotations

import getpass
import os
import shlex
from pathlib import Path

import pytest
from supervisor.options import ServerOptions, UnhosedConfigParser

from agent.programs import (
    ProgramOptions,
    bot_id_of,
    command_line,
    program_name,
    render_program,
)
from common.ids import InvalidId
from common.ini import RenderError


def load_like_supervisord(text: str, here: Path):  # type: ignore[no-untyped-def]
    """The ProcessConfigs supervisord builds from an included program file."""
    parser = UnhosedConfigParser()
    parser.read_string(text)
    sections = [s for s in parser.sections() if s.startswith("program:")]
    assert len(sections) == 1, sections
    options = ServerOptions()
    options.here = str(here)
    name = sections[0].split(":", 1)[1]
    return name, options.processes_from_section(parser, sections[0], name)


@pytest.fixture
def opts(tmp_path: Path) -> ProgramOptions:
    (tmp_path / "logs").mkdir()
    return ProgramOptions(log_dir=tmp_path / "logs")


ARGVS = [
    ["freqtrade", "trade", "--config", "config.json"],
    ["/usr/bin/python3", "-m", "freqtrade", "trade"],
    ["echo", "with space", "50%", "%(program_name)s", "it's", '"double"', "$HOME", "`x`"],
    ["echo", "a ;b", "c #d", "\t;x", ";", "#", " # ", "x;y", "x#y", "trailing ", " leading"],
    ["echo", "ünïcödé", "a\tb", "\\backslash", "{braces}", "[section]"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=range(len(ARGVS)))
def test_rendered_program_parses_like_supervisord(
    argv: list[str], tmp_path: Path, opts: ProgramOptions
) -> None:
    bot_dir = tmp_path / "bots" / "bot-1"
    text = render_program("bot-1", argv, bot_dir, opts)
    name, configs = load_like_supervisord(text, tmp_path)
    assert name == "bot-bot-1"
    [config] = configs
    assert config.name == "bot-bot-1"
    assert shlex.split(config.command) == argv
    assert config.directory == str(bot_dir)
    assert config.autostart is False
    assert config.stdout_logfile == str(opts.log_dir / "bot-bot-1.log")
    assert config.redirect_stderr is True
    assert config.stopasgroup is True
    assert config.killasgroup is True
    assert config.startretries == opts.start_retries
    assert config.stopwaitsecs == opts.stop_wait_secs


def test_command_round_trips_through_shlex() -> None:
    for argv in ARGVS:
        parser = UnhosedConfigParser()
        parser.read_string(f"[program:x]\ncommand={command_line(argv)}\n")
        assert shlex.split(parser.saneget("program:x", "command", expansions={})) == argv


def test_percent_is_doubled_in_the_command() -> None:
    assert "50%%" in command_line(["echo", "50%"])
    assert "%%(ENV_SECRET)s" in command_line(["echo", "%(ENV_SECRET)s"])


@pytest.mark.parametrize("bad", ["line\nbreak", "carriage\rreturn", "nul\x00byte"])
def test_newline_or_nul_in_args_raise(bad: str, tmp_path: Path, opts: ProgramOptions) -> None:
    with pytest.raises(RenderError):
        command_line(["echo", bad])
    with pytest.raises(RenderError):
        render_program("bot-1", ["echo", bad], tmp_path, opts)


def test_newline_in_directory_raises(tmp_path: Path, opts: ProgramOptions) -> None:
    with pytest.raises(RenderError):
        render_program("bot-1", ["echo"], tmp_path / "x\n[program:evil]", opts)


def test_a_hostile_argument_cannot_add_a_section(tmp_path: Path, opts: ProgramOptions) -> None:
    argv = ["echo", "]\n[program:evil]\ncommand=/bin/sh"]
    with pytest.raises(RenderError):
        render_program("bot-1", argv, tmp_path, opts)


@pytest.mark.parametrize(
    "bad", ["../x", "a b", "x\n[program:evil]", "", "x]", "a/b", "-x", "x" * 65, "a:b"]
)
def test_program_name_rejects_hostile_ids(bad: str, tmp_path: Path, opts: ProgramOptions) -> None:
    with pytest.raises(InvalidId):
        program_name(bad)
    with pytest.raises(InvalidId):
        render_program(bad, ["echo"], tmp_path, opts)


def test_program_name_and_back() -> None:
    assert program_name("abc-1") == "bot-abc-1"
    assert bot_id_of("bot-abc-1") == "abc-1"
    assert bot_id_of("agent") is None
    assert bot_id_of("preloader") is None


def test_a_slot_user_is_rendered_for_supervisord(tmp_path: Path, opts: ProgramOptions) -> None:
    user = getpass.getuser()
    bot_dir = tmp_path / "bots" / "b 1%"
    text = render_program("b1", ["echo", "x"], bot_dir, opts, user)
    _name, [config] = load_like_supervisord(text, tmp_path)
    assert config.uid == os.getuid()
    assert config.environment == {"HOME": str(bot_dir), "USER": user}
    assert config.umask == 0o077


def test_slot_users_follow_the_port() -> None:
    opts = ProgramOptions(log_dir=Path("/logs"), user_prefix="ftbot", port_start=9010)
    assert opts.user_for(9010) == "ftbot0"
    assert opts.user_for(9019) == "ftbot9"
    assert ProgramOptions(log_dir=Path("/logs")).user_for(9010) is None
