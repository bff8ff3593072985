"""The alarm: rung when a pool shows trouble (a bot died, an agent went away, the runtime
saw a pool die), so that the monitor judges at once instead of at its next interval.

It is made first and handed to both sides when they are built: whoever sees trouble rings
it, the monitor waits for it. Neither knows the other. Trouble with one bot alone (its
process died) is rung for that bot: the monitor then judges that bot only, so a dead bot's
first restart goes out at once however many pools there are, and the whole evaluation keeps
its interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

# Bots rung for between two waits beyond this: the whole fleet is judged instead.
MAX_BOTS = 1000


@dataclass(frozen=True, slots=True)
class Ringing:
    """Why a wait ended: rung for everything, or for these bots only (neither: timed out)."""

    everything: bool
    bots: frozenset[str] = frozenset()

    @property
    def bots_only(self) -> bool:
        return bool(self.bots) and not self.everything


class Alarm:
    def __init__(self) -> None:
        self._rung = asyncio.Event()
        self._everything = False
        self._bots: set[str] = set()

    def ring(self) -> None:
        self._everything = True
        self._rung.set()

    def ring_for(self, bot_id: str) -> None:
        """Trouble with this bot alone (its process died)."""
        if len(self._bots) < MAX_BOTS:
            self._bots.add(bot_id)
        else:
            self._everything = True
        self._rung.set()

    async def wait(self, timeout: float) -> Ringing:
        """Until the alarm rings (at once if it rang since the last wait) or `timeout`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._rung.wait(), timeout)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Python 3.11's wait_for loses a cancellation that comes as the alarm rings: the
            # monitor then ran on through the controller's shutdown, which waited for it for
            # ever (seen in an e2e run). Cancelled it is.
            raise asyncio.CancelledError
        ringing = Ringing(self._everything, frozenset(self._bots))
        self._rung.clear()
        self._everything = False
        self._bots.clear()
        return ringing
