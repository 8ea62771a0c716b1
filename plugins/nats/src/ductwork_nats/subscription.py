"""Deliveries and subscriptions of the ``nats`` broker: one durable pull consumer per group.

A subscription pulls one message at a time (a pull request lives at most ``receive``'s timeout,
or 5 s while it waits forever), so a lone consumer keeps stream order and no member hoards
messages that another could take. It remembers the deliveries it handed out and not yet settled,
and NAKs them when it closes, so they go back to the group at once rather than after
``ack_wait``. ``max_deliveries`` is counted by the server (``num_delivered``): the delivery nacked
on its last attempt, or received past it, is moved to the dead-letter topic, then acked.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import nats.errors
from ductwork._redact import get_logger
from ductwork.providers.broker import (
    DEAD_GROUP,
    Delivery,
    Message,
    Subscription,
    dead_letter_marks,
    header,
)
from nats.aio.msg import Msg
from nats.js import JetStreamContext

if TYPE_CHECKING:
    from ductwork_nats.broker import NATSBroker

__all__ = ["KEY_HEADER", "NATSDelivery", "NATSSubscription"]

log = get_logger("ductwork.nats")

KEY_HEADER = "x-ductwork-key"  # the message key travels as a header; stripped on delivery
_DIRECTIVE = "nats-"  # JetStream's publish directives, never passed on
_POLL = 5.0  # one pull request's lifetime while ``receive`` waits forever
_MIN_WAIT = 0.01  # nats-py refuses a zero fetch timeout


class NATSDelivery(Delivery):
    """One JetStream message handed to a consumer: ack is an ack, nack a NAK."""

    def __init__(self, sub: NATSSubscription, msg: Msg, message: Message, attempt: int) -> None:
        super().__init__(message, attempt)
        self._sub = sub
        self._msg = msg

    async def _ack(self) -> None:
        self._sub.forget(self)
        with self._sub.broker.translating("ack failed"):
            await self._msg.ack()

    async def _nack(self, delay: float) -> None:
        self._sub.forget(self)
        limit = self._sub.max_deliveries
        if limit is not None and self.attempt >= limit:
            await self._sub.dead_letter(self)
            return
        with self._sub.broker.translating("nack failed"):
            await self._msg.nak(delay=delay if delay > 0 else None)


class NATSSubscription(Subscription):
    """A member of a group: a pull subscription bound to the group's durable consumer."""

    def __init__(
        self,
        broker: NATSBroker,
        topic: str,
        psub: JetStreamContext.PullSubscription,
        max_deliveries: int | None,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.max_deliveries = max_deliveries
        self._psub = psub
        self._held: dict[int, NATSDelivery] = {}
        self._lock = asyncio.Lock()  # one pull request at a time on this subscription's inbox
        self._closed = False

    def forget(self, delivery: NATSDelivery) -> None:
        self._held.pop(id(delivery), None)

    async def receive(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        async with self._lock:
            while not self._closed:
                wait = _POLL if deadline is None else deadline - time.monotonic()
                if wait <= 0 and not first:
                    return None
                first = False
                try:
                    msgs = await self._psub.fetch(1, timeout=max(wait, _MIN_WAIT))
                except TimeoutError:  # nats-py's fetch timeouts derive from it
                    continue
                except (nats.errors.Error, OSError) as exc:
                    if self._closed:
                        return None
                    raise self.broker.translated(exc, "receive failed") from exc
                delivery = self._wrap(msgs[0])
                if self.max_deliveries is not None and delivery.attempt > self.max_deliveries:
                    # Redelivered past the limit (its consumer died on the last attempt).
                    await self.dead_letter(delivery)
                    continue
                self._held[id(delivery)] = delivery
                return delivery
        return None

    def _wrap(self, msg: Msg) -> NATSDelivery:
        raw = msg.headers or {}
        key = header(raw, KEY_HEADER)  # as another service may spell it: X-Ductwork-Key
        # Nats-* headers (Nats-Msg-Id, Nats-Expected-…) told JetStream how to take that one
        # publish: a dead letter or replay carrying them again would be dropped as a duplicate
        # or refused.
        headers = {
            k: v
            for k, v in raw.items()
            if k.lower() != KEY_HEADER and not k.lower().startswith(_DIRECTIVE)
        }
        meta = msg.metadata
        message = Message(self.topic, msg.data, key, headers, str(meta.sequence.stream))
        return NATSDelivery(self, msg, message, meta.num_delivered)

    async def dead_letter(self, delivery: NATSDelivery) -> None:
        """Publish to the dead-letter topic (confirmed), then ack the original."""
        delivery.settled = True
        self.forget(delivery)
        msg = delivery.message
        headers = {**msg.headers, **dead_letter_marks(msg.topic, delivery.attempt)}
        dead = self.broker.dead_letter_topic(msg.topic)
        await self.broker.ensure_group(dead, DEAD_GROUP)  # so the letter is kept for the group
        await self.broker.publish(dead, msg.body, key=msg.key, headers=headers)
        with self.broker.translating("ack after dead-lettering failed"):
            await delivery._msg.ack()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.broker.forget(self)
        held, self._held = list(self._held.values()), {}
        try:
            for delivery in held:  # back to the group now, not after ack_wait
                delivery.settled = True
                await delivery._msg.nak()
            await self._psub.unsubscribe()
            # Messages the server sent for a pull that had already timed out wait here unread.
            # nats-py has no public way to take them: its PullSubscription's inner subscription.
            queue = self._psub._sub._pending_queue
            while not queue.empty():
                msg = queue.get_nowait()
                if msg.reply and not (msg.headers or {}).get("Status"):
                    await msg.nak()
        except (nats.errors.Error, OSError) as exc:
            # The connection is gone: the server redelivers after ack_wait.
            log.info("closing a subscription to %s: %s: %s", self.topic, type(exc).__name__, exc)
