"""The controller's heap (GC freezing) and event loop."""

from __future__ import annotations

from typing import Any

from common.settings.parsing import MS, boolean, choice, setting


def gc_freeze() -> Any:
    return setting(
        "GC_FREEZE", boolean, "true", "freeze the long-lived heap so full collections stay short"
    )


def gc_pause_budget_ms() -> Any:
    return setting("GC_PAUSE_BUDGET", MS, "20", "a longer full collection freezes the heap again")


def event_loop() -> Any:
    return setting(
        "EVENT_LOOP", choice("asyncio", "uvloop"), "asyncio", "the controller's event loop"
    )
