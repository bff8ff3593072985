"""The proxy's WebSocket relay: a side that fails mid-send ends it, and leaves no error
behind that nobody retrieved."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType

from controller.api.proxy import relay


class Message:
    type = WSMsgType.TEXT
    data = "hello"


class Gone:
    """A side whose peer went away: every send fails, and so does its receive when the
    relay stops it (as a connection lost mid-receive does)."""

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionResetError("Connection lost") from None
        yield Message()

    async def send_str(self, _data: str) -> None:
        raise ConnectionResetError("Cannot write to closing transport")


class Talker(Gone):
    """A side with one message to pass on, then silence."""

    async def _messages(self) -> AsyncIterator[Message]:
        yield Message()
        await asyncio.Event().wait()


async def test_a_failed_send_ends_the_relay_and_no_error_is_left_unretrieved() -> None:
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        await asyncio.wait_for(relay(Talker(), Gone(), "b1"), 5)
        for _ in range(3):  # the stopped direction ends on its next turn
            await asyncio.sleep(0)
        gc.collect()  # a task's unretrieved error is reported when it is collected
    finally:
        loop.set_exception_handler(previous)
    assert [c["message"] for c in unretrieved] == []
