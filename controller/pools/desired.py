"""A pool's desired state, built from its records: the frame its agent converges to.

It is always built whole from the records, so a push can be repeated at any time. Each
bot's files (its FreqTrade config and strategy) are rendered once and kept until the bot
changes pool or goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from common.protocol import BotSpec, Desired
from common.states import RunState
from controller.botconfig import bot_files
from controller.records import BotRecord, PoolRecord


class DesiredStates:
    def __init__(
        self,
        bot_command: tuple[str, ...],
        bot_launch: str,
        listen_ip: Callable[[], str],
        bot_memory: int = 0,
        bot_cpu: float = 0.0,
    ) -> None:
        self.bot_command = bot_command
        # Each bot's limits, sent for the pool's kernel to enforce where its bots have
        # cgroups of their own (agent/cgroups.py): its own memory and CPU limits or the defaults.
        self.bot_memory = bot_memory
        self.bot_cpu = bot_cpu
        self.bot_launch = bot_launch  # BOT_LAUNCH: a pool's launch unless it has its own
        self._listen_ip = listen_ip  # where bots bind inside their pool (the runtime's)
        self._files: dict[str, dict[str, bytes]] = {}

    def build(self, pool: PoolRecord, bots: Iterable[BotRecord]) -> Desired:
        specs, purge = [], []
        for bot in bots:
            if bot.deleting:
                if bot.purge:
                    purge.append(bot.id)
                continue
            files = self._files.get(bot.id)
            if files is None:
                files = self._files[bot.id] = bot_files(bot, self._listen_ip())
            specs.append(
                BotSpec(
                    id=bot.id,
                    port=bot.port,
                    command=[*self.bot_command, "--config", "config.json"],
                    files=files,
                    run=RunState.HELD if bot.held else bot.run,
                    nonce=bot.nonce,
                    memory=max(0, bot.memory_limit_or(self.bot_memory)),
                    cpu=bot.cpu_limit_or(self.bot_cpu),
                )
            )
        return Desired(
            gen=pool.generation, bots=specs, purge=purge,
            launch=self.launch_mode(pool), preloader_nonce=pool.preloader_nonce,
            market_data=pool.market_data is not False,
        )  # fmt: skip

    def launch_mode(self, pool: PoolRecord) -> str:
        return pool.launch or self.bot_launch

    def forget(self, bot_id: str) -> None:
        """The bot's files are rendered again next time (it moved, or it is gone)."""
        self._files.pop(bot_id, None)
