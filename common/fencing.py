"""What the agent's fence and the controller's wait for it both rely on: how soon a
connection that died silently (a partition) is noticed on either side."""

from __future__ import annotations


def ws_heartbeat(timeout: float, default: float = 20.0) -> float:
    """The WebSocket ping period of an agent's connection, on both of its ends: a connection
    that died silently is noticed within 1.5 of it, so with fencing (`timeout`, the fence's
    AGENT_FENCE_TIMEOUT in seconds) it is a quarter of the timeout (at least a second), not
    to delay the fence by much; without (0), `default`."""
    if timeout <= 0:
        return default
    return max(1.0, min(default, timeout / 4))
