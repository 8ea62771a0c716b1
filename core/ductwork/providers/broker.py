"""The ``Broker`` interface: publish confirmed messages, consume them in groups.

Semantics every provider keeps (the conformance suite checks them):

* :meth:`Broker.publish` returns only once the backend has confirmed the message.
* :meth:`Broker.subscribe` joins a consumer group on a topic. Each message goes to one member
  of each group and to every group subscribed before it was published.
* A delivery is acked (done) or nacked (delivered again, ``attempt`` one higher). A delivery
  that is neither — its consumer crashed — is delivered again after the provider's
  visibility/session timeout. Nothing is acked that was not handled.

Capabilities:
    ``dead_letter``: with ``max_deliveries`` set, the provider itself moves a message nacked that
        many times to :meth:`Broker.dead_letter_topic`, where group ``DEAD_GROUP`` keeps it.
        Without it, ``events.subscribe`` does the same itself.
    ``ordering``: messages with the same key reach a lone consumer in publish order (until one
        is nacked: redelivery comes after).
    ``delayed_nack``: ``nack(delay=…)`` holds the message back for ``delay`` seconds.

Closing (checked by the suite too): :meth:`Broker.close` first closes every subscription it
handed out (:meth:`Broker.track` / :meth:`Broker.close_subscriptions`), each within
``CLOSE_TIMEOUT`` seconds, and may be called again. A closed subscription's ``closed`` is true,
its pending ``receive`` returns ``None`` promptly, and its unsettled deliveries go back to the
group. Transient failures (the connection is lost) raise :class:`ConnectionFailedError`;
``events.subscribe`` rides them out by subscribing again.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

from ductwork.providers.base import OptionsT, Provider

__all__ = [
    "Broker",
    "Delivery",
    "Message",
    "Subscription",
    "close_quietly",
    "dead_letter_marks",
    "get_until",
    "header",
    "refuse_options",
    "without_header",
]

T = TypeVar("T")
V = TypeVar("V")
S = TypeVar("S", bound="Subscription")

#: How long closing one subscription may take before it is given up on.
CLOSE_TIMEOUT = 2.0

DEAD_LETTER_SUFFIX = ".dead-letter"
#: The header naming the body's media type (``application/json`` for JSON events).
CONTENT_TYPE = "content-type"
#: ductwork's own headers (key, dead-letter marks, bookkeeping) start with this.
MARK_PREFIX = "x-ductwork-"
#: The group that keeps every dead letter, so none is lost when nobody listens yet.
DEAD_GROUP = "ductwork-dead-letters"
#: The header a feature step's publish carries: ``<run_id>:<step_key>``. Providers whose
#: broker has a message id take it as that id (NATS ``Nats-Msg-Id``, AMQP ``message_id``).
IDEMPOTENCY_KEY = "idempotency-key"


async def get_until(queue: asyncio.Queue[T], deadline: float | None) -> T:
    """The next item of ``queue``, waiting until ``deadline`` at the latest.

    ``deadline`` is a ``time.monotonic()`` instant; ``None`` waits for as long as it takes. For a
    subscription's ``receive(timeout)``.

    Raises:
        TimeoutError: ``deadline`` passed with the queue still empty.
    """
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    wait = None if deadline is None else deadline - time.monotonic()
    if wait is not None and wait <= 0:
        raise TimeoutError
    return await asyncio.wait_for(queue.get(), wait)


def refuse_options(provider: str, options: Mapping[str, Any], known: Iterable[str] = ()) -> None:
    """Raise :class:`ValidationError` naming any subscribe option not in ``known``."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        from ductwork.errors import ValidationError

        allowed = ", ".join(sorted(known)) or "none"
        raise ValidationError(
            f"{provider} broker: unknown subscribe option(s) {', '.join(unknown)} "
            f"(allowed: {allowed})"
        )


def header(headers: Mapping[str, V], name: str) -> V | None:
    """The value of header ``name`` (lower case), whatever the case it was sent in.

    ductwork reads its own headers (``content-type``, ``x-ductwork-*``) through this on every
    broker: other services spell them ``Content-Type`` as often as not, and Kafka, NATS and
    AMQP keep header names as sent. An exact match wins; otherwise the first name that is equal
    ignoring case.
    """
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def without_header(headers: Mapping[str, str], name: str) -> dict[str, str]:
    """A copy of ``headers`` without header ``name`` (lower case) in any spelling."""
    return {k: v for k, v in headers.items() if k.lower() != name}


def dead_letter_marks(topic: str, deliveries: int, error: str | None = None) -> dict[str, str]:
    """Headers a dead letter carries besides its own.

    Where it came from, how often it was delivered, and (when ductwork's handler loop moved it)
    the last error.
    """
    marks = {"x-ductwork-dead-letter-from": topic, "x-ductwork-deliveries": str(deliveries)}
    if error is not None:
        marks["x-ductwork-error"] = error[:1000]
    return marks


@dataclass(frozen=True)
class Message:
    """A message as published and as delivered."""

    topic: str
    body: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    id: str | None = None


class Delivery(ABC):
    """One delivery of a message to a consumer; ack or nack it exactly once."""

    def __init__(self, message: Message, attempt: int = 1) -> None:
        self.message = message
        self.attempt = attempt
        self.settled = False

    @abstractmethod
    async def _ack(self) -> None: ...

    @abstractmethod
    async def _nack(self, delay: float) -> None: ...

    async def ack(self) -> None:
        """The message was handled; it will not be delivered to this group again."""
        if not self.settled:
            self.settled = True
            await self._ack()

    async def nack(self, *, delay: float = 0.0) -> None:
        """The message was not handled; deliver it again (after ``delay`` s where supported)."""
        if not self.settled:
            self.settled = True
            await self._nack(delay)


class Subscription(ABC):
    """A consumer's membership of a group; iterate it for deliveries, close it to leave.

    ``closed`` turns true as :meth:`close` starts (providers set it first thing, and their
    ``receive`` returns ``None`` once it is set); :meth:`wait_closed` waits for that.
    """

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (by the caller, or by the broker closing)."""
        return self._closing().is_set()

    @closed.setter
    def closed(self, value: bool) -> None:
        if value:
            self._closing().set()
        else:
            self._closing().clear()

    def _closing(self) -> asyncio.Event:
        event: asyncio.Event | None = self.__dict__.get("_closed_event")
        if event is None:
            event = self.__dict__["_closed_event"] = asyncio.Event()
        return event

    async def wait_closed(self) -> None:
        """Return once the subscription is closed."""
        await self._closing().wait()

    @abstractmethod
    async def receive(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, or ``None`` after ``timeout`` seconds (forever when ``None``)."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the group; unsettled deliveries go back to the group."""

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Delivery]:
        while not self.closed:
            delivery = await self.receive()
            if delivery is not None:
                yield delivery

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def close_quietly(sub: Subscription, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close ``sub`` within ``timeout`` s, raising nothing but cancellation.

    For a way out (the connection may be gone): what a close could not say, the broker
    redelivers after its own timeout.
    """
    closing = asyncio.ensure_future(sub.close())
    # not wait_for: it waits for the cancelled close to finish, which a client may not do soon
    done, _ = await asyncio.wait({closing}, timeout=timeout)
    if not done:
        closing.cancel()  # left to finish in the background
        closing.add_done_callback(_retrieve)
    elif not closing.cancelled():
        closing.exception()  # retrieved: what a close on the way out raises is not news


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


class Broker(Provider[OptionsT]):
    """Topics, confirmed publishes, consumer groups, ack/nack."""

    kind: ClassVar[str] = "broker"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"dead_letter", "ordering", "delayed_nack"})

    @property
    def closing(self) -> bool:
        """Whether :meth:`close_subscriptions` ran: the provider is closing or closed."""
        return bool(self.__dict__.get("_closing", False))

    def track(self, sub: S) -> S:
        """Remember a subscription handed out, so :meth:`close_subscriptions` closes it."""
        live: weakref.WeakSet[Subscription] | None = self.__dict__.get("_live_subscriptions")
        if live is None:
            live = self.__dict__["_live_subscriptions"] = weakref.WeakSet()
        live.add(sub)
        return sub

    async def close_subscriptions(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close every live subscription, within ``timeout`` s; first step of ``close``.

        A subscription that cannot say goodbye (the connection is gone) is left to the
        server, which returns its deliveries after its own timeout; nothing is raised.
        """
        self.__dict__["_closing"] = True
        live: weakref.WeakSet[Subscription] = self.__dict__.get("_live_subscriptions", ())
        subs = [sub for sub in list(live) if not sub.closed]
        if subs:  # all at once: the bound holds for the provider, not for each subscription
            await asyncio.gather(*(close_quietly(sub, timeout) for sub in subs))

    @abstractmethod
    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        """Publish and wait for the backend's confirmation; return the message id if any."""

    async def publish_many(
        self,
        topic: str,
        bodies: Iterable[bytes],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Publish every body and return how many once all are confirmed.

        The default publishes them concurrently; providers with a batching client override it
        (one confirmation for the batch). If any publish fails this raises, and the others
        may have been written.
        """
        bodies = list(bodies)
        await asyncio.gather(*(self.publish(topic, b, key=key, headers=headers) for b in bodies))
        return len(bodies)

    @abstractmethod
    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        max_deliveries: int | None = None,
        **options: Any,
    ) -> Subscription:
        """Join ``group`` on ``topic``; messages published from now on reach the group.

        ``max_deliveries`` is honoured by providers declaring ``dead_letter``; others ignore it
        and leave dead-lettering to the caller. ``options`` are provider-specific (e.g.
        ``prefetch``); a provider refuses any it does not know with :class:`ValidationError`.
        """

    def dead_letter_topic(self, topic: str) -> str:
        """Where messages of ``topic`` go when they keep failing."""
        return f"{topic}{DEAD_LETTER_SUFFIX}"

    async def groups(self, topic: str) -> frozenset[str] | None:
        """The consumer groups on ``topic`` now, as :meth:`group_name` names them.

        ``None`` (the default) when the broker cannot tell (Kafka, RabbitMQ over AMQP). Used by
        ``offload`` to know which groups must ack a message before its stored body is removed.
        """
        return None

    def group_name(self, group: str) -> str:
        """The name :meth:`groups` gives ``group`` (a provider may make names safe)."""
        return group

    @property
    def max_body(self) -> int | None:
        """The largest message body the broker accepts, where known (bytes)."""
        return None
