"""One move at a time, and no user's change to what is moving.

Evacuation (a lost pool's bots) and migration (one bot at a time) both move bots between
pools: they take the guard's lock, so they never run beside each other. While a pool's
bots or a bot are moving (or a bot is held by a move), a user's start, stop, restart or
delete of them is refused (409) until the move is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from controller.errors import Conflict
from controller.moves.agent_files import TRANSFER_TIMEOUT
from controller.moves.transfer import AGENT_TIMEOUT
from controller.records import BotRecord

# For a running move (one pool of a drain, a migration) to end: beyond its longest single
# step (a transfer through the agents, once its agent is there).
LOCK_WAIT = TRANSFER_TIMEOUT + AGENT_TIMEOUT


class MoveGuard:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._pools: set[str] = set()  # pools whose bots are being moved elsewhere
        self._bots: set[str] = set()  # bots in a migration run

    @contextlib.asynccontextmanager
    async def locked(self, busy: str, wait: float = LOCK_WAIT) -> AsyncIterator[None]:
        """The moves' lock, waited for up to `wait` seconds while another move (one pool
        of a drain, a migration) holds it; Conflict (saying `busy`) if it is not free by
        then. A recovery waits its turn rather than failing every few seconds."""
        try:
            async with asyncio.timeout(wait):
                await self.lock.acquire()
        except TimeoutError:
            raise Conflict(busy) from None
        try:
            yield
        finally:
            self.lock.release()

    def pool_moving(self, pool_id: str) -> contextlib.AbstractContextManager[None]:
        """While the block runs, the pool's bots are being moved elsewhere."""
        return _member(self._pools, pool_id)

    def bot_moving(self, bot_id: str) -> contextlib.AbstractContextManager[None]:
        """While the block runs, the bot is being moved (a migration run)."""
        return _member(self._bots, bot_id)

    def refuse_if_moving(self, bot: BotRecord) -> None:
        if bot.id in self._bots:
            raise Conflict(f"bot {bot.id} is being migrated; try again when it is done")
        # Held: some move has it (an evacuation's, past its old pool, or one cut short).
        if bot.held or bot.pool_id in self._pools:
            raise Conflict(f"bot {bot.id} is being moved to another pool; try again shortly")


@contextlib.contextmanager
def _member(members: set[str], key: str) -> Iterator[None]:
    members.add(key)
    try:
        yield
    finally:
        members.discard(key)
