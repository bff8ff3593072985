"""The `ftpool` command line without a controller: its commands, usage errors and exit codes."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from common.cli import COMMANDS, cli

TOKEN = "secret-token-" + "s" * 30
# Port 9 on loopback (discard): nothing listens there.
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("FTPOOL_URL", "FTPOOL_TOKEN", "FTPOOL_TOKEN_FILE", "FTPOOL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return CliRunner()


def test_every_command_is_listed(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
    result = runner.invoke(cli, ["bots", "--help"])
    for verb in ("ls", "show", "create", "start", "stop", "restart", "rm", "logs"):
        assert verb in result.output
    assert runner.invoke(cli, ["pools", "--help"]).exit_code == 0
    assert "--follow" in runner.invoke(cli, ["events", "--help"]).output


def test_every_registered_command_resolves(runner: CliRunner) -> None:
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        assert isinstance(command, click.Command) and command.name == name


def test_an_argparse_tool_gets_every_argument(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["migrate", "--help"])
    assert result.exit_code == 0 and "--rollback" in result.output
    assert runner.invoke(cli, ["migrate", "--bogus"]).exit_code == 2


def test_controller_and_agent_take_no_arguments(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["controller", "--execute"])
    assert result.exit_code == 2
    assert runner.invoke(cli, ["nonsense"]).exit_code == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bots", "show"], "Missing argument 'ID'"),
        (["bots", "logs", "b", "--bytes", "0"], "--bytes"),
        (["bots", "create", "--config-json", "[1]"], "must hold a JSON object"),
        (["bots", "create", "--config-json", "{"], "--config-json is not JSON"),
        (["bots", "create", "--config-json", "{}", "--config-file", "x"], "not both"),
        (["bots", "create", "--config-file", "/nonexistent.json"], "cannot read"),
        (["bots", "rm", "b1"], "needs --yes"),  # stdin is no terminal here: never asks
        (["events", "--limit", "5000"], "--limit"),
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, argv: list[str], message: str) -> None:
    result = runner.invoke(cli, [*argv, "--url", NOWHERE, "--token", TOKEN])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_rm_asks_on_a_terminal(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.client.bots.interactive", lambda: True)
    argv = ["bots", "rm", "b1", "--url", NOWHERE, "--token", TOKEN]
    no = runner.invoke(cli, argv, input="n\n")
    assert no.exit_code == 1 and "Remove bot b1 and archive its directory?" in no.stderr
    assert "Aborted" in no.stderr  # and nothing was sent: NOWHERE would be exit 3
    yes = runner.invoke(cli, [*argv, "--purge"], input="y\n")
    assert "delete its trade database" in yes.stderr and yes.exit_code == 3  # it went on


def test_no_token_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["bots", "ls", "--url", NOWHERE])
    assert result.exit_code == 2
    assert "no token" in result.stderr and "docs/cli.md" in result.stderr


def test_an_unsafe_token_file_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    result = runner.invoke(cli, ["status", "--url", NOWHERE, "--token-file", str(token_file)])
    assert result.exit_code == 2
    assert "chmod 600" in result.stderr and TOKEN not in result.output


def test_an_unreachable_controller_exits_3_without_the_token(runner: CliRunner) -> None:
    for argv in (["bots", "ls"], ["status"], ["events", "-f"], ["bots", "logs", "b", "-f"]):
        result = runner.invoke(cli, [*argv, "--url", NOWHERE], env={"FTPOOL_TOKEN": TOKEN})
        assert result.exit_code == 3, result.output
        assert f"cannot reach the controller at {NOWHERE}" in result.stderr
        assert TOKEN not in result.output
