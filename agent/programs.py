"""Rendering a bot's supervisord program section from a validated spec.

Ids are validated by the protocol already; this module still refuses anything
that could break out of an INI value (newlines, NULs) and escapes supervisord's
%-interpolation, because a rendered file is executed as configuration.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from common.ids import check_id
from common.ini import INLINE_COMMENT, ini_environment, ini_value

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


@dataclass(frozen=True, slots=True)
class ProgramOptions:
    """Pool-wide knobs of rendering; one place to add the launcher and per-slot users later."""

    log_dir: Path
    # Per-slot users: slot s (port - port_start) runs as <user_prefix><s>; "" runs as the agent.
    user_prefix: str = ""
    port_start: int = 0
    start_retries: int = 3
    stop_wait_secs: int = 30
    log_max_bytes: str = "10MB"
    log_backups: int = 3

    def user_for(self, port: int) -> str | None:
        return f"{self.user_prefix}{port - self.port_start}" if self.user_prefix else None


def render_program(
    bot_id: str, argv: list[str], bot_dir: Path, opts: ProgramOptions, user: str | None = None
) -> str:
    """One bot's program; with `user`, it runs as that unprivileged user with HOME in its dir."""
    name = program_name(bot_id)
    log_file = opts.log_dir / f"{name}.log"
    identity = []
    if user is not None:
        identity = [
            f"user={ini_value(user)}",
            f"environment={ini_environment({'HOME': str(bot_dir), 'USER': user})}",
            "umask=077",
        ]
    lines = [
        f"[program:{name}]",
        f"command={command_line(argv)}",
        f"directory={ini_value(str(bot_dir))}",
        # The agent starts bots itself once the controller confirms they should run, so a
        # restarted pool never starts a bot the controller may have placed elsewhere.
        "autostart=false",
        "autorestart=true",
        "startsecs=3",
        f"startretries={opts.start_retries}",
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
