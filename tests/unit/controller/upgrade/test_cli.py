"""`ftpool upgrade`: its flags, what it sends, and its answers from a real controller app
(on a runtime without images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.cli import main as ftpool
from controller.upgrade.cli import body, execute, main, parse_args, run
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


class Replaying:
    """A controller that answers a move run's POST, then each GET with the next state."""

    def __init__(self, states: list[list[dict[str, Any]]]) -> None:
        self.states = states

    def run(self, pools: list[dict[str, Any]], finished: bool) -> dict[str, Any]:
        return {"id": "upgrade-1", "to_ref": "img:b", "outcome": "upgraded" if finished
                else "in_progress", "reason": "", "started_at": 0.0,
                "finished_at": 9.0 if finished else None, "pools": pools}  # fmt: skip

    async def call(self, method: str, _path: str, **_: Any) -> dict[str, Any]:
        if method == "POST":
            return {"run": self.run(self.states[0], False)}
        pools = self.states.pop(0)
        return {"runs": [self.run(pools, not self.states)]}


def pool(step: str, moved: int, **more: Any) -> dict[str, Any]:
    return {"pool": "pool-1", "step": step, "bots": 2, "canary": False, "to_pool": "pool-2",
            "downtime_s": None, "reason": "", "method": "move",
            "bot_downtime_s": {f"b{n}": 1.0 for n in range(1, moved + 1)}, **more}  # fmt: skip


async def test_execute_follows_a_moves_creating_and_every_bot_moved(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("controller.upgrade.cli.POLL_SECONDS", 0)
    states = [[pool("pending", 0)], [pool("creating", 0)], [pool("moving", 0)],
              [pool("moving", 1)], [pool("moving", 1)], [pool("moving", 2)],
              [pool("upgraded", 2, downtime_s=1.0)]]  # fmt: skip
    client = Replaying(states)
    assert await execute(client, parse_args(["--execute"])) == 0  # type: ignore[arg-type]
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    progress = [line[:3] + line[3:4] for line in lines if line[0].startswith("[")]
    assert progress == [
        ["[0/1]", "pool-1", "pending", "2"],
        ["[0/1]", "pool-1", "creating", "2"],  # a fresh pool being made is not done
        ["[0/1]", "pool-1", "moving", "0/2"],
        ["[0/1]", "pool-1", "moving", "1/2"],  # each bot moved is a line, once
        ["[0/1]", "pool-1", "moving", "2/2"],
        ["[1/1]", "pool-1", "upgraded", "2"],
    ]
