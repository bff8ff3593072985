"""The ping period both ends of an agent's connection use."""

from __future__ import annotations

from common.fencing import ws_heartbeat


def test_a_dead_connection_is_noticed_well_within_the_timeout() -> None:
    assert ws_heartbeat(0) == 20.0  # fencing off: as before
    assert ws_heartbeat(30) == 7.5
    assert ws_heartbeat(2) == 1.0  # at least a second
    assert ws_heartbeat(3600) == 20.0
