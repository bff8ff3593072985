"""Bots' limits (docs/limits.md): a bot's memory and CPU limits, its own or the defaults,
and the `limits` of a provisioning request."""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.protocol import PoolStats
from common.settings import ControllerSettings
from common.units import parse_bytes
from controller.errors import BadRequest, Forbidden
from controller.records import BotRecord
from controller.store.quotas import Quotas

# The smallest memory limit a bot may be given: FreqTrade alone needs more.
MIN_BOT_MEMORY = 64 << 20
# A bot's CPU limit, in CPUs: its cgroup's quota per 100 ms period must be at least the
# kernel's 1 ms (cpu.cfs_quota_us, cpu.max), and BOT_CPU_LIMIT's own bound is the top.
MIN_BOT_CPU = 0.01
MAX_BOT_CPU = 1024.0
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
    cpu: float = 0.0  # BOT_CPU_LIMIT: a bot's CPUs unless it has its own (0: none)
    user_max_cpu: float = 0.0  # USER_MAX_CPU: a user's CPU quota unless they have their own

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> BotLimits:
        return cls(settings.default_bot_memory, settings.user_max_bots,
                   settings.bot_cpu_limit, settings.user_max_cpu)  # fmt: skip

    @property
    def quotas(self) -> Quotas:
        """The defaults of a user's quotas, checked in the allocation's transaction."""
        return Quotas(self.user_max_bots, self.user_max_cpu)

    def memory_of(self, bot: BotRecord) -> int:
        """The bot's memory limit in bytes: its own or the default (0: none)."""
        return bot.memory_limit_or(self.memory)

    def cpu_of(self, bot: BotRecord) -> float:
        """The bot's CPU limit in CPUs: its own or the default (0: none)."""
        return bot.cpu_limit_or(self.cpu)

    def check_request(self, wanted: RequestedLimits, admin: bool) -> None:
        """A user may ask for less than a default limit, never more (403); the admin may
        ask for anything. Without a default a user may set one (it only limits their bot)."""
        if admin:
            return
        if wanted.memory is not None and self.memory and wanted.memory > self.memory:
            raise Forbidden(f"limits.memory may be at most {self.memory} bytes "
                            "(BOT_MEMORY_LIMIT); an admin may set more")  # fmt: skip
        if wanted.cpu is not None and self.cpu and wanted.cpu > self.cpu:
            raise Forbidden(f"limits.cpu may be at most {self.cpu:g} CPUs (BOT_CPU_LIMIT); "
                            "an admin may set more")  # fmt: skip


NO_LIMITS = BotLimits()


@dataclass(frozen=True, slots=True)
class RequestedLimits:
    """A provisioning request's own limits (None: the default)."""

    memory: int | None = None  # bytes
    cpu: float | None = None  # CPUs


def parse_limits(raw: object) -> RequestedLimits:
    """A provisioning request's `limits`: `memory` a size, `cpu` a number of CPUs."""
    if raw is None:
        return RequestedLimits()
    if not isinstance(raw, dict):
        raise BadRequest('limits must be an object such as {"memory": "512m", "cpu": 0.5}')
    unknown = set(raw) - {"memory", "cpu"}
    if unknown:
        raise BadRequest(f"unknown limits: {', '.join(sorted(unknown))} (memory and cpu are)")
    return RequestedLimits(parse_memory(raw.get("memory")), parse_cpu(raw.get("cpu")))


def parse_memory(raw: object) -> int | None:
    if raw is None:
        return None
    try:
        memory = parse_bytes(raw)
    except ValueError as exc:
        raise BadRequest(f"limits.memory {exc}") from None
    if memory < MIN_BOT_MEMORY:
        raise BadRequest(f"limits.memory must be at least {MIN_BOT_MEMORY >> 20} MiB")
    return memory


def parse_cpu(raw: object, name: str = "limits.cpu", least: float = MIN_BOT_CPU) -> float | None:
    """A number of CPUs (`0.5`: half of one) from `least` to MAX_BOT_CPU, in thousandths
    of a CPU (as the store keeps it); None stays None (the default)."""
    if raw is None:
        return None
    if type(raw) not in (int, float) or not math.isfinite(raw):
        raise BadRequest(f"{name} must be a number of CPUs such as 0.5")
    if not least <= raw <= MAX_BOT_CPU:
        raise BadRequest(f"{name} must be from {least:g} to {MAX_BOT_CPU:g} CPUs")
    return round(raw, 3)
