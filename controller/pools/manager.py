"""The pools' side of the controller, built as one: the registry (the one in-memory view
and its only writer), the agents' sessions, and the runtime lifecycle.

Other parts reach what they need through it: `registry` to read the view and apply a
store write's change, `sessions` for what agents report, `lifecycle` for runtimes. The
only thing it does itself is an agent's heartbeat, in two steps: the session records
what changed, the lifecycle acts on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common.fencing import ws_heartbeat
from common.protocol import Heartbeat
from controller.events import EventBus
from controller.pools.alarm import Alarm
from controller.pools.config import PoolsConfig
from controller.pools.desired import DesiredStates
from controller.pools.lifecycle import PoolLifecycle
from controller.pools.registry import PoolRegistry
from controller.pools.sessions import AgentSessions
from controller.records import BotRecord, PoolRecord
from controller.runtimes import PoolRuntime
from controller.store.store import Store


class PoolManager:
    def __init__(
        self, store: Store, runtime: PoolRuntime, config: PoolsConfig, *, events: EventBus,
        alarm: Alarm, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.store = store
        self.runtime = runtime
        self.events = events
        desired = DesiredStates(config.bot_command, config.bot_launch,
                                lambda: runtime.bot_listen_ip, config.bot_memory,
                                config.bot_cpu)  # fmt: skip
        self.registry = PoolRegistry(runtime, desired)
        self.lifecycle = PoolLifecycle(store, runtime, self.registry, config)
        # The ping period of agents' connections here, the same as at their end: a silent
        # one is closed (and its pool judged) within 1.5 of it, well inside the fence.
        self.agent_heartbeat = ws_heartbeat(config.fence_timeout)
        self.sessions = AgentSessions(self.registry, runtime, events=events, alarm=alarm,
                                      pool_grace=config.pool_grace,
                                      bot_memory=config.bot_memory,
                                      fencing=config.fence_timeout > 0,
                                      replacing=self.lifecycle.upgrading.__contains__,
                                      monotonic=monotonic)  # fmt: skip

    async def heartbeat(self, pool_id: str, hb: Heartbeat) -> None:
        """An agent's heartbeat: its pool's live state is updated (memory only), then the
        lifecycle acts on what changed (a deleted bot its agent no longer runs is gone)."""
        report = self.sessions.record(pool_id, hb)
        if report is not None:
            await self.lifecycle.settle(report)
        if self.sessions.waited_for:
            await self.sessions.notify()

    @property
    def frames_rejected(self) -> int:
        return self.sessions.frames_rejected

    # Records as the store would have loaded them, one at a time (the heartbeat benchmark
    # fills the view this way, without a store).
    def set_pool(self, pool: PoolRecord) -> None:
        self.registry.load([pool], [])

    def set_bot(self, bot: BotRecord) -> None:
        self.registry.load([], [bot])
