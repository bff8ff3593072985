"""The migration log file: kept across reloads, never overwritten when unreadable."""

from __future__ import annotations

import json
from pathlib import Path

from controller.migration.log import MigrationLog, Run, Step


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


def test_a_log_from_another_version_keeps_what_it_knows(tmp_path: Path) -> None:
    path = tmp_path / ".migration-log.json"
    run = {"id": "r1", "bot": "b", "user": "u", "kind": "migrate", "source": "pool",
           "outcome": "migrated", "future": 1, "steps": [{"name": "stop", "started_at": 1.0,
                                                          "ok": True, "later": 2}]}  # fmt: skip
    path.write_text(json.dumps({"version": 2, "runs": [run]}))
    log = MigrationLog(path)
    log.load()
    assert log.latest("b").outcome == "migrated"
    assert log.latest("b").steps == [Step("stop", 1.0, ok=True)]
