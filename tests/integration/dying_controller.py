"""`python -m tests.integration.dying_controller`: the controller, which kills itself
(SIGKILL: no shutdown of any kind) as the move of one bot begins a step of the transfer.

FTPOOL_TEST_DIE_AT=<step>:<bot id>, the step a method of controller.moves.transfer.Transfer
(relocate: its files are staged, its record not moved; land: its record is moved, its
files are still staged).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from controller.__main__ import main
from controller.moves.transfer import Transfer


def die_at(step: str, bot_id: str) -> None:
    original = getattr(Transfer, step)

    async def dying(self: Transfer, bot: Any, *args: Any, **kw: Any) -> Any:
        if bot.id == bot_id:
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self, bot, *args, **kw)

    setattr(Transfer, step, dying)


if __name__ == "__main__":
    die_at(*os.environ["FTPOOL_TEST_DIE_AT"].split(":"))
    sys.exit(main())
