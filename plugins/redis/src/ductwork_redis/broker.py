"""``redis`` broker: topics are Redis Streams, groups are stream consumer groups.

Features: ``publish`` is one ``XADD`` (confirmed when the command returns; with ``maxlen`` set,
approximate ``MAXLEN ~`` trimming). The body, key and headers are stream fields (``body``,
``key``, ``h:<header>``); the message id is the entry id. ``subscribe`` runs ``XGROUP CREATE
… $ MKSTREAM`` (joining the group when it exists), so every message published after it returns
reaches the group, and reads with ``XREADGROUP`` under a consumer name unique to the
subscription. Ack is ``XACK``; nack makes the entry claimable by the group again (``attempt`` is
the entry's delivery count); a consumer that leaves returns its unsettled entries to the group,
and entries of a consumer that died are claimed by the others after ``claim_idle`` ms (see
:mod:`ductwork_redis._streams`).

Capabilities: ``dead_letter`` — with ``max_deliveries``, a message nacked that many times (or
whose consumers died that many times) is added to ``dead_letter_topic(topic)`` and acked, in one
``MULTI``; the group ``DEAD_GROUP`` is created on that stream when the subscription starts, so
no dead letter is missed. ``delayed_nack`` — ``nack(delay=…)`` sets the entry's idle time so it
becomes claimable ``delay`` seconds later; delays are capped at ``claim_idle``. ``ordering`` —
a lone consumer receives a stream's entries in publish order (all keys, not only the same key);
a nacked or returned entry comes back after.

Retention: acked entries stay in the stream (a stream is a log other groups may still read)
until trimmed: set ``maxlen`` to bound each stream. Trimming is by count, not by ack, so keep it
well above the backlog a slow group may have.

Configuration: the shared connection options (``url`` *or* ``host``/``port``/``db``/
``username``/``password``/``ssl``, the TLS files ``ca_file``/``cert_file``/``key_file``/
``key_password``, ``key_prefix`` for stream names, timeouts, pool) plus
``maxlen`` (None), ``claim_idle`` (30,000 ms), ``claim_interval`` (1 s: how often a waiting
consumer looks for claimable entries), ``prefetch`` (10 entries per read).

Errors: as the cache: ``ConnectionFailedError`` (also for a failed TLS handshake),
``AuthenticationError``, else ``ProviderError``, each naming resource, env, provider and
endpoint; ``ConfigError`` for a TLS file that cannot be read.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from ductwork.errors import ProviderError, ValidationError
from ductwork.providers.base import Options, ProviderContext
from ductwork.providers.broker import (
    DEAD_GROUP,
    Broker,
    Subscription,
    dead_letter_marks,
    refuse_options,
)
from pydantic import Field
from redis import exceptions as rex
from redis.asyncio import Redis

from ductwork_redis._common import (
    RedisOptions,
    WaitingPool,
    build_pool,
    endpoint_of,
    reader_client,
    tls_context,
    translate,
)
from ductwork_redis._streams import CLAIM, RETURN, RedisSubscription

__all__ = ["RedisBroker", "RedisBrokerOptions"]

_FAILURES = (rex.RedisError, OSError)
# In the class body ``Options`` names the options class; this is the base, for __init__.
_AnyOptions = Options


class RedisBrokerOptions(RedisOptions):
    """Options of the ``redis`` broker."""

    maxlen: int | None = Field(None, ge=1)
    claim_idle: int = Field(30_000, ge=1)
    claim_interval: float = Field(1.0, gt=0)
    prefetch: int = Field(10, ge=1)


class RedisBroker(Broker[RedisBrokerOptions]):
    """Redis Streams with consumer groups."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"dead_letter", "delayed_nack", "ordering"})

    def __init__(
        self, options: _AnyOptions | None = None, *, context: ProviderContext | None = None
    ) -> None:
        super().__init__(options, context=context)
        self._prefix = self.options.key_prefix
        self._maxlen = self.options.maxlen
        self._endpoint = endpoint_of(self.options)
        # Read once, here: a TLS file that cannot be read fails before anything connects.
        self._tls = tls_context(self.options, self.context)
        self._connect()

    def _connect(self) -> None:
        # A fresh pool per open(): its connections and locks belong to the loop that opens it.
        self._pool: WaitingPool = build_pool(self.options, self._tls)
        self.redis: Redis = Redis.from_pool(self._pool)
        self.claim_script = self.redis.register_script(CLAIM)
        self.return_script = self.redis.register_script(RETURN)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def native(self) -> Redis:
        """The ``redis.asyncio.Redis`` client (stream names carry ``key_prefix`` there)."""
        return self.redis

    def fail(self, exc: BaseException, doing: str) -> ProviderError:
        """The ductwork error for ``exc``."""
        return translate(self, exc, doing)

    def stream(self, topic: str) -> str:
        """The stream key of ``topic``."""
        return self._prefix + topic

    async def open(self) -> None:
        self._connect()
        await self.ping()

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except _FAILURES as exc:
            raise self.fail(exc, "ping") from exc

    async def close(self) -> None:
        await self.close_subscriptions()
        try:
            await self.redis.aclose()
        except _FAILURES as exc:
            raise self.fail(exc, "close") from exc

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        fields: dict[Any, Any] = {b"body": bytes(body)}
        if key is not None:
            fields[b"key"] = key
        if headers:
            for name, value in headers.items():
                fields["h:" + name] = value
        try:
            entry_id: Any = await self.redis.xadd(
                self._prefix + topic, fields, maxlen=self._maxlen, approximate=True
            )
        except _FAILURES as exc:
            raise self.fail(exc, f"XADD to {topic!r}") from exc
        return entry_id.decode()  # type: ignore[no-any-return] # bytes: responses not decoded

    async def groups(self, topic: str) -> frozenset[str] | None:
        """The stream's consumer groups (none while the stream does not exist)."""
        stream = self._prefix + topic
        try:
            infos: Any = await self.redis.xinfo_groups(stream)
        except rex.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return frozenset()
            raise self.fail(exc, f"XINFO GROUPS {stream!r}") from exc
        except _FAILURES as exc:
            raise self.fail(exc, f"XINFO GROUPS {stream!r}") from exc
        names = (info.get("name", info.get(b"name")) for info in infos)
        return frozenset(n.decode() if isinstance(n, bytes) else str(n) for n in names)

    async def _create_group(self, stream: str, group: str, start: str) -> None:
        try:
            await self.redis.xgroup_create(stream, group, id=start, mkstream=True)
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # an existing group is joined, not reset
                raise self.fail(exc, f"XGROUP CREATE {group!r} on {stream!r}") from exc
        except _FAILURES as exc:
            raise self.fail(exc, f"XGROUP CREATE {group!r} on {stream!r}") from exc

    async def subscribe(
        self, topic: str, group: str, *, max_deliveries: int | None = None, **options: Any
    ) -> Subscription:
        refuse_options("redis", options)
        if not topic or not group:
            raise ValidationError("topic and group must be non-empty")
        if max_deliveries is not None and max_deliveries < 1:
            raise ValidationError(f"max_deliveries must be at least 1, not {max_deliveries}")
        if max_deliveries is not None:
            # from the stream's start: the dead-letter stream holds nothing but dead letters
            await self._create_group(self.stream(self.dead_letter_topic(topic)), DEAD_GROUP, "0")
        await self._create_group(self.stream(topic), group, "$")
        consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        sub = RedisSubscription(
            self, topic, group, consumer, max_deliveries, reader_client(self._pool)
        )
        return self.track(sub)

    async def dead_letter(
        self, sub: RedisSubscription, entry_id: bytes, fields: dict[bytes, bytes], attempt: int
    ) -> None:
        """Add the entry to the dead-letter stream and ack it, atomically."""
        letter: dict[Any, Any] = dict(fields)
        for name, value in dead_letter_marks(sub.topic, attempt).items():
            letter[f"h:{name}".encode()] = value
        dead = self.stream(self.dead_letter_topic(sub.topic))
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xadd(dead, letter, maxlen=self._maxlen, approximate=True)
                pipe.xack(sub.stream, sub.group, entry_id)
                await pipe.execute()
        except _FAILURES as exc:
            raise self.fail(exc, f"dead-lettering from {sub.stream!r}") from exc
