"""Rendering a bot's supervisord program section from a validated spec.

Ids are validated by the protocol already; this module still refuses anything
that could break out of an INI value (newlines, NULs) and escapes supervisord's
%-interpolation, because a rendered file is executed as configuration.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from agent.cgroups import group_name
from common.ids import check_id
from common.ini import INLINE_COMMENT, ini_environment, ini_value
from common.settings.bots import encode_markets

PROGRAM_PREFIX = "bot-"


def program_name(bot_id: str) -> str:
    return PROGRAM_PREFIX + check_id(bot_id, "instance id")


def bot_id_of(program: str) -> str | None:
    """The bot id of a program name, or None for programs that are not bots (the agent)."""
    if not program.startswith(PROGRAM_PREFIX):
        return None
    return program[len(PROGRAM_PREFIX) :]


def _quote(arg: str) -> str:
    # Whitespace appears only inside single quotes here; closing and reopening the quote
    # before ';' or '#' keeps the INI parser from reading the rest as a comment.
    return INLINE_COMMENT.sub(lambda m: m.group(0)[0] + "''" + m.group(0)[1], shlex.quote(arg))


def command_line(argv: list[str]) -> str:
    # supervisord splits `command` with shlex, so shlex quoting round-trips exactly.
    return ini_value(" ".join(_quote(a) for a in argv))


PRELOADER = "preloader"
MARKET_DATA = "marketdata"
LAUNCHER_PY = Path(__file__).with_name("launcher.py")
PRELOADER_PY = Path(__file__).with_name("preloader.py")


@dataclass(frozen=True, slots=True)
class PythonCommand:
    """A bot command that runs a Python script: what the preloader can fork instead."""

    interpreter: str
    script: str
    args: list[str]

    @property
    def argv(self) -> list[str]:
        return [self.interpreter, self.script, *self.args]


def python_command(argv: list[str]) -> PythonCommand | None:
    """`python SCRIPT ARGS` or a script with a Python shebang (console scripts like freqtrade)."""
    if Path(argv[0]).name.startswith("python") and len(argv) > 1:
        return PythonCommand(argv[0], argv[1], argv[2:])
    try:
        with open(argv[0], "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    shebang = first[2:].decode(errors="replace").split()
    if shebang[:1] == ["/usr/bin/env"]:
        shebang = shebang[1:]
    if len(shebang) != 1 or not Path(shebang[0]).name.startswith("python"):
        return None
    return PythonCommand(shebang[0], argv[0], argv[1:])


@dataclass(frozen=True, slots=True)
class MarketDataProgram:
    """The pool's market-data proxy (agent/marketdata): where it serves and what it keeps."""

    port: int
    quote_ttl_ms: int = 2000
    candle_ttl_ms: int = 5000
    cache_bytes: int = 64 << 20
    user: str | None = None  # None: runs as the agent
    log_level: str = "info"

    @staticmethod
    def socket_dir(pool_dir: Path) -> Path:
        """Where it serves its counters to the agent (its own, private directory)."""
        return pool_dir / MARKET_DATA

    @staticmethod
    def stats_socket(pool_dir: Path) -> Path:
        """The socket it serves its counters on, which the agent reads."""
        return MarketDataProgram.socket_dir(pool_dir) / "stats.sock"


@dataclass(frozen=True, slots=True)
class ProgramOptions:
    """Pool-wide knobs of rendering: log place, per-slot users, and how bots are launched."""

    log_dir: Path
    # Per-slot users: slot s (port - port_start) runs as <user_prefix><s>; "" runs as the agent.
    user_prefix: str = ""
    port_start: int = 0
    # Where the preloader's socket and the launchers' pidfiles live (root only); None: exec.
    run_dir: Path | None = None
    launcher_python: str = "python3"
    preload_modules: str = ""
    preload_markets: str = ""  # JSON (PRELOAD_MARKETS): exchanges whose markets it loads once
    preload_immortal: str = "auto"  # PRELOAD_IMMORTAL: auto, on or off
    # How long bots wait for a new preloader to listen before they are started anyway.
    preloader_wait: float = 60.0
    stop_wait_secs: int = 30
    market_data: MarketDataProgram | None = None  # None: the pool runs no market-data proxy
    log_max_bytes: str = "10MB"
    log_backups: int = 3
    # Where each bot's own cgroup is made (agent/cgroups.py): its launcher joins
    # <parent>/bot-<id> of each before the bot drops to its user. (): no cgroups.
    cgroup_parents: tuple[Path, ...] = ()

    def user_for(self, port: int) -> str | None:
        return f"{self.user_prefix}{port - self.port_start}" if self.user_prefix else None

    @property
    def preloader_socket(self) -> Path | None:
        return self.run_dir / "preloader.sock" if self.run_dir else None


def cgroups_option(bot_id: str, opts: ProgramOptions) -> list[str]:
    if not opts.cgroup_parents:
        return []
    return ["--cgroups", ":".join(str(p / group_name(bot_id)) for p in opts.cgroup_parents)]


def render_program(
    bot_id: str,
    argv: list[str],
    bot_dir: Path,
    opts: ProgramOptions,
    user: str | None = None,
    preload: PythonCommand | None = None,
) -> str:
    """One bot's program; with `user`, the bot runs as that unprivileged user, HOME in its dir.

    With `preload` (and a run_dir), the program is the launcher, which has the pool's
    preloader fork the bot and stands in for it; the launcher itself stays root to reach
    the root-only preloader socket, and the bot still runs as `user`.
    """
    name = program_name(bot_id)
    log_file = opts.log_dir / f"{name}.log"
    identity = []
    if user is not None:
        env = ini_environment({"HOME": str(bot_dir), "USER": user})
        identity = [f"environment={env}", "umask=077"]
        if preload is None:
            identity.insert(0, f"user={ini_value(user)}")
    if preload is not None and opts.run_dir is not None:
        argv = [
            opts.launcher_python, "-I", "-S", str(LAUNCHER_PY),
            "--socket", str(opts.preloader_socket), "--pidfile", str(opts.run_dir / f"{name}.pid"),
            *(["--user", user] if user else []),
            "--title", f"freqtrade bot {bot_id}",
            *cgroups_option(bot_id, opts),
            "--", *preload.argv,
        ]  # fmt: skip
    lines = [
        f"[program:{name}]",
        f"command={command_line(argv)}",
        f"directory={ini_value(str(bot_dir))}",
        # The agent starts bots itself once the controller confirms they should run, so a
        # restarted pool never starts a bot the controller may have placed elsewhere.
        "autostart=false",
        # Nor does supervisord restart a bot that died: restarting is the controller's
        # policy (backoff, cooldown, failed), which supervisord's own retries would fight.
        "autorestart=false",
        "startsecs=3",
        "startretries=0",
        # freqtrade shuts down cleanly on SIGINT and SIGTERM; give it time to close trades' db.
        "stopsignal=TERM",
        f"stopwaitsecs={opts.stop_wait_secs}",
        "stopasgroup=true",
        "killasgroup=true",
        *identity,
        "redirect_stderr=true",
        f"stdout_logfile={ini_value(str(log_file))}",
        f"stdout_logfile_maxbytes={opts.log_max_bytes}",
        f"stdout_logfile_backups={opts.log_backups}",
        "",
    ]
    return "\n".join(lines)


def _pool_service(name: str, argv: list[str], pool_dir: Path, opts: ProgramOptions,
                  user: str | None = None, stop_wait: int = 10) -> str:  # fmt: skip
    """A program the pool runs for all its bots: started with supervisord, restarted at once
    whatever ended it (bots depend on it meanwhile)."""
    return "\n".join([
        f"[program:{name}]",
        f"command={command_line(argv)}",
        f"directory={ini_value(str(pool_dir))}",
        *([f"user={ini_value(user)}"] if user else []),
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "startretries=100",
        "stopsignal=TERM",
        f"stopwaitsecs={stop_wait}",
        "redirect_stderr=true",
        f"stdout_logfile={ini_value(str(opts.log_dir / f'{name}.log'))}",
        f"stdout_logfile_maxbytes={opts.log_max_bytes}",
        f"stdout_logfile_backups={opts.log_backups}",
        "",
    ])  # fmt: skip


def render_preloader(preload: PythonCommand, pool_dir: Path, opts: ProgramOptions) -> str:
    """The pool's preloader program, run by the bots' own interpreter."""
    assert opts.run_dir is not None
    argv = [preload.interpreter, str(PRELOADER_PY), "--socket", str(opts.preloader_socket)]
    if opts.preload_modules:
        argv += ["--modules", opts.preload_modules]
    if opts.preload_markets:
        argv += ["--markets", encode_markets(opts.preload_markets)]
    argv += ["--immortal", opts.preload_immortal]
    return _pool_service(PRELOADER, argv, pool_dir, opts)


def render_market_data(md: MarketDataProgram, pool_dir: Path, opts: ProgramOptions) -> str:
    """The pool's market-data proxy program, run by the agent's interpreter (isolated: no
    environment variables, no working directory on its path)."""
    socket = MarketDataProgram.stats_socket(pool_dir)
    argv = [
        opts.launcher_python, "-I", "-m", "agent.marketdata", "--port", str(md.port),
        "--quote-ttl-ms", str(md.quote_ttl_ms), "--candle-ttl-ms", str(md.candle_ttl_ms),
        "--cache-bytes", str(md.cache_bytes), "--stats-socket", str(socket),
        "--log-level", md.log_level,
    ]  # fmt: skip
    return _pool_service(MARKET_DATA, argv, pool_dir, opts, md.user, stop_wait=5)
