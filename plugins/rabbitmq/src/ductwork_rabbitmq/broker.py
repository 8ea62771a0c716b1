"""``rabbitmq`` broker: topics on a durable topic exchange, consumer groups as shared queues.

Features:
    * Confirmed publish: the publish channel runs in publisher-confirm mode and
      :meth:`RabbitMQBroker.publish` returns only once RabbitMQ acked the message (persistent,
      so it is on disk in every durable queue it was routed to). A broker nack raises
      :class:`~ductwork.errors.ProviderError`; so does a return when ``mandatory`` is set and no
      group is bound to the topic. One robust connection (it reconnects by itself) and one
      publish channel are held and reused; nothing is opened per publish.
    * Wire format: messages carry the AMQP properties ``content_type`` (and, for older
      ductwork, the ``content-type`` header), ``message_id`` (the id ``publish`` returns),
      ``timestamp`` and ``app_id``; a delivery's ``content_type`` and ``message_id`` become its
      message's ``content-type`` header and id, whoever published it. The key is the
      ``x-ductwork-key`` header (its name read in any case).
    * Consumer groups: group ``g`` on topic ``t`` is the durable queue ``<exchange>:t:g`` (a
      quorum queue by default), bound to the exchange with routing key ``t``. Every group gets
      every message published after it was first joined; members of a group share its queue.
      Each subscription has its own channel, so closing it hands its unacked deliveries back
      to the group.
    * ``attempt``: quorum queues count deliveries (``x-delivery-count``); messages a consumer
      re-publishes (delayed nacks, classic-queue nacks) carry the count so far in a header.
    * ``dead_letter``: a delivery nacked for the ``max_deliveries``-th time is published
      (confirmed) to :meth:`dead_letter_topic` and only then acked, so it is never lost (it may
      be duplicated if the process dies between the two). The dead-letter group ``DEAD_GROUP``
      is declared at subscribe time so dead letters wait for a reader. A delivery already past
      ``max_deliveries`` when it arrives (its consumers kept crashing) is dead-lettered too.
    * ``delayed_nack``: the message is re-published to a per-delay classic queue with that TTL,
      which dead-letters it back to the group's queue when it expires; then the original is
      acked.
    * ``ordering``: RabbitMQ keeps publish order per queue, so one consumer of a group sees
      messages (same key or not) in publish order. With several consumers, or after a nack,
      no order is promised.

Configuration: either ``url`` (``amqp://user:password@host:5672/vhost``, a secret) or ``host``,
``port``, ``username``, ``password``, ``virtual_host``, ``ssl``; TLS (``ssl: true`` or
``amqps://``) with ``ca_file``, ``cert_file``, ``key_file``, ``key_password`` (see
:mod:`ductwork.providers.tls`; server certificate and name checked), unless the URL carries
aiormq's own ``cafile``/``certfile``/``keyfile``/``no_verify_ssl`` parameters; plus ``exchange``,
``queue_type``, ``prefetch``, ``connect_timeout``, ``reconnect_interval``, ``publish_timeout``,
``mandatory``, ``queue_expires``, ``app_id``. Topics are routing keys: ``*`` and ``#`` in a
subscribed topic are RabbitMQ's wildcards.

Errors: refused, unreachable or timed-out connections, a failed TLS handshake and lost channels
raise :class:`~ductwork.errors.ConnectionFailedError`; a TLS file that cannot be read
:class:`~ductwork.errors.ConfigError` before connecting; refused logins
:class:`~ductwork.errors.AuthenticationError`; anything else from aio-pika
:class:`~ductwork.errors.ProviderError`. Messages never contain the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aio_pika
import aiormq
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import FieldTable
from ductwork._redact import get_logger
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    DuctworkError,
    ProviderError,
    ValidationError,
)
from ductwork.providers import Broker, Message, Subscription
from ductwork.providers.broker import (
    CONTENT_TYPE,
    DEAD_GROUP,
    IDEMPOTENCY_KEY,
    dead_letter_marks,
    header,
)
from ductwork.providers.tls import client_context, tls_failure
from yarl import URL

from ductwork_rabbitmq._options import RabbitMQBrokerOptions
from ductwork_rabbitmq._outage import quiet_reconnect_lines
from ductwork_rabbitmq._subscription import (
    KEY_HEADER,
    PRIOR_HEADER,
    TOPIC_HEADER,
    AMQPMessage,
    RabbitMQSubscription,
)

__all__ = ["RabbitMQBroker", "RabbitMQBrokerOptions"]

log = get_logger("ductwork.rabbitmq")

_PERSISTENT = aio_pika.DeliveryMode.PERSISTENT
_MAX_NAME = 200  # bytes; RabbitMQ allows 255, the rest is kept for the ``:delay:<ms>`` suffix
_REDECLARE = 30.0  # seconds between declarations of one delay queue


class RabbitMQBroker(Broker[RabbitMQBrokerOptions]):
    """RabbitMQ through aio-pika: a topic exchange, a durable queue per consumer group."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"dead_letter", "delayed_nack", "ordering"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._lost = False  # the connection is down; aio-pika reconnects
        self._exchange: AbstractExchange | None = None
        self._default: AbstractExchange | None = None
        # Hot-path settings, read once.
        self._mandatory = self.options.mandatory
        self._timeout = self.options.publish_timeout
        self._app_id = self.options.app_id
        self._delay_queues: dict[str, float] = {}  # name -> when last declared (monotonic)

    @property
    def endpoint(self) -> str:
        opts = self.options
        if opts.url is not None:
            url = URL(opts.url.get_secret_value())
            return str(url.with_user(None).with_query(None).with_fragment(None))
        vhost = "" if opts.virtual_host == "/" else quote(opts.virtual_host, safe="")
        return f"amqp{'s' if opts.ssl else ''}://{opts.host}:{opts.port}/{vhost}"

    @property
    def native(self) -> AbstractRobustConnection:
        """The aio-pika robust connection."""
        return self._ready()[0]

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._connection is not None:
            return
        opts = self.options
        props: FieldTable = {
            "connection_name": f"ductwork {self.context.resource} ({self.context.env})"
        }
        # Read before anything connects: a TLS file that cannot be read is a ConfigError.
        tls = None
        if opts.uses_tls and not opts.url_tls_parameters:
            tls = client_context(opts, self.context)
        try:
            if opts.url is not None:
                connection = await aio_pika.connect_robust(
                    opts.url.get_secret_value(),
                    timeout=opts.connect_timeout,
                    reconnect_interval=opts.reconnect_interval,
                    client_properties=props,
                    ssl_context=tls,
                )
            else:
                connection = await aio_pika.connect_robust(
                    host=opts.host,
                    port=opts.port,
                    login=opts.username,
                    password=opts.password.get_secret_value(),
                    virtualhost=opts.virtual_host,
                    ssl=opts.ssl,
                    ssl_context=tls,
                    timeout=opts.connect_timeout,
                    reconnect_interval=opts.reconnect_interval,
                    client_properties=props,
                )
        except Exception as exc:
            raise self.fail(exc, "cannot connect to RabbitMQ") from exc
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await channel.declare_exchange(
                opts.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except Exception as exc:
            await connection.close()
            raise self.fail(exc, f"cannot declare topic exchange {opts.exchange!r}") from exc
        self._connection, self._channel = connection, channel
        self._default = channel.default_exchange
        connection.reconnect_callbacks.add(self._reconnected)
        connection.close_callbacks.add(self._connection_lost)
        quiet_reconnect_lines()

    def _connection_lost(self, *_: Any) -> None:
        if self._connection is not None and not self._lost:  # not our own close()
            self._lost = True
            log.warning(
                "rabbitmq: connection lost: resource=%s env=%s endpoint=%s",
                self.context.resource,
                self.context.env,
                self.endpoint,
            )

    async def _reconnected(self, *_: Any) -> None:
        """After a reconnect: replace the publishing channel if aio-pika did not restore it."""
        if self._lost:
            self._lost = False
            log.info(
                "rabbitmq: connection back: resource=%s env=%s endpoint=%s",
                self.context.resource,
                self.context.env,
                self.endpoint,
            )
        connection, channel = self._connection, self._channel
        if connection is None or channel is None or not channel.is_closed:
            return
        try:
            fresh = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await fresh.declare_exchange(
                self.options.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except Exception as exc:  # the next reconnect tries again; publishes fail meanwhile
            log.info("RabbitMQ: cannot reopen the publishing channel: %s", exc)
            return
        if self._connection is connection:
            self._channel, self._exchange = fresh, exchange
            self._default = fresh.default_exchange
        else:  # closed meanwhile
            await fresh.close()

    async def close(self) -> None:
        await self.close_subscriptions()
        connection, self._connection = self._connection, None
        self._channel = self._exchange = self._default = None
        if connection is not None:
            await connection.close()

    async def ping(self) -> None:
        connection, channel = self._ready()
        try:
            await asyncio.wait_for(connection.ready(), self.options.connect_timeout)
            await channel.get_exchange(self.options.exchange, ensure=True)
        except Exception as exc:
            raise self.fail(exc, "RabbitMQ did not answer") from exc

    # -- publish ---------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        exchange = self._exchange
        if exchange is None:
            raise self.error("the broker is not open: call open() first")
        # The content-type header stays as well as the property: older ductwork reads only it.
        amqp_headers: dict[str, Any] = dict(headers) if headers else {}
        # a feature step's publish: its ``<run_id>:<step_key>`` is the id, so a re-run is known
        message_id = (header(amqp_headers, IDEMPOTENCY_KEY) if amqp_headers else None) or (
            uuid.uuid4().hex
        )
        if key is not None:
            amqp_headers[KEY_HEADER] = key
        message = aio_pika.Message(
            body,
            headers=amqp_headers,
            content_type=header(amqp_headers, CONTENT_TYPE) if amqp_headers else None,
            message_id=message_id,
            timestamp=time.time(),
            app_id=self._app_id,
            delivery_mode=_PERSISTENT,
        )
        try:
            channel = self._channel
            if channel is not None and channel.is_closed:  # reconnecting: wait, within timeout
                await asyncio.wait_for(channel.ready(), self._timeout)
            await exchange.publish(message, topic, mandatory=self._mandatory, timeout=self._timeout)
        except Exception as exc:
            raise self.fail(exc, f"publish to {topic!r} not confirmed") from exc
        return message_id

    async def republish(
        self, message: Message, routing_key: str, extra: Mapping[str, str], *, direct: bool
    ) -> None:
        """Publish a copy of a delivered message, confirmed; raise if it cannot be routed.

        ``direct`` sends it through the default exchange to the queue named ``routing_key``.
        """
        exchange = self._default if direct else self._exchange
        if exchange is None:
            raise self.error("the broker is closed")
        headers: dict[str, Any] = {**message.headers, **extra}
        if message.key is not None:
            headers[KEY_HEADER] = message.key
        # A copy keeps the original's properties: a dead letter still says who sent it, when.
        received = message if isinstance(message, AMQPMessage) else None
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=header(message.headers, CONTENT_TYPE),
            message_id=message.id,
            timestamp=received.timestamp if received else time.time(),
            app_id=received.app_id if received else self._app_id,
            delivery_mode=_PERSISTENT,
        )
        try:
            await exchange.publish(copy, routing_key, mandatory=True, timeout=self._timeout)
        except Exception as exc:
            raise self.fail(exc, f"re-publishing a message of {message.topic!r} failed") from exc

    async def dead_letter(self, message: Message, attempt: int) -> None:
        """Move a copy of ``message`` to its dead-letter topic (the caller then acks it)."""
        extra = dead_letter_marks(message.topic, attempt)
        await self.republish(message, self.dead_letter_topic(message.topic), extra, direct=False)

    async def delay(self, queue: str, message: Message, attempt: int, delay: float) -> None:
        """Hold a copy of ``message`` back ``delay`` seconds, then put it on ``queue``."""
        ms = max(1, round(delay * 1000))
        name = f"{queue}:delay:{ms}"
        now = time.monotonic()
        if now - self._delay_queues.get(name, -_REDECLARE) >= _REDECLARE:
            arguments: FieldTable = {
                "x-queue-type": "classic",
                "x-message-ttl": ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue,
                # Unused (never consumed) for this long after its last declaration, it goes:
                # later than any message published within _REDECLARE of that declaration.
                "x-expires": ms + 2 * round(_REDECLARE * 1000),
            }
            try:
                # The raw channel: aio-pika's robust one would keep every declared queue for
                # re-declaration after a reconnect, one more object per call.
                underlay = await self._ready()[1].get_underlay_channel()
                await underlay.queue_declare(name, durable=True, arguments=arguments)
            except Exception as exc:
                raise self.fail(exc, f"cannot declare delay queue {name!r}") from exc
            self._delay_queues[name] = now
        extra = {TOPIC_HEADER: message.topic, PRIOR_HEADER: str(attempt)}
        await self.republish(message, name, extra, direct=True)

    # -- subscribe -------------------------------------------------------------------------

    def queue_name(self, topic: str, group: str) -> str:
        """The durable queue of ``group`` on ``topic``."""
        name = f"{self.options.exchange}:{topic}:{group}"
        raw = name.encode()
        if ":" not in topic and ":" not in group and len(raw) <= _MAX_NAME:
            return name
        # Ambiguous or too long: keep a readable prefix, make it unique with a digest.
        digest = hashlib.sha256(f"{topic}\0{group}".encode()).hexdigest()[:16]
        prefix = raw[: _MAX_NAME - 17].decode(errors="ignore")
        return f"{prefix}:{digest}"

    def queue_arguments(self) -> dict[str, Any]:
        """Arguments of every group queue (the same for all, so re-declaring never conflicts)."""
        arguments: dict[str, Any] = {"x-queue-type": self.options.queue_type}
        if self.options.queue_expires is not None:
            arguments["x-expires"] = max(1, round(self.options.queue_expires * 1000))
        return arguments

    async def subscribe(
        self, topic: str, group: str, *, max_deliveries: int | None = None, **options: Any
    ) -> Subscription:
        unknown = sorted(set(options) - {"prefetch"})
        if unknown:
            raise ValidationError(
                f"unknown subscribe options: {', '.join(unknown)} (known: prefetch)"
            )
        if not topic or not group:
            raise ValidationError("topic and group must not be empty")
        if max_deliveries is not None and max_deliveries < 1:
            raise ValidationError(f"max_deliveries must be at least 1, not {max_deliveries}")
        prefetch = int(options.get("prefetch", self.options.prefetch))
        connection = self._ready()[0]
        exchange = self.options.exchange
        queue_name = self.queue_name(topic, group)
        try:
            channel = await connection.channel(publisher_confirms=False)
        except Exception as exc:
            raise self.fail(exc, "cannot open a consumer channel") from exc
        try:
            await channel.set_qos(prefetch_count=prefetch)
            if max_deliveries is not None:
                # Dead letters need a queue before the first one is published.
                dead_topic = self.dead_letter_topic(topic)
                dead = await channel.declare_queue(
                    self.queue_name(dead_topic, DEAD_GROUP),
                    durable=True,
                    arguments=self.queue_arguments(),
                )
                await dead.bind(exchange, dead_topic)
            queue = await channel.declare_queue(
                queue_name, durable=True, arguments=self.queue_arguments()
            )
            await queue.bind(exchange, topic)
            sub = RabbitMQSubscription(self, channel, queue, topic, max_deliveries)
            await sub.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            raise self.fail(exc, f"cannot join group {group!r} on {topic!r}") from exc
        return self.track(sub)

    # -- helpers ---------------------------------------------------------------------------

    def _ready(self) -> tuple[AbstractRobustConnection, AbstractRobustChannel]:
        if self._connection is None or self._channel is None:
            raise self.error("the broker is not open: call open() first")
        return self._connection, self._channel

    def fail(self, exc: BaseException, what: str) -> DuctworkError:
        """The ductwork error for ``exc``, raised while doing ``what``; no secret in it."""
        if isinstance(exc, DuctworkError):
            return exc
        detail = self._scrub(f"{type(exc).__name__}: {exc}")
        cls: type[ProviderError] = ProviderError
        handshake = tls_failure(exc)
        if handshake is not None:
            return self.error(f"{what}: {handshake}", ConnectionFailedError)
        if isinstance(
            exc,
            aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError,
        ):
            cls = AuthenticationError
            detail = "the credentials were refused"
        elif isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
            detail += " (it exists with other settings: another queue_type or exchange type?)"
        elif isinstance(exc, aio_pika.exceptions.PublishError):
            detail = "no queue is bound to that topic (returned as unroutable)"
        elif isinstance(exc, aio_pika.exceptions.DeliveryError):
            detail = "RabbitMQ refused the message (nack)"
        elif isinstance(
            exc,
            TimeoutError
            | ConnectionError
            | OSError
            | aiormq.exceptions.ChannelInvalidStateError
            | aiormq.exceptions.ConnectionClosed,
        ):
            cls = ConnectionFailedError
        return self.error(f"{what}: {detail}", cls)

    def _scrub(self, text: str) -> str:
        secrets = [self.options.password.get_secret_value()]
        if self.options.url is not None:
            secrets.append(self.options.url.get_secret_value())
            password = URL(self.options.url.get_secret_value()).password
            if password:
                secrets.append(password)
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= 3:  # shorter would mask ordinary words
                text = text.replace(secret, "***")
        return text
