"""The report of one health evaluation (`POST /api/pool/health-check` answers it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.errors import FtpoolError

log = structlog.get_logger("controller.monitor")


@dataclass
class HealthReport:
    timestamp: str
    pools: list[dict[str, Any]] = field(default_factory=list)
    bots: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    recovery_actions: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: float = 0.0
    # With an entry for every pool and bot (the health-check endpoint's answer); the
    # monitor's own evaluations keep only issues and actions: at 100,000 bots the entries
    # are 110,000 dicts kept alive through the pass, for the collector to walk.
    detailed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "success": True, "timestamp": self.timestamp, "pools": self.pools,
            "bots": self.bots, "issues": self.issues,
            "recoveryActions": self.recovery_actions, "durationMs": self.duration_ms,
        }  # fmt: skip


def said(exc: Exception) -> str:
    """What a report says of a failure: our own errors' words; of anything else its type,
    its details go to the log."""
    if isinstance(exc, FtpoolError):
        return str(exc)
    log.error("unexpected_error", error_type=type(exc).__name__, exc_info=exc)
    return f"unexpected {type(exc).__name__}"
