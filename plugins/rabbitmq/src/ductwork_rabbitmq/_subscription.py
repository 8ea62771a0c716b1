"""A consumer of one group's queue on its own channel, and its deliveries.

Each subscription owns an aio-pika channel: closing that channel is how RabbitMQ learns that
every delivery it still holds unacked goes back to the group. Deliveries arrive through the
consumer callback into a local inbox (at most ``prefetch`` of them) that ``receive`` reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from ductwork.errors import ConnectionFailedError
from ductwork.providers import Delivery, Message, Subscription
from ductwork.providers.broker import CONTENT_TYPE, get_until, header, without_header

if TYPE_CHECKING:
    from ductwork_rabbitmq.broker import RabbitMQBroker

log = logging.getLogger(__name__)

__all__ = [
    "KEY_HEADER",
    "PRIOR_HEADER",
    "TOPIC_HEADER",
    "AMQPMessage",
    "RabbitMQSubscription",
    "to_message",
]

KEY_HEADER = "x-ductwork-key"  # the message key (AMQP has none)
TOPIC_HEADER = "x-ductwork-topic"  # the topic of a copy re-published to one queue directly
PRIOR_HEADER = "x-ductwork-prior"  # deliveries made before this copy was re-published
# Bookkeeping headers that are not the publisher's: RabbitMQ's and the three above.
_HIDDEN = frozenset(
    {
        KEY_HEADER,
        TOPIC_HEADER,
        PRIOR_HEADER,
        "x-delivery-count",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


@dataclass(frozen=True)
class AMQPMessage(Message):
    """A delivered message, with the AMQP properties a re-published copy keeps."""

    timestamp: datetime | None = None
    app_id: str | None = None


def to_message(incoming: AbstractIncomingMessage, topic: str) -> AMQPMessage:
    """The ductwork message of an AMQP delivery (``topic`` when nothing says otherwise).

    The ``content_type`` property becomes the ``content-type`` header (it wins over a header of
    that name, which older ductwork versions sent alone); ``message_id`` is the message's id;
    the key is the ``x-ductwork-key`` header, its name in any case. RabbitMQ's and ductwork's
    bookkeeping headers are left out.
    """
    raw = incoming.headers or {}
    headers = {k: _text(v) for k, v in raw.items() if k.lower() not in _HIDDEN}
    if incoming.content_type:
        headers = without_header(headers, CONTENT_TYPE)
        headers[CONTENT_TYPE] = incoming.content_type
    key = header(raw, KEY_HEADER)
    return AMQPMessage(
        _text(raw.get(TOPIC_HEADER) or incoming.routing_key or topic),
        incoming.body,
        None if key is None else _text(key),
        headers,
        incoming.message_id,
        timestamp=incoming.timestamp,
        app_id=incoming.app_id,
    )


class _RabbitMQDelivery(Delivery):
    def __init__(
        self,
        sub: RabbitMQSubscription,
        incoming: AbstractIncomingMessage,
        message: Message,
        attempt: int,
    ) -> None:
        super().__init__(message, attempt)
        self._sub = sub
        self._incoming = incoming

    async def _ack(self) -> None:
        await self._sub.settle(self._incoming, requeue=None)

    async def _nack(self, delay: float) -> None:
        await self._sub.retry(self, self._incoming, delay)


class RabbitMQSubscription(Subscription):
    """Membership of a group: a consumer on the group's queue."""

    def __init__(
        self,
        broker: RabbitMQBroker,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        topic: str,
        max_deliveries: int | None,
    ) -> None:
        self._broker = broker
        self._channel = channel
        self._queue = queue
        self._topic = topic
        self._max = max_deliveries
        self._classic = broker.options.queue_type == "classic"
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._leaving = False  # close() is closing the channel
        self._reclosing: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start consuming."""
        self._channel.close_callbacks.add(self._channel_lost)
        await self._queue.consume(self._arrived)

    def _channel_lost(self, *_: Any) -> None:
        # The deliveries the lost channel held went back to the group and can no longer be
        # acked; the robust channel reopens and they arrive again on the new one.
        if not self.closed:
            while not self._inbox.empty():
                self._inbox.get_nowait()

    async def _arrived(self, incoming: AbstractIncomingMessage) -> None:
        if self.closed:
            # Nobody will receive it here. During close(), the channel's close hands it back
            # to the group. After it, the robust channel restored this consumer (aio-pika
            # reopens a channel whose close raced its recovery): close that channel too, so
            # it and whatever else the consumer took go back now, not when the connection
            # ends. (No nack: a frame on a channel being closed is a connection error.)
            if not self._leaving and self._reclosing is None:
                self._reclosing = asyncio.ensure_future(self._close_channel())
            return
        self._inbox.put_nowait(incoming)

    async def _close_channel(self) -> None:
        try:
            await self._channel.close()
        except Exception as exc:  # the connection went again: losing it returns the deliveries
            log.debug("closing a restored consumer's channel failed: %s", exc)
        finally:
            self._reclosing = None

    def _delivery(self, incoming: AbstractIncomingMessage) -> _RabbitMQDelivery:
        raw = incoming.headers or {}
        prior = int(_text(raw.get(PRIOR_HEADER, 0)))
        if self._classic:  # classic queues only flag a redelivery, they do not count them
            attempt = prior + 1 + (1 if incoming.redelivered else 0)
        else:
            attempt = prior + int(_text(raw.get("x-delivery-count", 0))) + 1
        return _RabbitMQDelivery(self, incoming, to_message(incoming, self._topic), attempt)

    async def receive(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.closed:
            if self._channel.is_closed:  # the connection is lost: events.subscribe rejoins
                raise self._broker.error(
                    f"the channel consuming {self._topic!r} is closed (connection lost?)",
                    ConnectionFailedError,
                )
            try:
                incoming = await get_until(self._inbox, deadline)
            except TimeoutError:
                return None
            if incoming is None:  # woken by close()
                return None
            delivery = self._delivery(incoming)
            if self._max is not None and delivery.attempt > self._max:
                # Its consumers kept dying before settling it: never hand it out again.
                delivery.settled = True
                await self._broker.dead_letter(delivery.message, delivery.attempt - 1)
                await self.settle(incoming, requeue=None)
                continue
            return delivery
        return None

    async def settle(self, incoming: AbstractIncomingMessage, *, requeue: bool | None) -> None:
        """Ack (``requeue`` None) or nack the delivery on this subscription's channel."""
        try:
            if requeue is None:
                await incoming.ack()
            else:
                await incoming.nack(requeue=requeue)
        except Exception as exc:
            raise self._broker.fail(exc, "cannot settle the delivery") from exc

    async def retry(
        self, delivery: _RabbitMQDelivery, incoming: AbstractIncomingMessage, delay: float
    ) -> None:
        """Nack: dead-letter, hold back, or put back, as the attempt and delay say."""
        message, attempt = delivery.message, delivery.attempt
        if self._max is not None and attempt >= self._max:
            await self._broker.dead_letter(message, attempt)
            await self.settle(incoming, requeue=None)
        elif delay > 0:
            await self._broker.delay(self._queue.name, message, attempt, delay)
            await self.settle(incoming, requeue=None)
        elif self._classic:
            # A requeued classic message comes back with no count: re-publish it carrying one.
            extra = {"x-ductwork-topic": message.topic, "x-ductwork-prior": str(attempt)}
            await self._broker.republish(message, self._queue.name, extra, direct=True)
            await self.settle(incoming, requeue=None)
        else:  # quorum queues count this return in x-delivery-count
            await self.settle(incoming, requeue=True)

    def stop(self) -> None:
        """Wake pending receivers; the broker is closing the connection."""
        self.closed = True
        self._inbox.put_nowait(None)

    async def close(self) -> None:
        if self.closed and self._channel.is_closed:
            return
        self.stop()
        # Closing the channel returns every delivery it holds unacked to the group.
        self._leaving = True
        try:
            await self._channel.close()
        except Exception as exc:
            raise self._broker.fail(exc, "cannot leave the group cleanly") from exc
        finally:
            self._leaving = False
