"""Importing a discovered legacy container's bot: what its directory and its container
say of it, checked before anything changes, and its files copied safely (as root, never
following a link the bot could have planted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from common.ids import check_strategy_name
from controller.botconfig import PROTECTED_KEYS, new_secrets, validate_overrides
from controller.moves.transfer import StepFailed
from controller.runtimes.legacy import LegacyBot
from controller.store.allocation import NewBot

# FreqTrade's own database file names (db_url's defaults), relative to the bot's directory.
TRADE_DBS = ("tradesv3.sqlite", "tradesv3.dryrun.sqlite")
DEFAULT_DB_URLS = {f"sqlite:///{name}" for name in TRADE_DBS}
# FreqTrade options that put a bot's data or code outside its config.json and directory.
OUTSIDE_FLAGS = frozenset({
    "--db-url", "--userdir", "--user-data-dir", "--datadir", "--data-dir", "--strategy-path",
    "--strategy", "-s", "--recursive-strategy-search",
})  # fmt: skip


def read_legacy_bot(found: LegacyBot) -> NewBot:
    """The bot as its legacy directory describes it: its config (without the keys ftpool
    manages), its strategy and its source. Anything ftpool cannot keep as it is stops the
    import here, before anything changed."""
    config = json.loads(_read_inside(found.directory, "config.json"))
    if not isinstance(config, dict):
        raise StepFailed("config.json is not a JSON object")
    db_url = config.get("db_url")
    if db_url is not None and db_url not in DEFAULT_DB_URLS:
        # Not echoed: a database URL may hold a password.
        raise StepFailed("its db_url is not FreqTrade's default; move that database by hand")
    strategy = check_strategy_name(config.get("strategy"))
    source = _read_inside(found.directory, f"user_data/strategies/{strategy}.py")
    overrides = validate_overrides({k: v for k, v in config.items() if k not in PROTECTED_KEYS})
    # ftpool's defaults start new bots trading; a legacy bot keeps FreqTrade's own default.
    overrides.setdefault("initial_state", "stopped")
    return NewBot(found.id, found.user_id, strategy, source, overrides, new_secrets())


def _read_inside(directory: Path, rel: str) -> bytes:
    """Read a file of the legacy directory; a link out of it is refused, not followed."""
    path = directory / rel
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(directory)):
        raise StepFailed(f"{rel} points outside the bot's directory")
    if not real.is_file():
        raise StepFailed(f"{rel} is not a regular file")
    try:
        return real.read_bytes()
    except OSError as exc:
        raise StepFailed(f"{rel} cannot be read: {exc.strerror}") from None


def check_legacy_spec(spec: dict[str, Any], found: LegacyBot) -> None:
    """Refuse a legacy container that does not run from the directory found for it, or
    whose settings live outside its config.json: ftpool would start the bot without them
    (another database, no exchange keys)."""
    # Its bind mount's source as the Docker host sees it, which may differ from the
    # controller's view of BOT_BASE_DIR above <user>/<id>.
    suffix = f"/{found.user_id}/{found.id}"
    sources = [m.get("Source", "").rstrip("/") for m in spec.get("Mounts") or []]
    if not any(source.endswith(suffix) for source in sources):
        raise StepFailed(f"the container does not mount its directory (…{suffix}); "
                         "migrate it by hand")  # fmt: skip
    config = spec.get("Config") or {}
    args = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in OUTSIDE_FLAGS:
            raise StepFailed(f"the container sets {flag} on its command line; migrate it by hand")
    if sum(a.split("=", 1)[0] in ("-c", "--config") for a in args) > 1:
        raise StepFailed("the container reads several config files; migrate it by hand")
    names = sorted(e.split("=", 1)[0] for e in config.get("Env") or [])
    outside = [n for n in names if n.startswith("FREQTRADE__")]
    if outside:
        raise StepFailed(f"the container sets {', '.join(outside)}; migrate it by hand")


def _private(root: Path) -> None:
    """Only the owner may read a bot's files in a shared pool: group and other bits (and
    set-id bits) go. Links are left as they are, never followed."""
    for path in [root, *root.rglob("*")]:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _copy_trade_dbs(source: Path, target: Path) -> None:
    """Copy the trade databases (and their WAL files) from source to target, as root but
    through descriptors that follow no link: the bot could have planted links in either
    directory. The copies belong to the owner of the target directory."""
    src_fd = os.open(source, _NOFOLLOW_DIR)
    dst_fd = os.open(target, _NOFOLLOW_DIR)
    try:
        owner = os.fstat(dst_fd)
        for name in TRADE_DBS:
            try:
                main = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(main.st_mode):
                continue
            for suffix in ("", "-wal", "-shm"):
                # The target's own WAL files belong to its old database: they must go.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{name}{suffix}", dir_fd=dst_fd)
                _copy_at(src_fd, dst_fd, f"{name}{suffix}", owner.st_uid, owner.st_gid)
    finally:
        os.close(src_fd)
        os.close(dst_fd)


def _copy_at(src_fd: int, dst_fd: int, name: str, uid: int, gid: int) -> None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src_fd)
    except OSError:
        return  # absent, or a link: nothing of ours to copy
    tmp = f".{name}.ftpool-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dst_fd)
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                      dir_fd=dst_fd)  # fmt: skip
        with os.fdopen(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
            if os.geteuid() == 0:
                os.fchown(dst.fileno(), uid, gid)
    os.rename(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)


def stage_copy(staging: Path, directory: Path, bot_id: str) -> None:
    """Copy the legacy directory to staging (root's), whole or not at all."""
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial, stage = staging / f"{bot_id}.partial", staging / bot_id
    for stale in (partial, stage):
        shutil.rmtree(stale, ignore_errors=True)
    shutil.copytree(directory, partial, symlinks=True)
    _private(partial)
    os.rename(partial, stage)
