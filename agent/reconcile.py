"""Applying the controller's desired state to supervisord, idempotently.

Applying the same Desired twice changes nothing; a running bot whose spec did
not change is never restarted; a restart happens only when the controller bumps
the bot's restart nonce. Applied nonces are kept on disk so an agent restart
does not repeat a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from agent.files import make_bot_dir, write_bot_files
from agent.programs import (
    PRELOADER,
    ProgramOptions,
    PythonCommand,
    bot_id_of,
    program_name,
    python_command,
    render_preloader,
    render_program,
)
from agent.supervisor import ProcessInfo, SupervisorClient
from common.protocol import BotSpec, Desired, check_relpath
from common.states import ACTIVE, SETTLED, ProcessState, RunState

log = structlog.get_logger("agent.reconcile")
_STOP_TIMEOUT = 120.0


def resolve_command(argv: list[str]) -> list[str]:
    """Find a bare program name on PATH or beside this interpreter (a venv's bin/)."""
    if "/" in argv[0]:
        return argv
    search = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    found = shutil.which(argv[0], path=search)
    return [found or argv[0], *argv[1:]]


def _write_if_changed(path: Path, content: bytes, mode: int) -> bool:
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.replace(tmp, path)
    return True


def _owner(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    try:
        record = pwd.getpwnam(user)
    except KeyError:
        raise RuntimeError(f"slot user {user} does not exist in this pool image") from None
    return record.pw_uid, record.pw_gid


class Reconciler:
    def __init__(
        self,
        supervisor: SupervisorClient,
        pool_dir: Path,
        options: ProgramOptions,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.supervisor = supervisor
        self.bots_dir = pool_dir / "bots"
        self.programs_dir = pool_dir / "programs"
        self.archive_dir = pool_dir / "archive"
        self.state_file = pool_dir / "agent-state.json"
        self.options = options
        self.applied_gen = 0
        self._on_change = on_change
        # Applied restart nonces of the bots and of the preloader (None: none seen yet).
        self._nonces, self._preloader_nonce = self._load_nonces()
        self._latest: Desired | None = None
        self._wakeup = asyncio.Event()

    def _load_nonces(self) -> tuple[dict[str, int], int | None]:
        try:
            raw = json.loads(self.state_file.read_text())
            nonces = {str(k): int(v) for k, v in raw.get("nonces", {}).items()}
            preloader = raw.get("preloader")
            return nonces, None if preloader is None else int(preloader)
        except FileNotFoundError:
            return {}, None
        except (ValueError, AttributeError, TypeError):
            log.warning("agent_state_unreadable", path=str(self.state_file))
            return {}, None

    def _save_nonces(self) -> None:
        state = {"nonces": self._nonces, "preloader": self._preloader_nonce}
        _write_if_changed(self.state_file, json.dumps(state).encode(), 0o600)

    def submit(self, desired: Desired) -> None:
        """Queue a desired state; only the newest one is applied if several arrive at once."""
        self._latest = desired
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            desired, self._latest = self._latest, None
            if desired is None:
                continue
            try:
                await self.apply(desired)
            except Exception:
                # Keep the desired state: the next submit or retry converges from here.
                log.exception("reconcile_failed", gen=desired.gen)
                if self._latest is None:
                    self._latest = desired
                await asyncio.sleep(2)
                self._wakeup.set()

    async def apply(self, desired: Desired) -> None:
        for d in (self.programs_dir, self.archive_dir, self.options.log_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Bot users must pass through bots/ to reach their own directory, and no further.
        self.bots_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        os.chmod(self.bots_dir, 0o711)
        wanted = {spec.id: spec for spec in desired.bots}
        # Without a run directory there is no place for a preloader's socket: plain exec.
        preload = desired.launch == "preload" and self.options.run_dir is not None
        await asyncio.to_thread(self._write_files, desired.bots, preload)
        added, changed, removed = await self.supervisor.reload_config()
        # A removed preloader goes last: its bots die with it, and they should stop in
        # order (as changed programs) rather than crash and be restarted meanwhile.
        for name in removed:
            if name != PRELOADER:
                await self._unload(name)
        for name in changed:
            await self._unload(name)
            await self.supervisor.add_group(name)
        if PRELOADER in removed:
            await self._unload(PRELOADER)
        for name in added:
            await self.supervisor.add_group(name)
        if added or changed or removed:
            log.info("programs_updated", added=added, changed=changed, removed=removed)

        if self._preloader_nonce is None:
            self._preloader_nonce = desired.preloader_nonce  # first seen: not a restart
        if desired.preloader_nonce > self._preloader_nonce and preload:
            await self._restart_preloader()
            await self._wait_for_preloader()
        elif PRELOADER in added or PRELOADER in changed:
            await self._wait_for_preloader()
        self._preloader_nonce = desired.preloader_nonce
        processes = await self.supervisor.all_processes()
        await self._archive_removed(wanted, set(desired.purge), processes)
        for spec in desired.bots:
            if spec.run != RunState.HELD:
                await self._converge(spec, processes.get(program_name(spec.id)))
        self._nonces = {k: v for k, v in self._nonces.items() if k in wanted}
        await asyncio.to_thread(self._save_nonces)
        self.applied_gen = desired.gen
        log.info("desired_applied", gen=desired.gen, bots=len(desired.bots), launch=desired.launch)
        self._on_change()

    async def _restart_preloader(self) -> None:
        """Stop every bot, then the preloader; start it fresh. Converging starts the bots.

        Bots die with their preloader anyway; stopping them first lets each shut down
        cleanly (freqtrade closes its database) instead of being killed.
        """
        processes = await self.supervisor.all_processes()
        if PRELOADER not in processes:
            return
        bots = [n for n, i in processes.items() if bot_id_of(n) and i.state in ACTIVE]
        log.info("preloader_restart", bots=len(bots))
        await asyncio.gather(*(self._stop_and_wait(name) for name in bots))
        await self._stop_and_wait(PRELOADER)
        await self.supervisor.start(PRELOADER)

    def _write_files(self, specs: list[BotSpec], preload: bool) -> None:
        keep = set()
        preloader: PythonCommand | None = None
        if self.options.run_dir is not None:
            self.options.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for spec in specs:
            if spec.run == RunState.HELD:
                continue  # no program: reloading the config stops and removes it
            path = self.programs_dir / f"{program_name(spec.id)}.conf"
            keep.add(path.name)
            try:
                forkable = self._write_bot(spec, path, preload)
            except (OSError, RuntimeError, ValueError) as exc:
                # One bot's broken directory (or a missing slot user) must not hold up the
                # rest of the pool; its program stays as it was.
                log.error("bot_files_failed", bot=spec.id, error=str(exc))
                continue
            preloader = preloader or forkable
        if preloader is not None:
            # One preloader per pool, for the bots' interpreter; only while there are bots.
            conf = render_preloader(preloader, self.bots_dir.parent, self.options)
            path = self.programs_dir / f"{PRELOADER}.conf"
            _write_if_changed(path, conf.encode(), 0o600)
            keep.add(path.name)
        for path in self.programs_dir.glob("*.conf"):
            if path.name not in keep:
                path.unlink()

    def _write_bot(self, spec: BotSpec, program_file: Path, preload: bool) -> PythonCommand | None:
        bot_dir = self.bots_dir / spec.id
        user = self.options.user_for(spec.port)
        owner = _owner(user)
        make_bot_dir(bot_dir, owner)
        write_bot_files(bot_dir, {check_relpath(p): c for p, c in spec.files.items()}, owner)
        argv = resolve_command(spec.command)
        forkable = python_command(argv) if preload else None
        conf = render_program(spec.id, argv, bot_dir, self.options, user, forkable)
        if _write_if_changed(program_file, conf.encode(), 0o600) and preload and not forkable:
            log.warning("bot_not_preloaded", bot=spec.id, reason="its command is not Python")
        return forkable

    async def _converge(self, spec: BotSpec, info: ProcessInfo | None) -> None:
        name = program_name(spec.id)
        state = info.state if info else ProcessState.ABSENT
        applied = self._nonces.setdefault(spec.id, spec.nonce)
        if spec.run == RunState.STOPPED:
            self._nonces[spec.id] = spec.nonce
            if state in ACTIVE:
                log.info("bot_stop", bot=spec.id)
                await self.supervisor.stop(name)
        elif spec.nonce > applied:
            log.info("bot_restart", bot=spec.id, nonce=spec.nonce)
            await self._stop_and_wait(name)
            await self.supervisor.start(name)
            self._nonces[spec.id] = spec.nonce
        elif state == ProcessState.STOPPED:
            # Never started, or stopped on purpose. A bot that died (EXITED, FATAL) is left
            # alone: restarting it is the controller's policy, asked through the nonce.
            log.info("bot_start", bot=spec.id)
            await self.supervisor.start(name)

    async def _wait_for_preloader(self) -> None:
        """Until a new preloader has imported FreqTrade and listens (bounded): bots started
        before that would give up waiting for it and run unshared."""
        path = self.options.preloader_socket
        deadline = time.monotonic() + self.options.preloader_wait
        while path is not None and time.monotonic() < deadline:
            try:
                _reader, writer = await asyncio.open_unix_connection(str(path))
            except OSError:
                await asyncio.sleep(0.2)
                continue
            writer.close()
            return
        log.warning("preloader_not_ready", timeout=self.options.preloader_wait)

    async def _unload(self, name: str) -> None:
        await self._stop_and_wait(name)
        await self.supervisor.remove_group(name)

    async def _stop_and_wait(self, name: str) -> None:
        await self.supervisor.stop(name)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline:
            info = (await self.supervisor.all_processes()).get(name)
            if info is None or info.state in SETTLED:
                return
            await asyncio.sleep(0.2)
        log.error("bot_stop_timeout", program=name)

    async def _archive_removed(
        self, wanted: dict[str, BotSpec], purge: set[str], processes: dict[str, ProcessInfo]
    ) -> None:
        """Bot directories of bots no longer wanted are archived, or deleted when purged."""
        if not self.bots_dir.exists():
            return
        running = {bot_id_of(n) for n, i in processes.items() if i.state in ACTIVE}
        for bot_dir in list(self.bots_dir.iterdir()):
            bot_id = bot_dir.name
            if bot_id in wanted or bot_id in running:
                continue
            # Its logs go along: a later bot with the same id must not see them.
            logs = list(self.options.log_dir.glob(f"{program_name(bot_id)}.log*"))
            if bot_id in purge:
                await asyncio.to_thread(shutil.rmtree, bot_dir, True)
                for log_file in logs:
                    log_file.unlink(missing_ok=True)
                log.info("bot_purged", bot=bot_id)
            else:
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                archived = self.archive_dir / f"{bot_id}-{stamp}"
                await asyncio.to_thread(os.rename, bot_dir, archived)
                for log_file in logs:
                    os.rename(log_file, archived / log_file.name)
                log.info("bot_archived", bot=bot_id)
