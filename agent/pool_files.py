"""The files a pool's desired state makes: each bot's directory and files and program, the
preloader's and the market-data proxy's programs; nothing else stays in programs/.

Writing is idempotent (a file with the same content is not touched, so supervisord sees no
change) and runs off the event loop (the reconciler calls `write` in a thread).
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from pathlib import Path

import structlog

from agent.files import make_bot_dir, write_bot_files
from agent.marketdata.routing import config_files, proxy_url, route_file
from agent.marketdata.table import load_tables
from agent.programs import (
    MARKET_DATA,
    PRELOADER,
    MarketDataProgram,
    ProgramOptions,
    PythonCommand,
    program_name,
    python_command,
    render_market_data,
    render_preloader,
    render_program,
)
from common.protocol import BotSpec, check_relpath
from common.states import RunState

log = structlog.get_logger("agent.reconcile")


def resolve_command(argv: list[str]) -> list[str]:
    """Find a bare program name on PATH or beside this interpreter (a venv's bin/)."""
    if "/" in argv[0]:
        return argv
    search = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    found = shutil.which(argv[0], path=search)
    return [found or argv[0], *argv[1:]]


def write_if_changed(path: Path, content: bytes, mode: int) -> bool:
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


def owner_of(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    try:
        record = pwd.getpwnam(user)
    except KeyError:
        raise RuntimeError(f"user {user} does not exist in this pool image") from None
    return record.pw_uid, record.pw_gid


class PoolFiles:
    def __init__(self, pool_dir: Path, options: ProgramOptions) -> None:
        self.pool_dir = pool_dir
        self.bots_dir = pool_dir / "bots"
        self.programs_dir = pool_dir / "programs"
        self.options = options
        # The exchanges the market-data proxy knows (packaged data: a broken table stops
        # the agent here, loudly, rather than routing bots to a proxy that cannot start).
        self.tables = load_tables() if options.market_data else {}
        # The bots whose config, as written last, names the proxy (a bot reads it when it
        # starts: agent/reconcile.py keeps which running bots started so).
        self.routed: set[str] = set()

    def write(
        self, specs: list[BotSpec], preload: bool, route: bool = False, proxy: bool = True
    ) -> None:
        """Write the pool's files; with `route`, bots' configs name the market-data proxy
        (the agent found it holding its port), without it their exchange directly. Without
        `proxy` (turned off for this pool) the pool runs none."""
        keep = set()
        preloader: PythonCommand | None = None
        if self.options.run_dir is not None:
            self.options.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Held bots have no program: reloading the config stops and removes it.
        bots = [spec for spec in specs if spec.run != RunState.HELD]
        # One market-data proxy per pool, while there are bots to use it.
        market_data = self._market_data() if bots and proxy else None
        if market_data is not None:
            conf = render_market_data(market_data, self.pool_dir, self.options)
            keep.add(self._write_program(MARKET_DATA, conf))
        for spec in bots:
            path = self.programs_dir / f"{program_name(spec.id)}.conf"
            keep.add(path.name)
            try:
                forkable = self._write_bot(spec, path, preload, market_data if route else None)
            except (OSError, RuntimeError, ValueError) as exc:
                # One bot's broken directory (or a missing slot user) must not hold up the
                # rest of the pool; its program stays as it was.
                log.error("bot_files_failed", bot=spec.id, error=str(exc))
                continue
            preloader = preloader or forkable
        if preloader is not None:
            # One preloader per pool, for the bots' interpreter; only while there are bots.
            conf = render_preloader(preloader, self.pool_dir, self.options)
            keep.add(self._write_program(PRELOADER, conf))
        for path in self.programs_dir.glob("*.conf"):
            if path.name not in keep:
                path.unlink()

    def _write_program(self, name: str, conf: str) -> str:
        path = self.programs_dir / f"{name}.conf"
        write_if_changed(path, conf.encode(), 0o600)
        return path.name

    def _market_data(self) -> MarketDataProgram | None:
        """The market-data proxy, once its private directory is ready; None: no proxy (it
        is off, or its user is missing: then bots go to their exchange directly)."""
        md = self.options.market_data
        if md is None:
            return None
        try:
            owner = owner_of(md.user)
            directory = MarketDataProgram.socket_dir(self.pool_dir)
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
            if owner is not None:
                os.chown(directory, *owner)
        except (OSError, RuntimeError) as exc:
            log.error("market_data_proxy_not_run", error=str(exc))
            return None
        return md

    def _write_bot(
        self, spec: BotSpec, program_file: Path, preload: bool, md: MarketDataProgram | None
    ) -> PythonCommand | None:
        bot_dir = self.bots_dir / spec.id
        user = self.options.user_for(spec.port)
        owner = owner_of(user)
        make_bot_dir(bot_dir, owner)
        files = {check_relpath(p): c for p, c in spec.files.items()}
        routed = False
        if md is not None:
            # The bot's exchange requests go through the pool's proxy: in the file the bot
            # reads, not in the config the controller keeps and shows.
            for name in set(config_files(spec.command)) & files.keys():
                files[name] = route_file(files[name], md.port, self.tables)
                routed = routed or proxy_url(md.port).encode() in files[name]
        write_bot_files(bot_dir, files, owner)
        if routed:
            self.routed.add(spec.id)
        else:
            self.routed.discard(spec.id)
        argv = resolve_command(spec.command)
        forkable = python_command(argv) if preload else None
        conf = render_program(spec.id, argv, bot_dir, self.options, user, forkable)
        if write_if_changed(program_file, conf.encode(), 0o600) and preload and not forkable:
            log.warning("bot_not_preloaded", bot=spec.id, reason="its command is not Python")
        return forkable
