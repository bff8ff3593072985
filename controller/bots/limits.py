"""Bots' limits (docs/limits.md): a bot's memory limit, its own or the default, and the
`limits` of a provisioning request."""

from __future__ import annotations

from dataclasses import dataclass

from common.protocol import PoolStats
from common.settings import ControllerSettings
from common.units import parse_bytes
from controller.errors import BadRequest
from controller.records import BotRecord

# The smallest memory limit a bot may be given: FreqTrade alone needs more.
MIN_BOT_MEMORY = 64 << 20
# How a pool's limits are enforced while bots have no cgroup of their own: the agent
# measures each bot's own memory and the controller restarts one over its limit; and, where
# the agent reports every bot ranked above the pool's machinery for the kernel's OOM killer
# (agent/oom.py), a kernel OOM kill takes a bot, never the machinery.
MEASURED = "measured"
MEASURED_OOM = "measured+oom_score_adj"
# Where each bot has a cgroup of its own (agent/cgroups.py): the kernel enforces its
# memory limit (and CPU cap) in it; the measurement stays, for reports and as fallback.
CGROUP_V1 = "cgroup-v1"
CGROUP_V2 = "cgroup-v2"


def limits_mode(stats: PoolStats | None) -> str:
    """How a pool's bots are limited, as its agent last reported."""
    if stats is None:
        return MEASURED
    if stats.cgroup:
        return stats.cgroup
    return MEASURED_OOM if stats.oom_guard else MEASURED


@dataclass(frozen=True, slots=True)
class BotLimits:
    memory: int = 0  # a bot's memory limit unless it has its own (0: none)
    user_max_bots: int = 0  # USER_MAX_BOTS: a user's bots unless they have their own quota

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> BotLimits:
        return cls(settings.default_bot_memory, settings.user_max_bots)

    def memory_of(self, bot: BotRecord) -> int:
        """The bot's memory limit in bytes: its own or the default (0: none)."""
        return bot.memory_limit_or(self.memory)


NO_LIMITS = BotLimits()


def parse_limits(raw: object) -> int | None:
    """A provisioning request's `limits`: its memory limit in bytes (None: the default)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest('limits must be an object such as {"memory": "512m"}')
    unknown = set(raw) - {"memory"}
    if unknown:
        raise BadRequest(f"unknown limits: {', '.join(sorted(unknown))} (only memory is)")
    if raw.get("memory") is None:
        return None
    try:
        memory = parse_bytes(raw["memory"])
    except ValueError as exc:
        raise BadRequest(f"limits.memory {exc}") from None
    if memory < MIN_BOT_MEMORY:
        raise BadRequest(f"limits.memory must be at least {MIN_BOT_MEMORY >> 20} MiB")
    return memory
