"""A bot's supervisord program when bots are preloaded: it stands in for the forked bot.

    launcher.py --socket S --pidfile P [--user U] [--cgroups D:D...] -- INTERPRETER SCRIPT [ARGS...]

It asks the pool's preloader to fork `SCRIPT ARGS` (with this process's stdin, stdout and
stderr, working directory and environment, as user U), then forwards every signal
supervisord sends to the bot, and exits with the bot's exit status. To supervisord it is
the bot. When no preloader answers, or it refuses, the launcher becomes the bot the plain
way (drops to user U and execs INTERPRETER SCRIPT ARGS): preloading saves memory, it is
never required.

Runs under the agent's interpreter, isolated (`-I -S`: no site-packages); standard library
only, and as little of it as possible, since a pool runs one launcher per bot.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import sys
import time

FORWARDED = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
)  # fmt: skip
USAGE = (
    "usage: launcher.py --socket S --pidfile P [--user U] [--title T] [--cgroups D:D...] "
    "-- PYTHON SCRIPT [ARG...]"
)
OPTIONS = ("--socket", "--pidfile", "--user", "--title", "--cgroups")
CONNECT_ATTEMPTS = 20  # the preloader may be starting with the pool: wait up to ~10 s


def say(message: str) -> None:
    print(f"launcher: {message}", file=sys.stderr, flush=True)


def identity(user: str | None) -> tuple[int | None, int | None, dict[str, str]]:
    if user is None:
        return None, None, {}
    record = pwd.getpwnam(user)
    return record.pw_uid, record.pw_gid, {"USER": user, "LOGNAME": user}


def connect(path: str) -> socket.socket | None:
    for _ in range(CONNECT_ATTEMPTS):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except OSError:
            conn.close()
            time.sleep(0.5)
    return None


def read_line(conn: socket.socket) -> dict | None:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = conn.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def join_cgroups(dirs: list[str]) -> None:
    """Move this process into the bot's cgroups (agent/cgroups.py), as root, before it
    drops to the bot's user: the bot never allocates outside them. A group it cannot join
    is said; the agent moves the bot in when it sees it."""
    for group in dirs:
        try:
            with open(os.path.join(group, "cgroup.procs"), "w") as procs:
                procs.write("0")
        except OSError as exc:
            say(f"cannot join cgroup {group}: {exc.strerror}")


def exec_plainly(
    uid: int | None, gid: int | None, command: list[str], cgroups: list[str] | None = None
) -> None:
    join_cgroups(cgroups or [])
    if uid is not None and gid is not None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    os.umask(0o077)
    os.execv(command[0], command)


def stand_in(conn: socket.socket, pid: int, pidfile: str) -> int:
    """Forward signals to the bot until the preloader reports its exit status."""

    def forward(sig: int, _frame: object) -> None:
        # The bot leads its own process group (like a program with stopasgroup=true).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    result = read_line(conn)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    if result is None or "exit" not in result:
        # The preloader is gone; its bots die with it (PDEATHSIG). Make sure of it.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        say("preloader went away; the bot was stopped")
        return 1
    code = int(result["exit"])
    # A negative code is death by a signal: report it the way a shell (and supervisord) expects.
    return 128 - code if code < 0 else code


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """`--socket S --pidfile P [--user U] [--title T] [--cgroups D:D] -- COMMAND...`, by hand:
    argparse alone would add a few MiB to each of a pool's launchers."""
    options: dict[str, str] = {}
    while argv and argv[0] != "--":
        if argv[0] not in OPTIONS or len(argv) < 2:
            raise SystemExit(f"launcher: unexpected argument {argv[0]!r}")
        options[argv[0][2:]] = argv[1]
        argv = argv[2:]
    command = argv[1:]
    if "socket" not in options or "pidfile" not in options or len(command) < 2:
        raise SystemExit(USAGE)
    return options, command


def main() -> int:
    options, command = parse(sys.argv[1:])
    uid, gid, env_extra = identity(options.get("user"))
    cgroups = [d for d in options.get("cgroups", "").split(":") if d]
    conn = connect(options["socket"])
    if conn is None:
        say("no preloader: starting the bot without it")
        exec_plainly(uid, gid, command, cgroups)
    request = {
        "interpreter": command[0],
        "script": command[1],
        "argv": command[1:],
        "cwd": os.getcwd(),
        "env": {**os.environ, **env_extra},
        "uid": uid,
        "gid": gid,
        "title": options.get("title"),  # what `ps` shows for the forked bot
        "cgroups": cgroups,  # the bot's own groups, joined before it drops to its user
    }
    socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
    reply = read_line(conn)
    if reply is None:
        # The request went out: a bot may have been forked. Never start a second one here;
        # exit, and supervisord's retry asks again.
        say("preloader went away during the request")
        return 1
    if "pid" not in reply:
        say(f"preloader refused ({reply.get('error')}): starting the bot without it")
        conn.close()
        exec_plainly(uid, gid, command, cgroups)
    pid = int(reply["pid"])
    with open(options["pidfile"], "w") as f:
        f.write(f"{os.getpid()} {pid}\n")
    return stand_in(conn, pid, options["pidfile"])


if __name__ == "__main__":
    sys.exit(main())
