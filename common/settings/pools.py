"""Pools: how bots share them, their ports, and how the controller and a pool's agent keep
in touch (heartbeats, polling, grace, fencing).
"""

from __future__ import annotations

from typing import Any

from common.settings.parsing import MS, boolean, choice, integer, setting

# AGENT_FENCE_TIMEOUT=auto: fencing on (this long) where pools run on several hosts (the
# `swarm` runtime), off on one host, where a controller restart must change nothing.
FENCE_TIMEOUT_AUTO = -1
FENCE_TIMEOUT_MULTI_HOST_MS = 30_000


def fence_timeout(raw: str) -> int:
    """AGENT_FENCE_TIMEOUT of the controller: ms, `off` (0) or `auto`."""
    value = raw.strip().lower()
    if value == "auto":
        return FENCE_TIMEOUT_AUTO
    if value in ("off", "0"):
        return 0
    try:
        return MS(value)
    except ValueError:
        raise ValueError("must be auto, off or a number of ms") from None


def pool_mode_enabled() -> Any:
    return setting(
        "POOL_MODE_ENABLED", boolean, "true", "false gives every new bot a pool of its own"
    )


def max_bots_per_container() -> Any:
    return setting(
        "MAX_BOTS_PER_CONTAINER", integer(1, 1000), "10", "bots per pool; also the port block size"
    )


def pool_base_port() -> Any:
    return setting("POOL_BASE_PORT", integer(1024, 65000), "9000", "first port of pool 1's block")


def heartbeat_interval_ms() -> Any:
    return setting("HEARTBEAT_INTERVAL", MS, "5000", "agent heartbeat period")


def poll_interval_ms() -> Any:
    return setting(
        "AGENT_POLL_INTERVAL", MS, "1000",
        "agents' poll of supervisord, the safety net of its process-state events",
    )  # fmt: skip


def pool_grace_ms() -> Any:
    return setting("POOL_GRACE", MS, "20000", "silence after which a pool is suspect")


def fence_timeout_setting() -> Any:
    return setting(
        "AGENT_FENCE_TIMEOUT", fence_timeout, "auto",
        "ms an agent may be cut off from the controller before it stops its bots (`off`; "
        "`auto`: 30000 with the swarm runtime, else off)",
    )  # fmt: skip


def fence_margin_ms() -> Any:
    return setting(
        "AGENT_FENCE_MARGIN", MS, "60000",
        "with fencing, a silent pool is lost (its bots may start elsewhere) only after "
        "AGENT_FENCE_TIMEOUT plus this",
    )  # fmt: skip


def pool_cleanup_grace_ms() -> Any:
    return setting(
        "POOL_CLEANUP_GRACE",
        integer(0, 30 * 24 * 3600 * 1000),
        "300000",
        "age an empty pool must reach before /api/pool/cleanup removes it",
    )


def pool_tenancy() -> Any:
    return setting("POOL_TENANCY", choice("shared", "per-user"), "shared", "who may share a pool")


def placement() -> Any:
    return setting(
        "POOL_PLACEMENT", choice("fill", "spread"), "fill", "fullest pool first, or emptiest"
    )
