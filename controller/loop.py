"""The controller's event loop: asyncio's own, or uvloop's (EVENT_LOOP)."""

from __future__ import annotations

import asyncio

EVENT_LOOPS = ("asyncio", "uvloop")


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop  # only where it is chosen

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
