"""Importing a legacy bot: reading its directory and its container, and copying its files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from controller.migration.legacy_import import (
    _copy_trade_dbs,
    _private,
    check_legacy_spec,
    read_legacy_bot,
)
from controller.moves.transfer import StepFailed
from controller.runtimes.legacy import LegacyBot, find_directory


def legacy_dir(base: Path, user: str = "alice", bot: str = "leg-1", **config: object) -> Path:
    directory = base / user / bot
    (directory / "user_data" / "strategies").mkdir(parents=True)
    full = {"strategy": "Sample", "max_open_trades": 5, "api_server": {"password": "pw"},
            "exchange": {"name": "binance", "secret": "s3cret"}, **config}  # fmt: skip
    (directory / "config.json").write_text(json.dumps(full))
    (directory / "user_data" / "strategies" / "Sample.py").write_text("class Sample: ...\n")
    return directory


def found(directory: Path) -> LegacyBot:
    return LegacyBot(directory.name, directory.parent.name, f"freqtrade-{directory.name}",
                     "running", directory, None)  # fmt: skip


def test_a_legacy_bot_keeps_its_settings_but_not_the_keys_ftpool_manages(tmp_path: Path):
    new = read_legacy_bot(found(legacy_dir(tmp_path, db_url="sqlite:///tradesv3.sqlite")))
    assert (new.id, new.user_id, new.strategy) == ("leg-1", "alice", "Sample")
    assert new.strategy_source == b"class Sample: ...\n"
    # Its exchange and trading settings come along; its API block and paths do not.
    assert new.config == {
        "max_open_trades": 5, "exchange": {"name": "binance", "secret": "s3cret"},
        "initial_state": "stopped",  # FreqTrade's default, not ftpool's
    }  # fmt: skip
    assert new.secrets.password != "pw"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"db_url": "postgresql://db/trades"}, "db_url"),
        ({"strategy": "../evil"}, "strategy"),
        ({"strategy": "Missing"}, "not a regular file"),
    ],
)
def test_what_cannot_be_kept_as_it_is_stops_the_import(tmp_path, change, message):
    with pytest.raises((StepFailed, ValueError), match=message):
        read_legacy_bot(found(legacy_dir(tmp_path, **change)))


def test_a_strategy_linked_out_of_the_directory_is_refused(tmp_path: Path):
    directory = legacy_dir(tmp_path)
    secret = tmp_path / "secret.py"
    secret.write_text("root's file")
    target = directory / "user_data" / "strategies" / "Sample.py"
    target.unlink()
    os.symlink(secret, target)
    with pytest.raises(StepFailed, match="outside"):
        read_legacy_bot(found(directory))


def test_a_legacy_directory_is_found_only_when_it_is_unique(tmp_path: Path):
    legacy_dir(tmp_path, "alice", "leg-1")
    legacy_dir(tmp_path, "bob", "leg-2")
    legacy_dir(tmp_path, "carol", "leg-2")
    assert find_directory(tmp_path, "leg-1") == tmp_path / "alice" / "leg-1"
    assert find_directory(tmp_path, "leg-2") is None  # whose is it? left alone
    assert find_directory(tmp_path, "leg-3") is None


@pytest.mark.parametrize(
    "config",
    [
        {"Cmd": ["trade", "--db-url", "sqlite:////data/x.sqlite"]},
        {"Entrypoint": ["freqtrade"], "Cmd": ["trade", "--userdir=/data"]},
        {"Cmd": ["trade", "-c", "a.json", "--config", "b.json"]},
        {"Env": ["PATH=/bin", "FREQTRADE__EXCHANGE__SECRET=s3cret"]},
    ],
)
def test_a_container_with_settings_outside_its_config_is_refused(
    tmp_path: Path, config: dict
) -> None:
    mounts = [{"Source": "/srv/bots/alice/leg-1", "Destination": "/freqtrade/bot"}]
    with pytest.raises(StepFailed, match="by hand") as exc:
        check_legacy_spec({"Config": config, "Mounts": mounts}, found(tmp_path / "alice/leg-1"))
    assert "s3cret" not in str(exc.value)  # names only, never values


def test_a_plain_legacy_container_passes_if_it_mounts_its_directory(tmp_path: Path) -> None:
    spec = {"Config": {"Cmd": ["trade", "--config", "config.json"], "Env": ["PATH=/usr/bin"]},
            "Mounts": [{"Source": "/srv/bots/alice/leg-1/"}]}  # fmt: skip
    check_legacy_spec(spec, found(tmp_path / "alice" / "leg-1"))
    spec["Mounts"] = [{"Source": "/srv/bots/bob/leg-1"}]
    with pytest.raises(StepFailed, match="does not mount its directory"):
        check_legacy_spec(spec, found(tmp_path / "alice" / "leg-1"))


def test_trade_databases_go_back_without_following_links(tmp_path: Path) -> None:
    pooled, legacy = tmp_path / "pooled", tmp_path / "legacy"
    pooled.mkdir()
    legacy.mkdir()
    (pooled / "tradesv3.sqlite").write_bytes(b"new db")
    (pooled / "tradesv3.sqlite-wal").write_bytes(b"new wal")
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    # The bot planted links in both directories; neither is followed.
    os.symlink(victim, pooled / "tradesv3.dryrun.sqlite")
    os.symlink(victim, legacy / "tradesv3.sqlite-wal")
    (legacy / "tradesv3.sqlite-shm").write_bytes(b"stale shm")
    _copy_trade_dbs(pooled, legacy)
    assert (legacy / "tradesv3.sqlite").read_bytes() == b"new db"
    assert (legacy / "tradesv3.sqlite-wal").read_bytes() == b"new wal"
    assert not (legacy / "tradesv3.sqlite-wal").is_symlink()
    assert not (legacy / "tradesv3.sqlite-shm").exists()  # the old database's, removed
    assert not (legacy / "tradesv3.dryrun.sqlite").exists()
    assert victim.read_bytes() == b"untouched"


def test_staged_files_are_private_to_the_bot(tmp_path: Path) -> None:
    directory = legacy_dir(tmp_path)
    os.chmod(directory / "config.json", 0o4755)
    os.symlink("/etc/hostname", directory / "link")
    _private(directory)
    assert stat.S_IMODE((directory / "config.json").stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert (directory / "link").is_symlink()


def test_ftpools_own_directories_are_never_a_users(tmp_path: Path) -> None:
    legacy_dir(tmp_path, "alice", "leg-9")
    legacy_dir(tmp_path, "migrating", "leg-9")  # a staged copy of it
    assert find_directory(tmp_path, "leg-9") == tmp_path / "alice" / "leg-9"
