"""Claim check for event bodies too big for the broker (``offload:`` on a broker resource).

Publishing a body over ``offload.over`` stores it in the storage resource ``offload.storage``
under ``<prefix>acked/<topic>/<id>`` (or ``<prefix>retained/…``, see below) and publishes a
small *reference* instead: header ``x-ductwork-offload: 1``, content type
``application/vnd.ductwork.offload+json``, and a JSON body::

    {"v": 1, "storage": "files", "key": "events/acked/orders/3f…", "size": 5242880,
     "content_type": "application/json", "groups": ["billing", "mailer"]}

The subscribe loop (:mod:`ductwork.processor._consume`) restores the body, and the content type,
before the handler runs. ``groups`` are the topic's consumer groups when the message was sent,
where the broker can list them: each group, once it acked, writes a marker
``<key>.acks/<group>``, and whichever sees every listed group marked removes the body and the
markers. Where the broker cannot list its groups (``groups: null``: kafka, rabbitmq) the body is
kept under ``<prefix>retained/`` and removed ``offload.retention`` after it was stored, by a
pruner every subscription of that broker runs (first at once, then every
``offload.prune_every``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ductwork._redact import get_logger
from ductwork.errors import NotFoundError, ProviderError, ValidationError
from ductwork.providers.broker import CONTENT_TYPE, DEAD_GROUP, Broker, Message, header
from ductwork.providers.storage import Storage

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.config.models import BrokerOffload

__all__ = ["OFFLOAD_HEADER", "REFERENCE_TYPE", "Offload", "Reference"]

log = get_logger("ductwork.events")

#: Marks a message whose body is a reference to a stored body (value: the format version).
OFFLOAD_HEADER = "x-ductwork-offload"
#: The content type of a reference body (the original's is in the reference).
REFERENCE_TYPE = "application/vnd.ductwork.offload+json"
#: On a dead letter of an offloaded message: the group that dead-lettered it (its ack is owed).
DEAD_FOR_HEADER = "x-ductwork-offload-group"

ACKED, RETAINED = "acked/", "retained/"


def now() -> float:
    """The pruner's clock (seconds since the epoch); tests replace it."""
    return time.time()


@dataclass(frozen=True)
class Reference:
    """What an offloaded message carries instead of its body."""

    storage: str
    key: str
    size: int
    content_type: str | None
    groups: tuple[str, ...] | None

    def encode(self) -> bytes:
        groups = None if self.groups is None else sorted(self.groups)
        doc = {"v": 1, "storage": self.storage, "key": self.key, "size": self.size}
        return json.dumps(
            {**doc, "content_type": self.content_type, "groups": groups}, separators=(",", ":")
        ).encode()

    @classmethod
    def decode(cls, body: bytes, where: str) -> Reference:
        """The reference in ``body``; :class:`ValidationError` naming ``where`` if it is none."""
        try:
            doc = json.loads(body)
            groups = doc.get("groups")
            return cls(
                storage=str(doc["storage"]),
                key=str(doc["key"]),
                size=int(doc["size"]),
                content_type=doc.get("content_type"),
                groups=None if groups is None else tuple(str(g) for g in groups),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValidationError(
                f"{where} has header {OFFLOAD_HEADER} but its body is not an offload "
                f"reference ({type(exc).__name__}: {exc})"
            ) from None


def offloaded(headers: Mapping[str, str]) -> bool:
    """Whether a message with ``headers`` carries a reference instead of its body."""
    return header(headers, OFFLOAD_HEADER) is not None


class Offload:
    """One broker resource's claim checks in one env: wrap on publish, restore on receive."""

    def __init__(
        self,
        client: Ductwork,
        broker: str,
        settings: BrokerOffload | None,
        provider: Broker,
        env: str | None,
    ) -> None:
        self.client = client
        self.broker = broker
        self.settings = settings
        self.provider = provider
        self.env = env

    async def storage(self, tag: str) -> Storage:
        provider = await self.client.provider("storage", tag, self.env)
        assert isinstance(provider, Storage)
        return provider

    def needed(self, body: bytes) -> bool:
        """Whether ``body`` is over the resource's ``offload.over`` (never without offload).

        Raises:
            ValidationError: ``offload.over`` is not below the broker's limit (checked on
                every publish, before anything is stored or sent).
        """
        settings = self.settings
        if settings is None:
            return False
        limit = self.provider.max_body
        if limit is not None and settings.over >= limit:
            raise ValidationError(
                f"brokers.{self.broker}.offload.over is {settings.over} bytes, not below the "
                f"broker's limit of {limit} bytes: lower it (e.g. 256KB)"
            )
        return len(body) > settings.over

    async def wrap(
        self, topic: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, dict[str, str]]:
        """Store ``body`` (as it is: no copy) and return the reference message to publish."""
        settings = self.settings
        assert settings is not None
        found = await self.provider.groups(topic)
        # no group yet: nobody should get it, but one may join meanwhile: kept by retention
        found = found - {DEAD_GROUP} if found else None
        groups = None if found is None else tuple(sorted(found))
        where = ACKED if groups is not None else RETAINED
        key = f"{settings.prefix}{where}{topic}/{uuid.uuid4().hex}"
        content_type = header(headers, CONTENT_TYPE)
        storage = await self.storage(settings.storage)
        await storage.save(key, body, content_type=content_type, metadata={"topic": topic})
        ref = Reference(settings.storage, key, len(body), content_type, groups)
        plain = {k: v for k, v in headers.items() if k.lower() != CONTENT_TYPE}
        return ref.encode(), {**plain, CONTENT_TYPE: REFERENCE_TYPE, OFFLOAD_HEADER: "1"}

    async def restore(self, msg: Message) -> tuple[bytes, dict[str, str], Reference]:
        """The stored body and the original headers of a reference message, read once.

        Raises:
            NotFoundError: the stored body is gone (the subscribe loop retries, then
                dead-letters the reference).
            ValidationError: the message is no reference.
        """
        ref = Reference.decode(msg.body, f"message {msg.id or '(no id)'} on {msg.topic!r}")
        storage = await self.storage(ref.storage)
        chunks: list[bytes] = []
        got = 0
        try:
            # one chunk of the whole size: the provider's read is the only copy made; and no
            # read past it (a read of ``size`` more bytes at the end allocates them first)
            stream = storage.stream(ref.key, chunk_size=max(ref.size, 1))
            try:
                async for chunk in stream:
                    chunks.append(chunk)
                    got += len(chunk)
                    if got >= ref.size:
                        break
            finally:
                close = getattr(stream, "aclose", None)  # a generator: close its file now
                if close is not None:
                    await close()
        except NotFoundError:
            raise NotFoundError(
                f"offloaded body {ref.key!r} of message {msg.id or '(no id)'} on "
                f"{msg.topic!r} is not in storage {ref.storage!r} (removed, or never stored)"
            ) from None
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        del chunks
        if len(body) != ref.size:
            raise ProviderError(
                f"offloaded body {ref.key!r} in storage {ref.storage!r} has {len(body)} bytes, "
                f"its reference says {ref.size}"
            )
        headers = {
            k: v
            for k, v in msg.headers.items()
            if k.lower() not in (OFFLOAD_HEADER, CONTENT_TYPE, DEAD_FOR_HEADER)
        }
        if ref.content_type is not None:
            headers[CONTENT_TYPE] = ref.content_type
        return body, headers, ref

    async def acked(self, ref: Reference, group: str) -> bool:
        """Record that ``group`` is done with ``ref``; remove the body once every group is.

        Returns whether the body was removed here. Nothing happens for a body kept by
        retention (its groups were not known) or for a group not listed when it was sent.
        """
        name = self.provider.group_name(group)
        if ref.groups is None or name not in ref.groups:
            return False
        storage = await self.storage(ref.storage)
        marks = f"{ref.key}.acks/"
        await storage.save(marks + quote(name, safe=""), b"")
        done = {item.key[len(marks) :] async for item in storage.iter_all(marks)}
        if not {quote(g, safe="") for g in ref.groups} <= done:
            return False
        await storage.delete(ref.key)
        for mark in done:  # every group acked: nobody writes here again
            await storage.delete(marks + mark)
        log.debug("offloaded body %s removed: every group acked", ref.key)
        return True

    async def prune(self, at: float | None = None) -> int:
        """Remove retained bodies (groups unknown) stored more than ``retention`` before ``at``."""
        settings = self.settings
        if settings is None:
            return 0
        cutoff = (now() if at is None else at) - settings.retention
        storage = await self.storage(settings.storage)
        removed = 0
        async for item in storage.iter_all(settings.prefix + RETAINED):
            if item.modified is not None and item.modified.timestamp() < cutoff:
                removed += int(await storage.delete(item.key))
        if removed:
            log.info("pruned %d offloaded body(ies) past retention on %s", removed, self.broker)
        return removed

    async def pruning(self) -> None:
        """The subscriber's pruner: a round at once, then every ``prune_every`` (runs forever)."""
        settings = self.settings
        assert settings is not None
        while True:
            try:
                await self.prune()
            except Exception as exc:  # storage down: the next round tries again
                log.warning("pruning offloaded bodies of %s failed: %s", self.broker, exc)
            await asyncio.sleep(settings.prune_every)

    def dead_marks(self, msg: Message, group: str) -> dict[str, Any]:
        """Extra headers of a dead letter of ``msg``: the group whose ack it owes."""
        return {DEAD_FOR_HEADER: group} if offloaded(msg.headers) else {}
