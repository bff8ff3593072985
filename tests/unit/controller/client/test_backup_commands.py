"""`ftpool backup ls|restore` against a small real (standard library) server on loopback
that answers as the controller's backup routes do."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from common.cli import cli

TOKEN = "secret-token-" + "s" * 30
POINT = {"id": "tradesv3.sqlite@20261130T120000Z", "database": "tradesv3.sqlite",
         "time": "2026-11-30T12:00:00+00:00", "bytes": 94208, "trades": 3, "openTrades": 1,
         "poolId": "pool-1"}  # fmt: skip


class Controller(BaseHTTPRequestHandler):
    posted: list[tuple[str, object]] = []

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/api/bots/b1/backups":
            self.answer(200, {"success": True, "instanceId": "b1", "restorePoints": [POINT]})
        else:
            self.answer(403, {"success": False, "error": "bot b2 belongs to another user"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        Controller.posted.append((self.path, json.loads(self.rfile.read(length))))
        self.answer(
            200,
            {
                "success": True,
                "instanceId": "b1",
                "restorePoint": POINT,
                "keptAs": "tradesv3.sqlite.before-restore-20261130T130000Z",
            },
        )


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Controller)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Controller.posted = []
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("FTPOOL_URL", "FTPOOL_TOKEN", "FTPOOL_TOKEN_FILE", "FTPOOL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return CliRunner()


def test_ls_lists_restore_points_and_json_is_the_answer(runner: CliRunner, url: str) -> None:
    result = runner.invoke(cli, ["backup", "ls", "b1", "--url", url, "--token", TOKEN])
    assert result.exit_code == 0, result.output
    assert "RESTORE POINT" in result.output and POINT["id"] in result.output
    data = json.loads(runner.invoke(cli, ["backup", "ls", "b1", "--json", "--url", url,
                                          "--token", TOKEN]).output)  # fmt: skip
    assert data["restorePoints"] == [POINT]


def test_another_users_bot_is_refused_with_exit_4(runner: CliRunner, url: str) -> None:
    result = runner.invoke(cli, ["backup", "ls", "b2", "--url", url, "--token", TOKEN])
    assert result.exit_code == 4 and "another user" in result.stderr


def test_restore_sends_the_point_or_the_time(runner: CliRunner, url: str) -> None:
    common = ["--url", url, "--token", TOKEN, "--yes"]
    result = runner.invoke(cli, ["backup", "restore", "b1", "--point", POINT["id"], *common])
    assert result.exit_code == 0, result.output
    assert "restored from" in result.output and "kept as" in result.output
    runner.invoke(cli, ["backup", "restore", "b1", "--time", "2026-11-30T12:30:00Z", *common])
    assert Controller.posted == [
        ("/api/bots/b1/restore", {"restorePoint": POINT["id"]}),
        ("/api/bots/b1/restore", {"time": "2026-11-30T12:30:00Z"}),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["b1"], "give --point or --time"),
        (["b1", "--point", "p", "--time", "t"], "give --point or --time"),
        (["b1", "--point", "p"], "needs --yes"),  # stdin is no terminal here: never asks
    ],
)
def test_restore_usage_errors_send_nothing(
    runner: CliRunner, url: str, argv: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["backup", "restore", *argv, "--url", url, "--token", TOKEN])
    assert result.exit_code == 2 and message in result.output
    assert Controller.posted == []
