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
import difflib
import json
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from ductwork._redact import get_logger
from ductwork.config.models import BrokerResource
from ductwork.errors import NotFoundError, ValidationError
from ductwork.processor._base import JobOptions, Namespace
from ductwork.providers.broker import (
    CONTENT_TYPE,
    DEAD_GROUP,
    MARK_PREFIX,
    Broker,
    Delivery,
    dead_letter_marks,
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
    if content_type is None:
        return dict(headers or {})
    return {**without_header(headers or {}, CONTENT_TYPE), CONTENT_TYPE: content_type}


def encode(message: Any) -> tuple[bytes, str | None]:
    """Bytes as they are; anything else as JSON (refused before any publish if it is not)."""
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message), None
    try:
        return json.dumps(message, separators=(",", ":")).encode(), JSON_TYPE
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"event message is not JSON-serialisable: {exc}") from None


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
        close = difflib.get_close_matches(event, list(resource.topics), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
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
    ) -> str | None:
        """Publish ``message`` (JSON, or bytes) and return once the broker confirmed it."""
        topic = self.topic(broker, event)
        body, content_type = encode(message)
        all_headers = with_content_type(headers, content_type)
        provider = await self._provider(broker, env, Broker)
        return await provider.publish(topic, body, key=key, headers=all_headers)

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
        return await provider.publish_many(
            topic, [body for body, _ in encoded], key=key, headers=all_headers
        )

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
        body, content_type = encode(message)
        self._checked(broker, opts.get("env"))
        payload: dict[str, Any] = {"key": key, "headers": dict(headers or {})}
        if content_type is None:
            payload["message_b64"] = base64.b64encode(body).decode()
        else:
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

        Runs until ``stop`` is set, ``limit`` events were handled (acked or dead-lettered), or
        the task is cancelled.

        ``ready`` is set once the group is joined: events published after that reach it.
        A message whose handler is interrupted goes back to the group, never acked.
        """
        resource = self._client.config.resource(self.section, broker)
        assert isinstance(resource, BrokerResource)
        topic = self.topic(broker, event)
        provider = await self._provider(broker, env, Broker)
        # Make sure dead letters are kept even before anyone reads them.
        dead = await provider.subscribe(provider.dead_letter_topic(topic), DEAD_GROUP)
        await dead.close()
        sub = await provider.subscribe(topic, group, max_deliveries=resource.max_deliveries)
        if ready is not None:
            ready.set()
        handled = 0
        try:
            while (stop is None or not stop.is_set()) and (limit is None or handled < limit):
                delivery = await sub.receive(timeout=0.2 if stop is not None else None)
                if delivery is None:
                    continue
                if await self._handle(provider, resource, delivery, handler):
                    handled += 1
        finally:
            await sub.close()
        return handled

    async def _handle(
        self, provider: Broker, resource: BrokerResource, delivery: Delivery, handler: Handler
    ) -> bool:
        """Run the handler on one delivery; ``True`` once the message is done with."""
        msg = delivery.message
        event = Event(msg.topic, msg.body, msg.key, dict(msg.headers), msg.id, delivery.attempt)
        try:
            await handler(event)
        except asyncio.CancelledError:
            await delivery.nack()
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if delivery.attempt >= resource.max_deliveries:
                log.warning(
                    "dead-lettering %s after %d deliveries: %s", msg.topic, delivery.attempt, error
                )
                headers = {**msg.headers, **dead_letter_marks(msg.topic, delivery.attempt, error)}
                await provider.publish(
                    provider.dead_letter_topic(msg.topic), msg.body, key=msg.key, headers=headers
                )
                await delivery.ack()
                return True
            backoff = min(
                resource.retry_delay_max, resource.retry_delay * 2 ** (delivery.attempt - 1)
            )
            delay = random.uniform(0, backoff)  # full jitter
            log.info(
                "handler failed on %s (delivery %d), retrying in %.2fs: %s",
                msg.topic,
                delivery.attempt,
                delay,
                error,
            )
            if provider.supports("delayed_nack"):
                await delivery.nack(delay=delay)
            else:  # the broker cannot hold it back: this consumer waits instead
                await asyncio.sleep(delay)
                await delivery.nack()
            return False
        await delivery.ack()
        return True

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
                    headers = {
                        k: v
                        for k, v in msg.headers.items()
                        if not k.lower().startswith(MARK_PREFIX)
                    }
                    await provider.publish(topic, msg.body, key=msg.key, headers=headers)
                    await delivery.ack()
                else:
                    held.append(delivery)
        finally:
            for delivery in held:
                await delivery.nack()
            await sub.close()
        return seen
