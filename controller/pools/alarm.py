"""The alarm: rung when a pool shows trouble (a bot died, an agent went away, the runtime
saw a pool die), so that the monitor judges at once instead of at its next interval.

It is made first and handed to both sides when they are built: whoever sees trouble rings
it, the monitor waits for it. Neither knows the other.
"""

from __future__ import annotations

import asyncio
import contextlib


class Alarm:
    def __init__(self) -> None:
        self._rung = asyncio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self, timeout: float) -> None:
        """Until the alarm rings (at once if it rang since the last wait) or `timeout`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._rung.wait(), timeout)
        self._rung.clear()
