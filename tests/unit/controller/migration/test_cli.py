"""The migration tool's command line: its flags and where it finds the controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.cli import main as ftpool
from controller.migration.cli import connection, dry_run, main, parse_args


def test_exactly_one_action_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["--dry-run", "--execute"], ["--status", "--rollback=x"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
    args = parse_args(["--execute", "--bot", "a", "--bot", "b", "--user", "u", "-v"])
    assert (args.execute, args.bot, args.user, args.verbose) == (True, ["a", "b"], ["u"], True)
    assert parse_args(["--rollback=bot-1"]).rollback == "bot-1"


def test_ftpool_migrate_is_the_same_tool(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ftpool(["migrate", "--help"])
    assert exc.value.code == 0
    assert "--rollback" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ftpool(["controller", "--execute"])  # only migrate takes flags


def test_the_controller_and_its_token_come_from_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("FTPOOL_URL", raising=False)
    monkeypatch.setenv("BOT_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("CONTROLLER_PORT", "5123")
    (tmp_path / "admin-token").write_text("t" * 40 + "\n")
    assert connection(None) == ("http://127.0.0.1:5123", "t" * 40)
    monkeypatch.setenv("FTPOOL_URL", "http://10.0.0.9:5000/")
    assert connection(None)[0] == "http://10.0.0.9:5000"
    assert connection("http://127.0.0.2:1")[0] == "http://127.0.0.2:1"


def test_no_token_and_no_controller_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("BOT_BASE_DIR", str(tmp_path))
    assert main(["--status"]) == 2
    assert "no ADMIN_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("ADMIN_TOKEN", "a" * 40)
    # Port 9 on loopback (discard): nothing listens there.
    assert main(["--status", "--url", "http://127.0.0.1:9"]) == 3
    assert "lost the controller" in capsys.readouterr().err


async def test_the_printed_plan_has_the_steps_in_the_order_they_are_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bot = {"userId": "alice", "container": "freqtrade-leg-1", "state": "running",
           "toPool": "pool-2", "port": 9010, "newPool": True}  # fmt: skip
    bots = [{**bot, "instanceId": "leg-1", "source": "legacy-pool"},
            {**bot, "instanceId": "leg-2", "source": "resume"}]  # fmt: skip
    plan = {"bots": bots, "skipped": []}

    class Controller:
        async def call(self, method: str, path: str, **_: object) -> dict:
            assert (method, path) == ("GET", "/api/pool/migration/plan")
            return plan

    assert await dry_run(Controller(), parse_args(["--dry-run", "-v"]), []) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    # The bot stops before its files are copied: the backup never catches a database mid-write.
    assert "      steps: stop, backup, allocate, start, verify, cleanup\n" in out
    assert "      steps: verify, cleanup (resumes an interrupted run)\n" in out
