"""`ftpool upgrade`: its flags, what it sends, and its answers from a real controller app
(on a runtime without images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.cli import main as ftpool
from controller.upgrade.cli import body, main, parse_args, run
from tests.support import ADMIN_TOKEN
from tests.unit.controller.apps import Api


def test_exactly_one_action_and_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["--dry-run", "--execute"], ["--status", "--execute"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
    args = parse_args(["--execute", "--image", "img:b", "--pool", "p1", "--pool", "p2",
                       "--user", "u", "--bot", "b", "--canary", "1", "--soak", "30",
                       "--concurrency", "2", "--pause", "5", "--timeout", "60",
                       "--method", "move"])  # fmt: skip
    assert body(args, False) == {
        "dryRun": False, "image": "img:b", "pools": ["p1", "p2"], "users": ["u"], "bots": ["b"],
        "canary": 1, "soak": 30.0, "concurrency": 2, "pause": 5.0, "timeout": 60.0,
        "method": "move",
    }  # fmt: skip
    assert "image" not in body(parse_args(["--dry-run"]), True)  # POOL_IMAGE: the server's


def test_ftpool_upgrade_is_the_same_tool(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ftpool(["upgrade", "--help"])
    assert exc.value.code == 0
    assert "--canary" in capsys.readouterr().out


def test_no_controller_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOT_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("ADMIN_TOKEN", "a" * 40)
    assert main(["--status", "--url", "http://127.0.0.1:9"]) == 3
    assert "lost the controller" in capsys.readouterr().err


async def test_status_and_a_refused_dry_run_from_a_controller(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    base = str(api.client.make_url("")).rstrip("/")
    assert await run(parse_args(["--status"]), base, ADMIN_TOKEN) == 0
    out = capsys.readouterr().out
    assert "POOL_IMAGE: none" in out and "no upgrade runs" in out
    with pytest.raises(RuntimeError, match="409: the fake runtime runs no images"):
        await run(parse_args(["--dry-run"]), base, ADMIN_TOKEN)
