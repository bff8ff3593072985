"""The supervisord client: a supervisord that was away is reached again once it is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.supervisor import SupervisorClient, SupervisorError
from tests.unit.agent.fake_supervisord import serving


async def test_supervisord_is_reached_again_after_it_was_away(tmp_path: Path) -> None:
    sock = tmp_path / "supervisor.sock"
    client = SupervisorClient(sock)
    try:
        for _ in range(2):
            with pytest.raises(SupervisorError, match="unreachable"):
                await client.state()
        with serving(sock):
            assert await client.state() == "RUNNING"
            assert await client.all_processes() == {}
        with pytest.raises(SupervisorError, match="unreachable"):
            await client.state()  # gone again: an error of ours, never the transport's
        with serving(sock):
            assert await client.state() == "RUNNING"
    finally:
        client.close()
