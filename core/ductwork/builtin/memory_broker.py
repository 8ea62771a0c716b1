"""``memory`` broker: topics and consumer groups inside one process.

Features: confirmed publish (the message is in every group's queue when ``publish`` returns),
consumer groups, ack/nack with redelivery, delayed nack, dead-lettering after
``max_deliveries``. Brokers with the same ``namespace`` option share their topics, so two
clients in one process talk to each other. Nothing survives the process: use the ``sqlite``
broker to exchange events between processes without a server.

Configuration: ``namespace`` (default ``default``).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ductwork.providers.base import Options
from ductwork.providers.broker import (
    DEAD_GROUP,
    Broker,
    Delivery,
    Message,
    Subscription,
    dead_letter_marks,
    refuse_options,
)

__all__ = ["MemoryBroker"]


class MemoryBrokerOptions(Options):
    """Options of the ``memory`` broker."""

    namespace: str = "default"


@dataclass
class _Pending:
    message: Message
    attempt: int
    visible_at: float


@dataclass
class _Group:
    max_deliveries: int | None = None
    queue: list[_Pending] = field(default_factory=list)
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list
    )

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Hub:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.topics: dict[str, dict[str, _Group]] = {}
        self.ids = itertools.count(1)

    def put(self, message: Message) -> None:
        with self.lock:
            groups = list(self.topics.get(message.topic, {}).values())
            for group in groups:
                group.queue.append(_Pending(message, 0, 0.0))
                group.wake()


_hubs: dict[str, _Hub] = {}
_hubs_lock = threading.Lock()


def _hub(namespace: str) -> _Hub:
    with _hubs_lock:
        return _hubs.setdefault(namespace, _Hub())


class _MemoryDelivery(Delivery):
    def __init__(self, sub: _MemorySubscription, pending: _Pending) -> None:
        super().__init__(pending.message, pending.attempt)
        self._sub = sub
        self._pending = pending

    async def _ack(self) -> None:
        self._sub.forget(self._pending)

    async def _nack(self, delay: float) -> None:
        self._sub.forget(self._pending)
        self._sub.requeue(self._pending, delay)


class _MemorySubscription(Subscription):
    def __init__(self, broker: MemoryBroker, topic: str, group: _Group) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.inflight: set[int] = set()
        self._held: dict[int, _Pending] = {}

    def forget(self, pending: _Pending) -> None:
        self.inflight.discard(id(pending))
        self._held.pop(id(pending), None)

    def requeue(self, pending: _Pending, delay: float) -> None:
        hub = self.broker.hub
        limit = self.group.max_deliveries
        if limit is not None and pending.attempt >= limit:
            msg = pending.message
            headers = {**msg.headers, **dead_letter_marks(msg.topic, pending.attempt)}
            dead_topic = self.broker.dead_letter_topic(msg.topic)
            with hub.lock:
                hub.topics.setdefault(dead_topic, {}).setdefault(DEAD_GROUP, _Group())
            hub.put(Message(dead_topic, msg.body, msg.key, headers, msg.id))
            return
        with hub.lock:
            pending.visible_at = time.monotonic() + delay
            self.group.queue.insert(0, pending)
            self.group.wake()

    async def receive(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while not self.closed:
            now = time.monotonic()
            next_due: float | None = None
            with self.broker.hub.lock:
                for i, pending in enumerate(self.group.queue):
                    if pending.visible_at <= now:
                        del self.group.queue[i]
                        pending.attempt += 1
                        self.inflight.add(id(pending))
                        self._held[id(pending)] = pending
                        return _MemoryDelivery(self, pending)
                    next_due = min(next_due or pending.visible_at, pending.visible_at)
                fut: asyncio.Future[None] = loop.create_future()
                self.group.waiters.append((loop, fut))
            wait = None if deadline is None else max(0.0, deadline - now)
            if next_due is not None:
                wait = min(wait, next_due - now) if wait is not None else next_due - now
            try:
                await asyncio.wait_for(fut, wait)
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        return None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self.broker.hub.lock:
            self.group.wake()  # a receive waiting here sees the close
        for key in list(self.inflight):
            # unsettled deliveries go back to the group, as with a crashed consumer
            self.inflight.discard(key)
            pending = self._held.pop(key)
            with self.broker.hub.lock:
                self.group.queue.insert(0, pending)
                self.group.wake()


class MemoryBroker(Broker[MemoryBrokerOptions]):
    """Topics and consumer groups in this process."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"dead_letter", "delayed_nack", "ordering"})

    @property
    def hub(self) -> _Hub:
        """The namespace's shared topics."""
        return _hub(self.options.namespace)

    @property
    def endpoint(self) -> str:
        return f"memory://{self.options.namespace}"

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        message_id = str(next(self.hub.ids))
        self.hub.put(Message(topic, bytes(body), key, dict(headers or {}), message_id))
        return message_id

    async def groups(self, topic: str) -> frozenset[str] | None:
        with self.hub.lock:
            return frozenset(self.hub.topics.get(topic, {}))

    async def subscribe(
        self, topic: str, group: str, *, max_deliveries: int | None = None, **options: Any
    ) -> Subscription:
        refuse_options("memory", options)
        hub = self.hub
        with hub.lock:
            g = hub.topics.setdefault(topic, {}).setdefault(group, _Group())
            if max_deliveries is not None:
                g.max_deliveries = max_deliveries
        return self.track(_MemorySubscription(self, topic, g))

    async def close(self) -> None:
        await self.close_subscriptions()
