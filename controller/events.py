"""Health and recovery events: recorded in the store, handed to listeners and SSE streams.

`EventBus.emit` is synchronous and cheap so that hot paths (heartbeats) and callbacks
can call it anywhere: it only queues. One writer task stores each batch in one
transaction, which assigns the ids, and only then hands the events, in order, to
in-process listeners and to subscribers (the SSE streams). A slow subscriber is ended
rather than buffered without bound; it can resume from the last id it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import structlog

from controller.records import Event
from controller.store.store import Store

log = structlog.get_logger("controller.events")
Listener = Callable[[Event], Awaitable[None] | None]
# Events waiting for the writer; beyond this the store is not keeping up and new ones
# are counted and dropped, so a stuck store cannot take the controller's memory.
MAX_PENDING = 10_000
# Events per store transaction.
BATCH = 500
# Events a subscriber may have unread before it is ended.
SUBSCRIBER_QUEUE = 1000


class Subscription:
    """One subscriber's events, in order; an async iterator that ends when it is ended."""

    def __init__(self, user_id: str | None, limit: int) -> None:
        self.user_id = user_id
        self.limit = limit
        # True once ended for not keeping up; what was queued is still delivered first.
        self.dropped = False
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._ended = False

    def offer(self, event: Event) -> None:
        if self._ended or not event.visible_to(self.user_id):
            return
        if self._queue.qsize() >= self.limit:
            self.dropped = True
            self.end()
            return
        self._queue.put_nowait(event)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event


class EventBus:
    """Without a store the bus only logs: it is born closed."""

    def __init__(self, store: Store | None, keep: int = 10_000) -> None:
        self.store = store
        self.keep = keep
        self._dropped = 0
        self._pending: list[Event] = []
        self._listeners: list[Listener] = []
        self._subscribers: set[Subscription] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = store is None

    def emit(
        self,
        type: str,
        *,
        pool: str | None = None,
        bot: str | None = None,
        user: str | None = None,
        reason: str = "",
        **detail: Any,
    ) -> None:
        """Record an event; never blocks and never raises into the caller."""
        try:
            log.info("event", type=type, pool=pool, bot=bot, reason=reason, detail=detail)
            if self._closed:
                return
            if len(self._pending) >= MAX_PENDING:
                self._dropped += 1
                return
            self._pending.append(Event(0, time.time(), type, pool, bot, user, reason, detail))
            self._wakeup.set()
        except Exception:
            log.exception("event_emit_failed", type=type)

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call `callback(event)` (sync or async) for every stored event; returns a remover."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    @contextlib.contextmanager
    def subscribe(self, user_id: str | None = None) -> Iterator[Subscription]:
        """Live events visible to `user_id` (None: all) while the block runs."""
        sub = Subscription(user_id, SUBSCRIBER_QUEUE)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def end_streams(self) -> None:
        """End every subscription (shutdown: streams never end by themselves)."""
        for sub in self._subscribers:
            sub.end()

    async def recent(
        self, limit: int, since_id: int | None = None, user: str | None = None
    ) -> list[Event]:
        """Stored events, oldest first: the first `limit` after `since_id`, or the last."""
        if self.store is None:
            return []
        return await self.store.events(limit, since_id, user)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._write(), name="events")

    async def close(self) -> None:
        """Store what is pending, then stop; later events are only logged."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        # Emitted while the writer finished its last batch.
        while self._pending:
            await self._flush()
        self._closed = True
        self.end_streams()

    # -- the writer ---------------------------------------------------------------------

    async def _write(self) -> None:
        while not self._closing or self._pending:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                try:
                    await self._flush()
                except Exception:
                    # A writer that died would leave every later event unstored.
                    log.exception("events_flush_failed")

    async def _flush(self) -> None:
        assert self.store is not None  # a bus without a store queues nothing
        batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
        if self._dropped:
            log.warning("events_dropped", count=self._dropped, reason="store not keeping up")
            self._dropped = 0
        try:
            ids = await self.store.add_events(batch, self.keep)
        except Exception:
            # Without ids they cannot be resumed from; they stay in the log above only.
            log.exception("events_not_stored", count=len(batch))
            return
        for event_id, event in zip(ids, batch, strict=True):
            await self._deliver(replace(event, id=event_id))

    async def _deliver(self, event: Event) -> None:
        for callback in tuple(self._listeners):
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event_listener_failed", listener=repr(callback), type=event.type)
        for sub in tuple(self._subscribers):
            sub.offer(event)
