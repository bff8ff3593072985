"""The `local` runtime: each pool is a supervisord daemon with its agent, as host processes.

It mirrors what the Docker runtime does with containers: a pool directory under
BOT_BASE_DIR/pools/<poolId>/ plays the role of the container's /pool volume, and
supervisord runs the agent as an always-restarted program. Pools outlive the
controller (supervisord daemonizes), so a restarted controller adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

import structlog
from supervisor.xmlrpc import SupervisorTransport

import agent as agent_package
from controller.errors import PoolExists, RuntimeFailure
from controller.runtimes.base import (
    PoolLaunch,
    PoolRuntime,
    PoolUsage,
    RuntimeState,
    make_backup_dir,
    retire_pool_dir,
)
from controller.runtimes.local_conf import supervisord_conf

log = structlog.get_logger("runtime.local")
# Only these variables of the controller's environment reach a pool: never its secrets.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_SOURCE_ROOT = Path(agent_package.__file__).resolve().parent.parent


def _children(pid: int) -> list[int]:
    """All descendants of pid, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class LocalRuntime(PoolRuntime):
    name = "local"

    def __init__(self, pools_dir: Path, archive_dir: Path) -> None:
        self.pools_dir = pools_dir
        self.archive_dir = archive_dir

    def _dir(self, pool_id: str) -> Path:
        return self.pools_dir / pool_id

    def _pid(self, pool_id: str) -> int | None:
        d = self._dir(pool_id)
        try:
            pid = int((d / "supervisord.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # A recycled pid would not be our supervisord with our config.
        if b"supervisord" in cmdline and str(d / "supervisord.conf").encode() in cmdline:
            return pid
        return None

    @property
    def bot_listen_ip(self) -> str:
        return "127.0.0.1"

    def bot_host(self, pool_id: str) -> str:
        return "127.0.0.1"

    async def create(self, launch: PoolLaunch) -> None:
        d = self._dir(launch.pool_id)
        if self._pid(launch.pool_id) is not None:
            # Not ours to reuse or destroy: it may run bots the store does not know.
            raise PoolExists(f"pool {launch.pool_id} already runs in {d}; it is left alone")

        def write() -> None:
            for sub in ("logs", "programs", "bots", "archive"):
                (d / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            make_backup_dir(launch)
            # Whole or absent (temporary file, then rename): a controller killed here must
            # not leave an empty config that marks the pool as made but can never start.
            conf, tmp = d / "supervisord.conf", d / ".supervisord.conf.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(supervisord_conf(d, launch))
            os.replace(tmp, conf)
            (d / "pool.json").write_text(json.dumps({"id": launch.pool_id}))

        await asyncio.to_thread(write)
        await self._start(launch.pool_id)
        log.info("pool_created", pool=launch.pool_id, dir=str(d))

    async def _start(self, pool_id: str) -> None:
        d = self._dir(pool_id)
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        # Make `python -m agent` work from a source checkout that is not installed.
        source_root = str(_SOURCE_ROOT)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))

        def spawn() -> subprocess.CompletedProcess[bytes]:
            # supervisord daemonizes: the launched process forks and exits at once.
            return subprocess.run(
                [sys.executable, "-m", "supervisor.supervisord", "-c", str(d / "supervisord.conf")],
                cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True, timeout=30, check=False,
            )  # fmt: skip

        done = await asyncio.to_thread(spawn)
        code = done.returncode
        if code != 0:  # it did not get as far as daemonizing (a bad config, say)
            error = done.stderr.decode(errors="replace").strip()[-300:]
            raise RuntimeFailure(f"supervisord of {pool_id} failed to start: {error}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._pid(pool_id) is not None and (d / "supervisor.sock").exists():
                return
            await asyncio.sleep(0.05)
        raise RuntimeFailure(f"supervisord of {pool_id} did not start (exit code {code})")

    def _kill_leftovers(self, pool_id: str) -> None:
        """SIGKILL the orphans of a dead supervisord: reparented to init, working in the pool.

        (Bots forked by an orphaned preloader die with it: they carry PR_SET_PDEATHSIG.)
        """
        pool_dir = self._dir(pool_id).resolve()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            orphan = stat[stat.rfind(b")") + 2 :].split()[1] == b"1"
            if orphan and (cwd == pool_dir or pool_dir in cwd.parents):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry), signal.SIGKILL)
                    log.error("pool_leftover_killed", pool=pool_id, pid=int(entry))

    async def inspect(self, pool_id: str) -> RuntimeState:
        if self._pid(pool_id) is not None:
            return RuntimeState.RUNNING
        if (self._dir(pool_id) / "supervisord.conf").exists():
            return RuntimeState.EXITED
        return RuntimeState.MISSING

    async def restart(self, pool_id: str) -> None:
        if self._pid(pool_id) is not None:
            await self._stop(pool_id)
        # A supervisord that died left its agent and bots running: they must go before a new
        # supervisord starts the bots again (at most one copy of a bot).
        await asyncio.to_thread(self._kill_leftovers, pool_id)
        await self._start(pool_id)
        log.info("pool_restarted", pool=pool_id)

    async def restart_agent(self, pool_id: str) -> None:
        socket = self._dir(pool_id) / "supervisor.sock"

        def restart() -> None:
            transport = SupervisorTransport(serverurl=f"unix://{socket}")
            rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
            try:
                with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING: start it
                    rpc.supervisor.stopProcess("agent")
                rpc.supervisor.startProcess("agent", False)
            finally:
                transport.close()

        try:
            await asyncio.to_thread(restart)
        except (OSError, xmlrpc.client.Error) as exc:
            raise RuntimeFailure(f"cannot restart the agent of {pool_id}: {exc}") from exc
        log.info("pool_agent_restarted", pool=pool_id)

    async def discard(self, pool_id: str) -> None:
        await self._stop(pool_id)
        await asyncio.to_thread(self._kill_leftovers, pool_id)

    async def _stop(self, pool_id: str) -> None:
        pid = self._pid(pool_id)
        if pid is None:
            return
        children = _children(pid)
        os.kill(pid, signal.SIGTERM)
        # supervisord stops every program (each up to its stopwaitsecs) before it exits.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self._pid(pool_id) is not None:
            await asyncio.sleep(0.1)
        if self._pid(pool_id) is None:
            return
        for p in [pid, *children]:
            try:
                os.kill(p, signal.SIGKILL)
                log.error("pool_process_killed", pool=pool_id, pid=p)
            except ProcessLookupError:
                pass

    async def remove(self, pool_id: str, *, bots: int = 0, abandoned: bool = False) -> None:
        await self._stop(pool_id)
        d = self._dir(pool_id)

        await asyncio.to_thread(retire_pool_dir, d, self.archive_dir)
        log.info("pool_removed", pool=pool_id)

    async def stats(self, pool_id: str) -> PoolUsage | None:
        pid = self._pid(pool_id)
        if pid is None:
            return None

        def rss() -> int:
            total = 0
            for p in [pid, *_children(pid)]:
                try:
                    with open(f"/proc/{p}/statm", "rb") as f:
                        total += int(f.read().split()[1]) * _PAGE
                except (OSError, IndexError, ValueError):
                    continue
            return total

        return PoolUsage(
            memory_bytes=await asyncio.to_thread(rss), memory_limit=0, cpu_percent=None
        )

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        """No event source for host processes: the monitor's periodic inspection finds them."""

    async def close(self) -> None:
        """Nothing to release: pools are independent daemons."""

    async def list(self) -> list[str]:
        if not self.pools_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.pools_dir.glob("*/pool.json"))
