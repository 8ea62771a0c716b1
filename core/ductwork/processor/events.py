"""``dw.events``: publish events by tag and run handlers for them.

A handler that returns acks the message. One that raises has the message delivered again
after an exponential backoff with full jitter; after the broker resource's ``max_deliveries``
the message goes to the topic's dead-letter topic with the error in its headers (and is acked
only once that publish is confirmed). Dead letters are listed with :meth:`Events.dead_letters`
and sent back with :meth:`Events.replay_dead_letters`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from ductwork._hints import did_you_mean
from ductwork._lines import check_headers
from ductwork._redact import get_logger
from ductwork.config.models import BrokerResource
from ductwork.errors import NotFoundError, ValidationError
from ductwork.processor._base import JobOptions, Namespace, to_json
from ductwork.processor._offload import DEAD_FOR_HEADER, Offload, offloaded
from ductwork.providers.broker import (
    CONTENT_TYPE,
    DEAD_GROUP,
    IDEMPOTENCY_KEY,
    MARK_PREFIX,
    Broker,
    Delivery,
    Message,
    header,
    without_header,
)

if TYPE_CHECKING:
    from ductwork.engine.spec import Job

__all__ = ["Event", "Events"]

log = get_logger("ductwork.events")

JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Event:
    """A delivered event, as a handler sees it."""

    topic: str
    body: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    id: str | None = None
    attempt: int = 1

    def header(self, name: str) -> str | None:
        """The value of header ``name``, its case ignored (``Content-Type`` is ``content-type``)."""
        return header(self.headers, name.lower())

    @property
    def content_type(self) -> str | None:
        """The body's media type, as the ``content-type`` header (any case) gives it."""
        return header(self.headers, CONTENT_TYPE)

    @property
    def data(self) -> Any:
        """The body decoded as JSON when its content type says JSON, else the raw bytes.

        JSON is ``application/json`` or any ``+json`` type, with or without parameters
        (``application/json; charset=utf-8``), in any case.

        Raises:
            ValidationError: the content type says JSON but the body is not.
        """
        if not is_json(self.content_type):
            return self.body
        try:
            return json.loads(self.body)
        except ValueError as exc:  # JSONDecodeError, or bytes in no JSON encoding
            raise ValidationError(
                f"event {self.id or '(no id)'} on {self.topic!r} has content-type "
                f"{self.content_type!r} but its body is not JSON: {exc}"
            ) from None


Handler = Callable[[Event], Awaitable[Any]]


def is_json(content_type: str | None) -> bool:
    """Whether a content type is JSON: ``application/json`` or ``…+json``, parameters aside."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_TYPE or (media.startswith("application/") and media.endswith("+json"))


def with_content_type(
    headers: Mapping[str, str] | None, content_type: str | None
) -> dict[str, str]:
    """The caller's headers, with ``content-type`` set (replacing any spelling of it) if given."""
    headers = check_headers(headers, "event headers")  # names and one-line values, or refused
    if content_type is None:
        return headers
    return {**without_header(headers, CONTENT_TYPE), CONTENT_TYPE: content_type}


#: messages sent as they are; anything else is JSON
BINARY = (bytes, bytearray, memoryview)


def encode(message: Any) -> tuple[bytes, str | None]:
    """Bytes as they are; anything else as JSON (refused before any publish if it is not)."""
    if isinstance(message, BINARY):
        return bytes(message), None
    return to_json(message, "event message"), JSON_TYPE


class Events(Namespace):
    """Events on the product's message brokers."""

    section = "brokers"

    def topic(self, broker: str, event: str) -> str:
        """The topic an event tag maps to (the tag itself when the broker lists no topics)."""
        resource = self._client.config.resource(self.section, broker)
        assert isinstance(resource, BrokerResource)
        if event in resource.topics:
            return resource.topics[event]
        if not resource.topics or event in resource.topics.values():
            return event
        hint = did_you_mean(event, resource.topics)
        raise NotFoundError(
            f"broker {broker!r} has no event {event!r}{hint} "
            f"(events: {', '.join(sorted(resource.topics))})"
        )

    async def publish(
        self,
        broker: str,
        event: str,
        message: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        env: str | None = None,
        idempotency_key: str | None = None,
    ) -> str | None:
        """Publish ``message`` (JSON, or bytes) and return once the broker confirmed it.

        With ``idempotency_key`` (feature steps pass ``<run_id>:<step_key>``) the message
        carries it as header ``idempotency-key``, which brokers with a message id use as that
        id (NATS dedupes on it; see docs/events.md). A body over the resource's
        ``offload.over`` is stored first and a reference published (docs/events.md, "Big
        messages").
        """
        topic = self.topic(broker, event)
        body, content_type = encode(message)
        all_headers = with_content_type(headers, content_type)
        if idempotency_key is not None:
            all_headers = without_header(all_headers, IDEMPOTENCY_KEY)
            all_headers[IDEMPOTENCY_KEY] = idempotency_key
        provider = await self._provider(broker, env, Broker)
        offload = self._offload(broker, provider, env)
        if offload.needed(body):
            body, all_headers = await offload.wrap(topic, body, all_headers)
        return await provider.publish(topic, body, key=key, headers=all_headers)

    def _offload(self, broker: str, provider: Broker, env: str | None) -> Offload:
        resource = self._client.config.resource(self.section, broker)
        assert isinstance(resource, BrokerResource)
        return Offload(self._client, broker, resource.offload, provider, env)

    async def publish_many(
        self,
        broker: str,
        event: str,
        messages: Iterable[Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        env: str | None = None,
    ) -> int:
        """Publish many messages (all validated first); return how many once all are confirmed."""
        topic = self.topic(broker, event)
        encoded = [encode(m) for m in messages]
        kinds = {content_type for _, content_type in encoded}
        if len(kinds) > 1:
            raise ValidationError("publish_many takes all-JSON or all-bytes messages, not both")
        all_headers = with_content_type(headers, JSON_TYPE if kinds == {JSON_TYPE} else None)
        provider = await self._provider(broker, env, Broker)
        offload = self._offload(broker, provider, env)
        big = [body for body, _ in encoded if offload.needed(body)]
        if big:  # each a reference of its own; the rest go as one batch

            async def one(body: bytes) -> None:
                ref, ref_headers = await offload.wrap(topic, body, all_headers)
                await provider.publish(topic, ref, key=key, headers=ref_headers)

            await asyncio.gather(*(one(body) for body in big))
        small = [body for body, _ in encoded if not offload.needed(body)]
        if small:
            await provider.publish_many(topic, small, key=key, headers=all_headers)
        return len(encoded)

    async def dispatch(
        self,
        broker: str,
        event: str,
        message: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        **opts: Unpack[JobOptions],
    ) -> Job:
        """Publish ``message`` as a durable job (now, later or on a schedule)."""
        self.topic(broker, event)
        self._checked(broker, opts.get("env"))
        payload: dict[str, Any] = {"key": key, "headers": check_headers(headers, "event headers")}
        if isinstance(message, BINARY):
            payload["message_b64"] = base64.b64encode(message).decode()
        else:  # JSON, encoded (and refused if it cannot be) once, with the run's input
            payload["message"] = message
        return await self._submit("events.publish", f"{broker}:{event}", broker, payload, opts)

    async def subscribe(
        self,
        broker: str,
        event: str,
        handler: Handler,
        *,
        group: str,
        env: str | None = None,
        stop: asyncio.Event | None = None,
        limit: int | None = None,
        ready: asyncio.Event | None = None,
    ) -> int:
        """Run ``handler`` for each event; return how many were handled.

        Runs until ``stop`` is set, ``limit`` events were handled (acked or dead-lettered),
        the client (or the broker provider) is closed, or the task is cancelled (which raises
        ``CancelledError`` as usual). A lost connection is ridden out (see docs/events.md,
        "Outages"); past the resource's ``reconnect_timeout`` this raises
        :class:`ConnectionFailedError` naming the original cause.

        ``ready`` is set once the group is joined: events published after that reach it.
        A message whose handler is interrupted goes back to the group, never acked.
        """
        from ductwork.processor._consume import consume

        resource = self._client.config.resource(self.section, broker)
        assert isinstance(resource, BrokerResource)
        topic = self.topic(broker, event)
        provider = await self._provider(broker, env, Broker)
        offload = self._offload(broker, provider, env)
        return await consume(
            provider,
            resource,
            topic,
            group,
            handler,
            stop=stop,
            limit=limit,
            ready=ready,
            offload=offload,
        )

    async def dead_letters(
        self, broker: str, event: str, *, limit: int = 100, env: str | None = None
    ) -> list[Event]:
        """Dead letters of an event, oldest first (they stay dead-lettered)."""
        return await self._drain(broker, event, limit=limit, env=env, replay=False)

    async def replay_dead_letters(
        self, broker: str, event: str, *, limit: int = 100, env: str | None = None
    ) -> int:
        """Publish dead letters back to their topic (confirmed), then drop them; return count."""
        return len(await self._drain(broker, event, limit=limit, env=env, replay=True))

    async def _drain(
        self, broker: str, event: str, *, limit: int, env: str | None, replay: bool
    ) -> list[Event]:
        topic = self.topic(broker, event)
        provider = await self._provider(broker, env, Broker)
        offload = self._offload(broker, provider, env)
        sub = await provider.subscribe(provider.dead_letter_topic(topic), DEAD_GROUP)
        seen: list[Event] = []
        held: list[Delivery] = []
        try:
            while len(seen) < limit:
                delivery = await sub.receive(timeout=0.5)
                if delivery is None:
                    break
                msg = delivery.message
                seen.append(
                    Event(msg.topic, msg.body, msg.key, dict(msg.headers), msg.id, delivery.attempt)
                )
                if replay:
                    await self._replay(offload, topic, msg)
                    await delivery.ack()
                else:
                    held.append(delivery)
        finally:
            for delivery in held:
                await delivery.nack()
            await sub.close()
        return seen

    async def _replay(self, offload: Offload, topic: str, msg: Message) -> None:
        """Publish a dead letter back to ``topic`` (confirmed), without its marks.

        An offloaded one is stored anew for the groups there now; the old body is released
        for the group that dead-lettered it (and removed once none other still owes an ack).
        """
        headers = {k: v for k, v in msg.headers.items() if not k.lower().startswith(MARK_PREFIX)}
        if not offloaded(msg.headers):
            await offload.provider.publish(topic, msg.body, key=msg.key, headers=headers)
            return
        body, headers, ref = await offload.restore(msg)
        headers = {k: v for k, v in headers.items() if not k.lower().startswith(MARK_PREFIX)}
        if offload.settings is not None:
            ref_body, ref_headers = await offload.wrap(topic, body, headers)
            await offload.provider.publish(topic, ref_body, key=msg.key, headers=ref_headers)
        else:  # offload since switched off: the body goes as it is
            await offload.provider.publish(topic, body, key=msg.key, headers=headers)
        group = header(msg.headers, DEAD_FOR_HEADER)
        if group is not None:
            await offload.acked(ref, group)
