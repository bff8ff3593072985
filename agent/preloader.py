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
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib
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
PR_SET_PDEATHSIG = 1


def log(message: str) -> None:
    print(f"preloader: {message}", file=sys.stderr, flush=True)


def preload(modules: list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a module a bot may not need: its absence is no failure
            log(f"cannot preload {name}: {exc!r}")
    # Keep the collector away from the shared objects, so it does not dirty their pages.
    gc.collect()
    gc.freeze()


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


def run_bot(request: dict, fds: list[int], close: list[socket.socket]) -> None:
    """In the forked child: become the bot. Never returns."""
    code = 1
    try:
        for s in close:
            s.close()
        preloader = os.getppid()
        os.setsid()
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

    def serve(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old = os.umask(0o177)
        self.listener.bind(self.path)
        os.umask(old)
        self.listener.listen(64)
        log(f"ready on {self.path} ({len(sys.modules)} modules loaded)")
        while True:
            readable, _, _ = select.select([self.listener, *self.connections], [], [], 0.2)
            # Gone launchers first: a restarted launcher's new bot must never run beside
            # the old one that the dead launcher left.
            for s in readable:
                if s is not self.listener:
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
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            run_bot(request, fds, [self.listener, conn, *self.connections])
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
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
    args = parser.parse_args()
    # This file's own directory (the agent package) must not shadow anything a bot imports.
    sys.path[0] = "/nonexistent"
    preload([m for m in args.modules.split(",") if m])
    Preloader(args.socket).serve()


if __name__ == "__main__":
    main()
