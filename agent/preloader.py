"""The pool's preloader: imports FreqTrade once, then forks every bot from that warm process.

Ten bots forked from one process that has already imported FreqTrade share those pages
copy-on-write, instead of each holding its own copy (see bench/memory.py). A bot's
supervisord program is a launcher (agent/launcher.py) that connects here, hands over its
stdin/stdout/stderr, and stands in for the forked bot until it exits.

This file runs under the bots' Python interpreter (FreqTrade's, not the agent's), so it
uses the standard library only. It is single-threaded on purpose: forking a process that
runs other threads is unsafe, and an event loop would be inherited by every bot.

Safety (at most one copy of a bot): a forked bot dies with the preloader (PDEATHSIG), and
is killed when its launcher goes away; only root (or the preloader's own user) may ask
for a fork, and only of this very interpreter.

Warm-ups: what every bot's first steps would fill in on shared objects is done once, before
the preloader forks (agent/warm_ups.py, beside this file). Should a Python thread ever run
here, the preloader refuses to fork: launchers then start their bots plainly.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import gc
import importlib
import importlib.util
import json
import os
import runpy
import select
import signal
import socket
import struct
import sys
import traceback

MAX_REQUEST = 64 * 1024
MAX_TITLE = 200
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
SHARED_MARKETS = "ftpool_shared_markets"
IMMORTAL = "ftpool_immortal"
WARM_UPS = "ftpool_warm_ups"


def log(message: str) -> None:
    print(f"preloader: {message}", file=sys.stderr, flush=True)


def preload(modules: list[str], markets: list[dict] | None = None, immortal: str = "off") -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a module a bot may not need: its absence is no failure
            log(f"cannot preload {name}: {exc!r}")
    warm_ups = None  # agent/warm_ups.py, loaded once there is something to warm up
    for name in modules:
        if name in sys.modules:
            try:
                warm_ups = warm_ups or sibling("warm_ups.py", WARM_UPS)
                warm_ups.warm_up(name)
            except Exception as exc:  # it only saves memory: a bot does the same itself
                log(f"cannot warm up {name}: {exc!r}")
    if markets:
        preload_markets(markets)
    gc.collect()
    # Keep bots from writing reference counts into the shared objects' pages (immortal.py).
    try:
        sibling("immortal.py", IMMORTAL).immortalize(immortal, log)
    except Exception as exc:  # it only saves memory
        log(f"cannot make objects immortal: {exc!r}")
    # Keep the collector away from the shared objects, so it does not dirty their pages.
    gc.freeze()


def sibling(filename: str, name: str):
    """A module of the agent package beside this file, loaded by path: the package itself
    is the agent's, not importable by FreqTrade's interpreter."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def market_configs(encoded: str) -> list[dict] | None:
    """--markets (the agent's checked PRELOAD_MARKETS, base64url JSON); None if unreadable:
    sharing the market list saves memory, the preloader runs without it."""
    if not encoded:
        return None
    try:
        configs = json.loads(base64.urlsafe_b64decode(encoded))
    except ValueError as exc:  # binascii.Error and JSON errors alike
        log(f"cannot read --markets: {exc.__class__.__name__}")
        return None
    return configs if isinstance(configs, list) else None


def preload_markets(configs: list[dict]) -> None:
    """Load the configured exchanges' market lists once, for every bot to adopt when its own
    load fetches the very same list (agent/shared_markets.py, beside this file)."""
    try:
        loaded = sibling("shared_markets.py", SHARED_MARKETS).SharedMarkets().preload(configs)
    except Exception as exc:  # it only saves memory: each bot loads its own anyway
        log(f"cannot preload markets: {exc!r}")
        return
    log(f"markets loaded once for the pool's bots: {', '.join(loaded) or 'none'}")


def set_title(title: str) -> None:
    """Show `title` as this process's command line (`ps`, `docker top`) and name (`top`).

    A forked bot would otherwise show the preloader's command line. The title is written
    over the process's own argument area, which the kernel reports as /proc/PID/cmdline (as
    the setproctitle library does; by hand here, since this file runs under FreqTrade's
    interpreter, whose packages are the user's image's, with the standard library only).
    It is cut to fit the preloader's own command line, always long enough for a bot id.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(title.encode()[:15]), 0, 0, 0)
    with open("/proc/self/stat", "rb") as stat:
        # Fields after the command name (which may hold spaces); arg_start is field 48.
        fields = stat.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])
    if start <= 0 or end <= start:
        return
    raw = title.encode()[: end - start - 1]
    ctypes.memmove(start, raw + b"\0" * (end - start - len(raw)), end - start)


def other_threads() -> int:
    """Python threads besides this one: forking a process that runs threads is unsafe.
    (Native libraries' own threads, such as OpenBLAS's or pyarrow's jemalloc's, started on
    import, are not Python threads and are not counted.)"""
    threading = sys.modules.get("threading")
    return threading.active_count() - 1 if threading is not None else 0


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST, 3)
    while not data.endswith(b"\n"):
        more = conn.recv(MAX_REQUEST)
        if not more or len(data) > MAX_REQUEST:
            raise ValueError("incomplete request")
        data += more
    return json.loads(data), fds


def run_bot(request: dict, fds: list[int], close: list[socket.socket], pidfds: list[int]) -> None:
    """In the forked child: become the bot. Never returns."""
    code = 1
    try:
        for s in close:
            s.close()
        for fd in pidfds:  # its siblings' (the preloader's watch on them)
            os.close(fd)
        preloader = os.getppid()
        # A session of its own: the bot leads its process group (the launcher's and the
        # preloader's killpg reach its children too), has no controlling terminal, and,
        # where the kernel schedules by autogroup, is its own autogroup, a share of the CPU
        # equal to each neighbour's however many threads it runs, and one the agent can
        # lower (agent/autogroup.py). In the pool's session every bot would share the
        # machinery's autogroup, its threads' nice alone ordering them.
        os.setsid()
        # Into the bot's own cgroups (agent/cgroups.py) while still root, so it never
        # allocates outside them; the agent moves it in later if this fails.
        for group in request.get("cgroups") or []:
            try:
                with open(os.path.join(group, "cgroup.procs"), "w") as procs:
                    procs.write("0")
            except OSError as exc:
                log(f"cannot join cgroup {group}: {exc.strerror}")
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(request["cwd"])
        if request.get("uid") is not None:
            os.setgroups([])
            os.setgid(request["gid"])
            os.setuid(request["uid"])
        # After setuid: the kernel clears the parent-death signal when credentials change.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != preloader:
            return  # the preloader died before the signal was armed
        os.umask(0o077)
        if request.get("title"):
            set_title(request["title"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        # As `python SCRIPT` would: the script's directory first on the path.
        sys.path[0] = os.path.dirname(os.path.realpath(request["script"]))
        sys.stdin = os.fdopen(0, "r", closefd=False)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        runpy.run_path(request["script"], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def valid(request: object) -> bool:
    if not isinstance(request, dict):
        return False
    argv, env = request.get("argv"), request.get("env")
    return (
        isinstance(request.get("script"), str)
        and isinstance(request.get("cwd"), str)
        and isinstance(argv, list)
        and all(isinstance(a, str) for a in argv)
        and isinstance(env, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        and (request.get("uid") is None or isinstance(request.get("uid"), int))
        and (request.get("gid") is None or isinstance(request.get("gid"), int))
        and valid_title(request.get("title"))
        and valid_cgroups(request.get("cgroups"))
    )


def valid_cgroups(groups: object) -> bool:
    """Absolute directories, none of them climbing: a bot's groups (from a root launcher)."""
    return groups is None or (
        isinstance(groups, list)
        and len(groups) <= 8
        and all(
            isinstance(g, str) and g.startswith("/") and ".." not in g.split("/") for g in groups
        )
    )


def valid_title(title: object) -> bool:
    return title is None or (
        isinstance(title, str) and len(title) <= MAX_TITLE and title.isprintable()
    )


def exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


class Preloader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.interpreter = os.path.realpath(sys.executable)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.children: dict[int, socket.socket] = {}  # bot pid -> its launcher's connection
        self.connections: list[socket.socket] = []
        # A pidfd per bot, readable the moment it exits: its launcher hears of it at once,
        # not at the next turn of the loop (where there is no pidfd: within 0.2 s).
        self.pidfds: dict[int, int] = {}  # bot pid -> pidfd

    def serve(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old = os.umask(0o177)
        self.listener.bind(self.path)
        os.umask(old)
        self.listener.listen(64)
        log(f"ready on {self.path} ({len(sys.modules)} modules loaded)")
        while True:
            waited = [self.listener, *self.connections, *self.pidfds.values()]
            readable, _, _ = select.select(waited, [], [], 0.2)
            # Gone launchers first: a restarted launcher's new bot must never run beside
            # the old one that the dead launcher left.
            for s in readable:
                if isinstance(s, socket.socket) and s is not self.listener:
                    self.launcher_gone(s)
            self.reap()
            if self.listener in readable:
                self.accept()

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            conn.settimeout(5)
            if peer_uid(conn) not in (0, os.getuid()):
                raise PermissionError("peer may not launch bots")
            request, fds = receive(conn)
            if not valid(request) or len(fds) != 3:
                raise ValueError("malformed request")
            if os.path.realpath(request.get("interpreter", "")) != self.interpreter:
                raise ValueError(f"this preloader runs {self.interpreter}")
            if other_threads():
                raise ValueError("the preloader runs threads: it cannot fork safely")
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            run_bot(request, fds, [self.listener, conn, *self.connections], [*self.pidfds.values()])
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        with contextlib.suppress(AttributeError, OSError):  # no pidfd: the 0.2 s loop
            self.pidfds[pid] = os.pidfd_open(pid)
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            # The launcher is gone before it learned of its bot: the bot must not run.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            conn.close()
            return
        conn.settimeout(None)
        self.connections.append(conn)

    def launcher_gone(self, conn: socket.socket) -> None:
        """The launcher's connection closed: its bot must not outlive it."""
        with contextlib.suppress(OSError):
            if conn.recv(1):
                return  # launchers send nothing more; ignore stray bytes
        for pid, c in self.children.items():
            if c is conn:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        self.connections.remove(conn)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if (pidfd := self.pidfds.pop(pid, None)) is not None:
                os.close(pidfd)
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"exit": exit_code(status)}).encode() + b"\n")
            conn.close()
            if conn in self.connections:
                self.connections.remove(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fork bots from a process with FreqTrade loaded.")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--modules", default="", help="comma-separated modules to import first")
    parser.add_argument(
        "--markets", default="", help="base64url JSON: the exchanges whose markets to load once"
    )
    parser.add_argument(
        "--immortal", choices=("auto", "on", "off"), default="off",
        help="make the preloaded objects immortal before forking (PRELOAD_IMMORTAL)",
    )  # fmt: skip
    args = parser.parse_args()
    # This file's own directory (the agent package) must not shadow anything a bot imports.
    sys.path[0] = "/nonexistent"
    modules = [m for m in args.modules.split(",") if m]
    preload(modules, market_configs(args.markets), args.immortal)
    Preloader(args.socket).serve()


if __name__ == "__main__":
    main()
