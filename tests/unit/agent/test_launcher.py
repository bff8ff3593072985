"""The launcher's command line, parsed by hand to keep each launcher small."""

from __future__ import annotations

import pytest

from agent.launcher import parse


def test_options_and_the_command_after_the_separator() -> None:
    options, command = parse(
        ["--socket", "/run/p.sock", "--pidfile", "/run/b.pid", "--user", "ftbot1",
         "--title", "freqtrade bot b-1",
         "--", "/usr/bin/python3", "/bin/freqtrade", "--config", "config.json"]
    )  # fmt: skip
    assert options == {
        "socket": "/run/p.sock", "pidfile": "/run/b.pid", "user": "ftbot1",
        "title": "freqtrade bot b-1",
    }  # fmt: skip
    assert command == ["/usr/bin/python3", "/bin/freqtrade", "--config", "config.json"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--socket", "s", "--", "py", "script"],  # no pidfile
        ["--socket", "s", "--pidfile", "p", "--", "py"],  # no script
        ["--socket", "s", "--pidfile", "p", "py", "script"],  # no separator
        ["--socket", "s", "--pidfile", "p", "--shell", "x", "--", "py", "script"],
        ["--socket"],
    ],
)
def test_a_bad_command_line_exits_with_a_message(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert "launcher" in str(exc.value) or "usage" in str(exc.value)
