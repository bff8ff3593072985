"""`python -m agent.healthcheck`: it finds the agent's socket through the settings
(AGENT_HEALTH_SOCKET) and exits by the agent's answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import health


@pytest.fixture
def answering(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """An agent's health socket, served from a loop of its own, answering `state`."""
    path, state = tmp_path / "run" / "health.sock", {"ok": True}
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(health.serve(path, lambda: dict(state)))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield path, state
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


def test_without_the_setting_it_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert health.main({}) == 2
    assert "AGENT_HEALTH_SOCKET is not set" in capsys.readouterr().err


def test_it_asks_the_socket_the_setting_names(
    answering: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = answering
    assert health.main({"AGENT_HEALTH_SOCKET": f"  {path} "}) == 0
    assert '"ok": true' in capsys.readouterr().out
    state["ok"] = False
    assert health.main({"AGENT_HEALTH_SOCKET": str(path)}) == 1


def test_no_agent_is_unhealthy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert health.main({"AGENT_HEALTH_SOCKET": str(tmp_path / "none.sock")}) == 1
    assert "agent did not answer" in capsys.readouterr().err
