"""Moving one bot to another pool: hold, stage, relocate, land, release.

Every move of a bot between pools takes these steps (evacuation, controller/moves/
evacuation.py; migration, controller/migration/run.py):

- hold: the bot is *held*: its agents run no program for it and leave its directory alone.
  The old copy is confirmed stopped (its agent applied the hold, or nothing of its pool
  runs) before its files leave (principle 4).
- stage: its directory moves to a staging directory (BOT_BASE_DIR/migrating/<bot>).
- relocate: its record moves to a slot of another pool, in one transaction; still held.
- land: its staged files move into the new pool, once that pool's agent has applied the
  hold (a new pool's runtime is made only once they are there).
- release: it runs (or stays stopped, as its user wants) where it is now.

With pools on their node's own disk (POOL_STORAGE=node) the stage and land steps go
through the agents (controller/moves/agent_files.py): the old pool's agent uploads the
directory into staging, the new pool's agent downloads it from there, and a new pool's
runtime is made before its files land (its agent receives them).

So after a crash a bot's files are in exactly one of: its old pool, staging, its new
pool (or, through the agents, the same directory in staging and one pool: landing it there
is then a no-op), and a held bot's record says where they belong: the crash recovery
(controller/moves/recovery.py) brings staged files to the pool the store has the bot
in and releases it there, whatever move was cut short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from pathlib import Path

import aiohttp
import structlog

from common.states import STOPPED, ProcessState, RunState
from controller.errors import FtpoolError
from controller.moves.agent_files import AgentFiles
from controller.moves.stranded import StrandedBots
from controller.pools.live import PoolLive
from controller.pools.manager import PoolManager
from controller.records import BotRecord
from controller.runtimes import RuntimeState
from controller.runtimes.base import hand_over
from controller.store.allocation import Placement

log = structlog.get_logger("controller.moves")
HOLD_TIMEOUT = 90.0  # supervisord gives a bot 30 s to stop; its agent reports within seconds
AGENT_TIMEOUT = 300.0  # for a pool's agent to connect (a new pool's task to start, say)
_NOTHING_RUNS = frozenset((RuntimeState.EXITED, RuntimeState.MISSING))


class StepFailed(FtpoolError):
    """A step of a move failed; what it says is for the operator."""

    status = 409


class Transfer:
    def __init__(self, pools: PoolManager, staging: Path, files: AgentFiles | None = None) -> None:
        self.pools = pools
        self.registry = pools.registry
        self.staging = staging  # BOT_BASE_DIR/migrating: files between two pools
        self.files = files  # pools on their node's own disk: files through the agents
        # Held bots whose recovery failed: `land_later` tries again (recovery.py).
        self.stranded = StrandedBots(pools.events, pools.sessions.monotonic)

    # -- hold and release ---------------------------------------------------------------

    async def hold(self, bot: BotRecord, *, fenced: bool = False) -> BotRecord:
        """Hold the bot and wait until its agent has stopped it and removed its program
        (at once where nothing of its pool runs). `fenced`: its pool was abandoned on a
        lost node once its agent's fence had stopped its bots (controller/moves/
        failover.py): no agent is there to wait for, unless one is connected again (it
        has unfenced: it stops the bot before the bot moves)."""
        self.can_hold(bot.pool_id)
        held = await self._set_held(bot, True)
        live = self.registry.live.get(held.pool_id)
        if not fenced or (live is not None and live.connected):
            await self.wait_applied(held.pool_id, lambda live: held.id not in live.bots)
        return held

    async def release(self, bot: BotRecord) -> BotRecord:
        """The bot runs (or stays stopped, as its user wants) where it is now."""
        return await self._set_held(bot, False)

    async def _set_held(self, bot: BotRecord, held: bool) -> BotRecord:
        """Held, its agent stops it and keeps out of its directory; released, it runs."""
        change = await self.pools.store.update_bot(bot.id, held=int(held))
        await self.registry.apply(change)
        return change.bot(bot.id)

    def can_hold(self, pool_id: str) -> None:
        """An agent from before held bots would refuse every desired state with one."""
        live = self.registry.live.get(pool_id)
        if live is not None and live.connected and "held" not in live.features:
            raise StepFailed(
                f"the agent of {pool_id} ({live.agent_version}) cannot hold a bot; "
                "recreate that pool with the current pool image first"
            )

    def check_targets(self, bot_id: str, placement: Placement) -> None:
        """Every pool the bot could be placed in must hold it: checked before it moves."""
        for pool in list(self.registry.pools.values()):
            if placement.pooled:
                fits = pool.legacy_of is None and pool.used < pool.capacity and not pool.draining
            else:
                fits = pool.legacy_of == bot_id
            if fits:
                self.can_hold(pool.id)

    async def wait_applied(
        self, pool_id: str, done: Callable[[PoolLive], bool] = lambda _live: True
    ) -> None:
        """Wait until the pool's agent has applied its current desired state (and `done`
        holds of its report), or nothing of the pool runs at all (confirmed: a pool on an
        unreachable node may run on, and is waited for like a running one)."""
        gen = self.registry.pools[pool_id].generation
        deadline = time.monotonic() + HOLD_TIMEOUT
        while True:
            live = self.registry.live.get(pool_id)
            if live is not None and live.connected:
                if live.acked_gen >= gen and done(live):
                    return
            elif await self.pools.runtime.inspect(pool_id) in _NOTHING_RUNS:
                return  # nothing of the pool runs: nor does any bot of it
            if time.monotonic() > deadline:
                raise StepFailed(f"the agent of {pool_id} did not apply generation {gen} "
                                 f"within {HOLD_TIMEOUT:.0f} s")  # fmt: skip
            await asyncio.sleep(0.2)

    # -- stage, relocate, land ----------------------------------------------------------

    def bot_dir(self, bot: BotRecord) -> Path:
        return self.pools.runtime.pools_dir / bot.pool_id / "bots" / bot.id

    async def move(self, bot: BotRecord, placement: Placement) -> BotRecord:
        """Stage, relocate and land a held bot whose old copy is stopped. It stays held."""
        await self.stage(bot)
        return await self.relocate(bot, placement)

    def staged(self, bot_id: str) -> bool:
        return (self.staging / bot_id).is_dir()

    async def stage(self, bot: BotRecord) -> None:
        """The held bot's directory leaves its pool for staging (OSError if it cannot)."""
        bot = self.registry.bots[bot.id]
        if self.files is not None:
            self._need_agent(bot.pool_id)
            await self.files.export(bot.pool_id, bot.id)
            return
        source = self.bot_dir(bot)
        if source.is_dir():  # else never written (its pool died before its agent made it)
            await asyncio.to_thread(hand_over, source, self.staging / bot.id)

    async def relocate(
        self, bot: BotRecord, placement: Placement, *, staged: bool = True,
        into: str | None = None, avoid: Collection[str] = (),
    ) -> BotRecord:  # fmt: skip
        """The held bot's record moves to a slot of another pool (`into`: that one; never
        one of `avoid`), in one transaction, and its staged files land there (none if its
        stage failed: what is in staging then is not this move's). It stays held."""
        pools = self.pools
        source = pools.registry.bots[bot.id].pool_id
        token, token_hash = pools.lifecycle.new_token()
        change = await pools.store.relocate(bot.id, placement, token_hash, held=True, into=into,
                                            avoid=avoid)  # fmt: skip
        # Both agents are told: the old one no longer has the bot, the new one has it held.
        await pools.registry.apply(change)
        moved = change.bot(bot.id)
        await self.land(moved, moved.pool_id in change.created, token, staged=staged)
        log.info("bot_relocated", bot=bot.id, source=source, target=moved.pool_id,
                 port=moved.port)  # fmt: skip
        return moved

    async def land(self, bot: BotRecord, created: bool, token: str, *, staged: bool = True) -> None:
        """Bring a held bot's staged files into its pool (a new pool's runtime is made once
        they are there). A running agent must have applied the bot's hold first: an older
        desired state still being applied would take the directory for a removed bot's and
        archive it."""
        pool = self.registry.pools[bot.pool_id]
        if created:
            if staged and self.files is None:
                await self.place_staged(bot)  # before its agent exists
            await self.pools.lifecycle.create_runtime(pool, token)
            if staged and self.files is not None:
                await self.place_staged(bot)  # its agent receives them
            return
        if not staged:
            return
        await self.pools.lifecycle.wait_created(pool.id)
        self.can_hold(pool.id)
        await self.wait_applied(pool.id)
        await self.place_staged(bot)

    async def place_staged(self, bot: BotRecord) -> None:
        stage = self.staging / bot.id
        if not stage.is_dir():
            return
        if self.files is None:
            await asyncio.to_thread(hand_over, stage, self.bot_dir(bot))
            return
        await self.wait_agent(bot.pool_id)
        await self.files.import_(bot.pool_id, bot.id)

    def _need_agent(self, pool_id: str) -> None:
        """OSError unless the pool's agent is connected and moves files (its directory is
        on its node's own disk: nothing else can reach it)."""
        live = self.registry.live.get(pool_id)
        if live is None or not live.connected:
            raise OSError(f"the agent of {pool_id} is not connected; its directory is on its node")
        if "files" not in live.features:
            version = live.agent_version
            raise OSError(f"the agent of {pool_id} ({version}) cannot move a bot's files; "
                          "recreate that pool with the current pool image first")  # fmt: skip

    async def wait_agent(self, pool_id: str) -> None:
        """Wait until the pool's agent is connected and has applied its current desired
        state (a new pool's task is being started, perhaps); StepFailed if it does not
        within AGENT_TIMEOUT."""
        await self.pools.lifecycle.wait_created(pool_id)
        deadline = time.monotonic() + AGENT_TIMEOUT
        while True:
            gen = self.registry.pools[pool_id].generation
            live = self.registry.live.get(pool_id)
            if live is not None and live.connected and live.acked_gen >= gen:
                self._need_agent(pool_id)
                return
            if time.monotonic() > deadline:
                raise StepFailed(f"the agent of {pool_id} did not connect and apply generation "
                                 f"{gen} within {AGENT_TIMEOUT:.0f} s")  # fmt: skip
            await asyncio.sleep(0.2)

    async def recover(self, bot: BotRecord) -> BotRecord:
        """A held bot whose move was cut short (a failed step): its staged files land in the
        pool the store has it in, and it is released there. If that fails, it is kept in
        `stranded`, and tried again (controller/moves/recovery.py, land_later)."""
        bot = self.registry.bots[bot.id]
        try:
            # Nothing staged (its hold itself failed, e.g. an agent too slow to apply it):
            # nothing to land, and waiting for that agent again would leave the bot held.
            if self.staged(bot.id):
                await self.land(bot, False, "")
            bot = await self.release(bot)
        except Exception as exc:
            # Held, perhaps with its only copy in staging: tried again until it is not.
            self.stranded.add(self.registry.bots.get(bot.id, bot), str(exc))
            raise
        self.stranded.done(bot.id)
        log.warning("bot_move_recovered", bot=bot.id, pool=bot.pool_id)
        return bot

    # -- after the move ------------------------------------------------------------------

    async def verify(self, bot: BotRecord, timeout: float) -> None:
        """The bot runs in its new pool and answers its API (a stopped bot: its agent has
        it, stopped)."""
        deadline = time.monotonic() + timeout
        state = "no report"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while True:
                current = self.registry.bots.get(bot.id, bot)
                status = self.registry.status_of(current)
                state = status.state if status else "no report"
                if current.run == RunState.STOPPED and state in STOPPED:
                    return
                # The agent's own view too: on a shared network another process could
                # answer on the bot's port.
                ours = status is not None and status.port_ok is not False and status.ping_ok
                if state == ProcessState.RUNNING and ours and await self.ping(session, current):
                    return
                if time.monotonic() >= deadline:
                    raise StepFailed(
                        f"bot did not answer /api/v1/ping within {timeout:g} s ({state})"
                    )
                await asyncio.sleep(0.25)

    async def ping(self, session: aiohttp.ClientSession, bot: BotRecord) -> bool:
        host = self.pools.runtime.bot_host(bot.pool_id)
        try:
            async with session.get(f"http://{host}:{bot.port}/api/v1/ping") as response:
                return response.status == 200 and (await response.json()).get("status") == "pong"
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
