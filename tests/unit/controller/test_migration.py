"""The migration's pure parts: reading a legacy bot, and the migration log file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from controller.legacy import LegacyBot, find_directory
from controller.migration import StepFailed, read_legacy_bot
from controller.migration_log import MigrationLog, Run, Step


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
    assert new.config == {"max_open_trades": 5, "exchange": {"name": "binance", "secret": "s3cret"}}
    assert new.secrets.password != "pw"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"db_url": "postgresql://db/trades"}, "db_url"),
        ({"strategy": "../evil"}, "strategy"),
        ({"strategy": "Missing"}, "cannot be read"),
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


def test_the_log_survives_a_reload_and_keeps_the_last_runs(tmp_path: Path):
    path = tmp_path / ".migration-log.json"
    log = MigrationLog(path)
    for n in range(25):
        run = log.begin(Run(f"r{n}", "leg-1", "alice", "migrate", "legacy-container"))
        run.steps.append(Step("stop", 1.0, 2.5, True))
    log.finish(run, "migrated")
    again = MigrationLog(path)
    again.load()
    assert [r.id for r in again.runs] == [f"r{n}" for n in range(5, 25)]
    assert again.latest("leg-1").outcome == "migrated"
    assert again.latest("leg-1").steps == [Step("stop", 1.0, 2.5, True)]
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_unreadable_log_is_set_aside_not_overwritten(tmp_path: Path):
    path = tmp_path / ".migration-log.json"
    path.write_text("{not json")
    log = MigrationLog(path)
    log.load()
    assert log.runs == []
    [aside] = tmp_path.glob(".migration-log.json.unreadable-*")
    assert aside.read_text() == "{not json"
