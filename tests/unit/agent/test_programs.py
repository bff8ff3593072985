"""Program sections: what supervisord reads back is exactly the bot we meant to run."""

from __future__ import annotations

import getpass
import os
import shlex
from pathlib import Path

import pytest
from supervisor.options import ServerOptions, UnhosedConfigParser

from agent.programs import (
    LAUNCHER_PY,
    PRELOADER_PY,
    MarketDataProgram,
    ProgramOptions,
    PythonCommand,
    bot_id_of,
    command_line,
    program_name,
    python_command,
    render_market_data,
    render_preloader,
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
    # supervisord never restarts a bot by itself: the controller's restart policy does.
    assert config.autorestart is False and config.startretries == 0
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


def script(tmp_path: Path, name: str, first_line: str) -> str:
    path = tmp_path / name
    path.write_text(first_line + "\nprint('hi')\n")
    return str(path)


def test_python_command_recognizes_interpreters_and_python_shebangs(tmp_path: Path) -> None:
    assert python_command(["/venv/bin/python3", "bot.py", "--x"]) == PythonCommand(
        "/venv/bin/python3", "bot.py", ["--x"]
    )
    direct = script(tmp_path, "freqtrade", "#!/venv/bin/python3")
    assert python_command([direct, "trade"]) == PythonCommand(
        "/venv/bin/python3", direct, ["trade"]
    )
    via_env = script(tmp_path, "ft2", "#!/usr/bin/env python3")
    assert python_command([via_env]) == PythonCommand("python3", via_env, [])


@pytest.mark.parametrize(
    "first_line",
    ["#!/bin/sh", "#!/usr/bin/python3 -u", "not a shebang", "#!/usr/bin/env -S python3 -u"],
)
def test_python_command_leaves_everything_else_to_plain_exec(tmp_path: Path, first_line) -> None:
    assert python_command([script(tmp_path, "tool", first_line), "arg"]) is None
    assert python_command(["/does/not/exist"]) is None
    assert python_command(["python3"]) is None  # an interpreter without a script


def test_preloaded_bot_program_is_its_launcher(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    opts = ProgramOptions(
        log_dir=tmp_path / "logs", run_dir=tmp_path / "run", launcher_python="/opt/py"
    )
    preload = PythonCommand("/usr/bin/python3", "/bin/freqtrade", ["trade", "--config", "c.json"])
    text = render_program("b1", preload.argv, tmp_path / "b1", opts, "ftbot3", preload)
    _name, (process,) = load_like_supervisord(text, tmp_path)
    argv = shlex.split(process.command)
    assert argv[:4] == ["/opt/py", "-I", "-S", str(LAUNCHER_PY)]  # isolated: stdlib only
    assert argv[argv.index("--socket") + 1] == str(tmp_path / "run" / "preloader.sock")
    assert argv[argv.index("--pidfile") + 1] == str(tmp_path / "run" / "bot-b1.pid")
    assert argv[argv.index("--user") + 1] == "ftbot3"
    assert argv[argv.index("--") + 1 :] == preload.argv
    # The launcher must reach the root-only socket; the bot itself drops to ftbot3.
    assert process.uid is None
    assert process.environment == {"HOME": str(tmp_path / "b1"), "USER": "ftbot3"}


def test_preloader_program_runs_the_bots_interpreter(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    opts = ProgramOptions(
        log_dir=tmp_path / "logs", run_dir=tmp_path / "run", preload_modules="pandas,numpy"
    )
    preload = PythonCommand("/usr/bin/python3", "/bin/freqtrade", [])
    name, (process,) = load_like_supervisord(render_preloader(preload, tmp_path, opts), tmp_path)
    assert name == "preloader" and bot_id_of(name) is None
    assert shlex.split(process.command) == [
        "/usr/bin/python3", str(PRELOADER_PY),
        "--socket", str(tmp_path / "run" / "preloader.sock"), "--modules", "pandas,numpy",
        "--immortal", "auto",
    ]  # fmt: skip
    assert process.autostart and process.autorestart


def test_the_market_data_proxy_program(tmp_path: Path, opts: ProgramOptions) -> None:
    md = MarketDataProgram(port=8001, quote_ttl_ms=1500, candle_ttl_ms=0, cache_bytes=1 << 20)
    opts = ProgramOptions(log_dir=opts.log_dir, launcher_python="/opt/ftpool/bin/python")
    name, (process,) = load_like_supervisord(render_market_data(md, tmp_path, opts), tmp_path)
    assert name == "marketdata" and bot_id_of(name) is None
    assert shlex.split(process.command) == [
        "/opt/ftpool/bin/python", "-I", "-m", "agent.marketdata", "--port", "8001",
        "--quote-ttl-ms", "1500", "--candle-ttl-ms", "0", "--cache-bytes", str(1 << 20),
        "--stats-socket", str(tmp_path / "marketdata" / "stats.sock"), "--log-level", "info",
    ]  # fmt: skip
    # Restarted by supervisord at once, whatever ended it; not as another user unless told.
    assert process.autostart and process.autorestart and process.startsecs == 1
    assert process.uid is None
    assert process.stdout_logfile == str(opts.log_dir / "marketdata.log")
    as_nobody = MarketDataProgram(port=8001, user="nobody")
    _, (process,) = load_like_supervisord(render_market_data(as_nobody, tmp_path, opts), tmp_path)
    assert process.uid == 65534
