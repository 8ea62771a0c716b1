"""``kafka`` broker: topics, consumer groups and confirmed publishes on Apache Kafka.

Features:
    * Confirmed publish: an idempotent producer (``enable.idempotence``, ``acks=all``);
      :meth:`KafkaBroker.publish` returns the message id (``"partition:offset"``) once the
      delivery report confirmed the write, and :meth:`KafkaBroker.publish_many` confirms a
      whole batch with one future. One thread produces and serves the delivery reports;
      publishes made in the same event-loop iteration reach it as one hand-over, each with
      its own delivery report, and are sent at once (``linger.ms`` only applies when set in
      ``producer_config``). A full local queue makes that thread wait, never the event loop.
    * Consumer groups are Kafka consumer groups (cooperative-sticky assignment). Offsets are
      committed only after ack, and only up to the first unacked message of a partition.
    * nack redelivers from the subscription's memory with ``attempt`` one higher; with
      ``delay`` it is held back that long (``delayed_nack``).
    * Dead letters (``dead_letter``): with ``max_deliveries``, a message nacked that many times
      is published to ``<topic>.dead-letter`` (headers ``x-ductwork-dead-letter-from``,
      ``x-ductwork-deliveries``) and acked once that publish is confirmed. Group
      ``ductwork-dead-letters`` starts from the earliest offset, so no dead letter is lost.
    * Topics are created with ``num_partitions``/``replication_factor`` on first use.

Ordering: messages are produced in the order of the calls that published them (a task's
publishes in its order; a ``publish_many`` after the single publishes made before it).
Messages with the same key go to the same partition and a partition is consumed in offset
order, so a lone consumer sees them in publish order (the idempotent producer keeps the order
through retries). A nacked message comes back after those already fetched.

Delivery: at least once. Messages fetched but not acked when a subscription closes, or when
its partition moves to another member, are delivered again by the next owner. ``attempt``
counts deliveries within one subscription: Kafka keeps no delivery count, so a redelivery
by another member starts again at 1.

Closing waits (up to ``delivery_timeout_ms``) for the confirmations of every publish already
made, then fails the rest: no publisher is left waiting.

Configuration: see :class:`KafkaBrokerOptions`; TLS (the shared ``ca_file``, ``cert_file``,
``key_file``, ``key_password``) and SASL are turned into librdkafka settings in
:mod:`ductwork_kafka._options`. Errors: unreachable brokers, timeouts and failed TLS
handshakes (saying why) raise :class:`~ductwork.ConnectionFailedError`, rejected SASL
credentials :class:`~ductwork.AuthenticationError` (both at once from ``open``/``ping``, not
after ``connect_timeout``), a TLS file that is missing, unreadable or not PEM
:class:`~ductwork.ConfigError` before anything connects, a failed delivery or a message the
producer refuses (larger than ``message.max.bytes``, say) :class:`~ductwork.ProviderError`;
each publish raises for its own message only.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import admin as kafka_admin
from confluent_kafka.admin import AdminClient
from ductwork.errors import (
    AuthenticationError,
    ConfigError,
    ConnectionFailedError,
    ProviderError,
    ValidationError,
)
from ductwork.providers.base import Options as BaseOptions
from ductwork.providers.broker import DEAD_GROUP, Broker, Subscription, dead_letter_marks

from ductwork_kafka._consumer import KafkaDelivery, KafkaSubscription
from ductwork_kafka._log import ClientLog
from ductwork_kafka._options import (
    KafkaBrokerOptions,
    check_tls_files,
    security_config,
    tls_problem,
    unreachable_reason,
)
from ductwork_kafka._producer import Batch, Headers, Outcome, ProducerBridge

__all__ = ["KafkaBroker", "KafkaBrokerOptions"]

log = logging.getLogger("ductwork.kafka")

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_UNREACHABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError.REQUEST_TIMED_OUT,
}
_REFUSED = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
# ping asks for metadata in slices this long (s), so a refused login or TLS handshake, which
# librdkafka would retry until the timeout, fails open() as soon as error_cb reports it.
_PING_SLICE = 0.25


def _text(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


class KafkaBroker(Broker[KafkaBrokerOptions]):
    """Apache Kafka (or any Kafka-protocol broker) through confluent-kafka."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"dead_letter", "delayed_nack", "ordering"})

    def __init__(self, options: BaseOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._admin: AdminClient | None = None
        self._bridge: ProducerBridge | None = None
        self._topics: set[str] = set()
        self._creating: dict[str, asyncio.Future[None]] = {}
        self._auth_failed = False
        self._client_log = ClientLog(self)
        self._retired: set[asyncio.Future[int]] = set()  # failed producers being closed
        # What error_cb last said, by kind ("login", "tls", "network"): ping words its error so.
        self._reported: dict[str, str] = {}

    @property
    def endpoint(self) -> str:
        return f"kafka://{self.options.bootstrap_servers}"

    @property
    def native(self) -> Any:
        """The :class:`confluent_kafka.Producer` (open the broker first)."""
        return self._producer_bridge().producer

    # -- configuration ----------------------------------------------------------------------

    def _common_config(self) -> dict[str, Any]:
        o = self.options
        return {
            "bootstrap.servers": o.bootstrap_servers,
            "client.id": o.client_id,
            "logger": self._client_log,
            "error_cb": self._on_client_error,
            **security_config(o, self.context),
        }

    def _producer_config(self) -> dict[str, Any]:
        o = self.options
        return {
            **self._common_config(),
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": o.delivery_timeout_ms,
            **o.producer_config,
        }

    @property
    def max_body(self) -> int | None:
        """The producer's ``message.max.bytes`` (librdkafka's default 1000000 unless set)."""
        return int(self.options.producer_config.get("message.max.bytes", 1_000_000))

    def _consumer_config(self, group: str, earliest: bool) -> dict[str, Any]:
        o = self.options
        return {
            **self._common_config(),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if earliest else "latest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": o.session_timeout_ms,
            "heartbeat.interval.ms": o.heartbeat_interval_ms,
            "max.poll.interval.ms": o.max_poll_interval_ms,
            **o.consumer_config,
        }

    # -- errors -------------------------------------------------------------------------------

    def _on_client_error(self, err: KafkaError) -> None:
        if err.code() in _REFUSED:
            self._auth_failed = True
            self._reported["login"] = err.str()
        elif err.code() == KafkaError._SSL:
            self._reported["tls"] = err.str()
        elif err.code() in (KafkaError._TRANSPORT, KafkaError._RESOLVE):
            self._reported["network"] = err.str()
        log.debug("Kafka client error: %s", err.str())
        if err.fatal() and self._bridge is not None:
            # e.g. the idempotent producer fenced by a restarted broker: every later publish
            # would fail, so a new producer takes over (what was in flight fails, unconfirmed)
            self._bridge.loop.call_soon_threadsafe(self._replace_producer, self._bridge)

    def _replace_producer(self, fatal: ProducerBridge) -> None:
        if self._bridge is not fatal:  # closed, or replaced already
            return
        log.warning(
            "kafka: the producer of %s was refused for good; starting a new one",
            self.context.resource,
        )
        self._bridge = ProducerBridge(self._producer_config(), fatal.loop, self._replace_producer)
        fatal.submit_pending()
        task = asyncio.ensure_future(asyncio.to_thread(fatal.close, 0))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def _scrub(self, text: str) -> str:
        # librdkafka's messages do not quote the password; this keeps it that way.
        secret = self.options.sasl_password
        if secret is not None and secret.get_secret_value():
            text = text.replace(secret.get_secret_value(), "***")
        return text

    def _kafka_error(self, exc: BaseException | KafkaError, doing: str) -> ProviderError:
        err = exc if isinstance(exc, KafkaError) else None
        if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
            err = exc.args[0]
        if err is None:
            return self.error(f"{doing}: {type(exc).__name__}: {exc}")
        cls: type[ProviderError] = ProviderError
        if err.code() in _REFUSED or self._auth_failed:
            cls = AuthenticationError
        elif err.code() in _UNREACHABLE:
            cls = ConnectionFailedError
            if "tls" in self._reported:  # a broker the metadata named failed its handshake
                tls = tls_problem(self._reported["tls"], self.options)
                return self.error(self._scrub(f"{doing}: {err.str()}; last failure: {tls}"), cls)
        return self.error(self._scrub(f"{doing}: {err.str()}"), cls)

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, KafkaException):
            return self._kafka_error(exc, "consuming failed")
        return exc

    def _producer_bridge(self) -> ProducerBridge:
        if self._bridge is None:
            raise self.error("the broker is not open: call open() first")
        return self._bridge

    # -- lifecycle ---------------------------------------------------------------------------

    def _new_admin(self) -> AdminClient:
        check_tls_files(self.options, self.context)  # librdkafka's own errors would not name them
        try:
            return AdminClient(self._common_config())
        except KafkaException as exc:
            raise ConfigError(
                self._scrub(f"librdkafka refused the configuration: {_text(exc)}"),
                env=self.context.env,
                path=f"{self.context.resource}.{self.context.env}",
            ) from exc

    async def open(self) -> None:
        if self._bridge is not None:
            return
        self._admin = self._new_admin()
        try:
            await self.ping()
        except BaseException:
            self._admin = None
            raise
        self._bridge = ProducerBridge(
            self._producer_config(), asyncio.get_running_loop(), self._replace_producer
        )

    async def ping(self) -> None:
        """Ask for the cluster's metadata; fail within ``connect_timeout``.

        A refused login or a failed TLS handshake fails at once, saying which (librdkafka
        itself would retry until the timeout); anything else is retried until then.
        """
        admin = self._admin or self._new_admin()
        self._auth_failed = False
        self._reported.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.connect_timeout
        while True:
            left = deadline - loop.time()
            try:
                metadata = await asyncio.to_thread(
                    admin.list_topics, timeout=max(min(left, _PING_SLICE), 0.01)
                )
                break
            except KafkaException as exc:
                admin.poll(0)  # serve error_cb: it says why (refused login, failed handshake)
                if self._auth_failed or "tls" in self._reported or deadline <= loop.time():
                    raise self._unreachable(exc) from exc
        if not metadata.brokers:
            raise self.error("Kafka answered with no brokers", ConnectionFailedError)

    def _unreachable(self, exc: KafkaException) -> ProviderError:
        if self._auth_failed:
            why = self._reported.get("login", "SASL authentication failed")
            return self.error(self._scrub(f"Kafka rejected the login: {why}"), AuthenticationError)
        why = unreachable_reason(self._reported, self.options, _text(exc))
        return self.error(self._scrub(f"Kafka is unreachable: {why}"), ConnectionFailedError)

    async def close(self) -> None:
        await self.close_subscriptions()
        bridge, self._bridge = self._bridge, None
        if bridge is not None:
            bridge.submit_pending()  # publishes already made are produced, not dropped
            left = await asyncio.to_thread(bridge.close, self.options.delivery_timeout_ms / 1000)
            if left:
                log.warning("%d Kafka messages were not confirmed before close", left)
        self._admin = None

    # -- topics ------------------------------------------------------------------------------

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        pending = self._creating.get(topic)
        if pending is None:
            if not _TOPIC.fullmatch(topic):
                raise ValidationError(
                    f"{topic!r} is not a Kafka topic name: use 1-249 of A-Z a-z 0-9 . _ -"
                )
            pending = asyncio.ensure_future(self._create_topic(topic))
            self._creating[topic] = pending
        try:
            await asyncio.shield(pending)
        finally:
            if pending.done():
                self._creating.pop(topic, None)

    async def _create_topic(self, topic: str) -> None:
        o = self.options
        if o.auto_create_topics:
            admin = self._admin
            if admin is None:
                raise self.error("the broker is not open: call open() first")
            # NewTopic is re-exported at runtime; the stub lists no __all__ for it
            new = kafka_admin.NewTopic(topic, o.num_partitions, o.replication_factor)  # type: ignore[attr-defined]
            # request_timeout: librdkafka's default (socket.timeout.ms, 60 s) for a controller
            # it cannot reach would outlast connect_timeout by far.
            futures = admin.create_topics(
                [new], operation_timeout=o.connect_timeout, request_timeout=o.connect_timeout
            )
            try:
                await asyncio.wrap_future(futures[topic])
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    admin.poll(0)  # serve error_cb: a failed handshake says why
                    raise self._kafka_error(exc, f"creating topic {topic!r} failed") from exc
        self._topics.add(topic)

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        """Publish one message; return its id (``"partition:offset"``) once it is confirmed.

        Publishes made in the same event-loop iteration are handed to the producer thread
        together (one hand-over, each message with its own delivery report). A task and a
        future per message still cost far more than the message itself: for bulk sends,
        :meth:`publish_many` is several times cheaper.
        """
        if topic not in self._topics:
            await self._ensure_topic(topic)
        bridge = self._producer_bridge()
        fut: asyncio.Future[Outcome] = bridge.loop.create_future()
        bridge.enqueue((
            topic,
            body,
            None if key is None else key.encode(),
            list(headers.items()) if headers else None,
            fut,
        ))  # fmt: skip
        err, ident = await fut
        if err is None:
            return ident
        if isinstance(err, KafkaError):
            raise self._kafka_error(err, f"publish to {topic!r} was not confirmed")
        if isinstance(err, KafkaException):
            raise self._kafka_error(err, f"publish to {topic!r} failed") from err
        raise err

    async def publish_many(
        self,
        topic: str,
        bodies: Iterable[bytes],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Publish many messages and wait until every one is confirmed; return how many.

        One future for the whole batch instead of one per message: the way to publish at
        the producer's full speed. Raises :class:`ProviderError` if any delivery failed (the
        others may have been written: with idempotence, publishing the batch again is safe
        for the broker but duplicates for consumers).
        """
        if topic not in self._topics:
            await self._ensure_topic(topic)
        bridge = self._producer_bridge()
        fut: asyncio.Future[Outcome] = bridge.loop.create_future()
        raw_key = None if key is None else key.encode()
        raw_headers: Headers = list(headers.items()) if headers else None
        batch = Batch(fut, topic, list(bodies), raw_key, raw_headers)
        bridge.submit(batch)
        err, _ = await fut
        if isinstance(batch.failure, KafkaException):
            raise self._kafka_error(batch.failure, f"publish to {topic!r} failed")
        if batch.failure is not None:
            raise batch.failure
        if err is not None:
            raise self._kafka_error(err, f"publish to {topic!r} was not confirmed")
        return batch.sent

    async def _dead_letter(self, delivery: KafkaDelivery) -> None:
        msg = delivery.message
        headers = {**msg.headers, **dead_letter_marks(msg.topic, delivery.attempt)}
        dead_topic = self.dead_letter_topic(msg.topic)
        await self.publish(dead_topic, msg.body, key=msg.key, headers=headers)

    # -- consuming ---------------------------------------------------------------------------

    async def subscribe(
        self, topic: str, group: str, *, max_deliveries: int | None = None, **options: Any
    ) -> Subscription:
        """Join ``group`` on ``topic``; returns once the group has given this member its share.

        ``offset_reset`` (``"latest"``/``"earliest"``) overrides ``auto_offset_reset`` for a
        group that has no committed offsets yet. Group ``ductwork-dead-letters`` always starts
        from the earliest offset.
        """
        reset = options.pop("offset_reset", None)
        if options:
            raise ValidationError(f"unknown subscribe options for kafka: {sorted(options)}")
        if reset not in (None, "latest", "earliest"):
            raise ValidationError(f"offset_reset must be 'latest' or 'earliest', not {reset!r}")
        self._producer_bridge()  # refuse early when not open
        await self._ensure_topic(topic)
        earliest = group == DEAD_GROUP or (reset or self.options.auto_offset_reset) == "earliest"
        sub = KafkaSubscription(
            self._consumer_config(group, earliest),
            topic,
            earliest=earliest,
            max_in_flight=self.options.max_in_flight,
            dead_letter=self._dead_letter if max_deliveries is not None else None,
            max_deliveries=max_deliveries,
            translate=self._translate,
        )
        try:
            await sub.start(self.options.join_timeout)
        except TimeoutError as exc:
            await sub.close()
            raise self.error(
                f"joining group {group!r} on {topic!r} timed out", ConnectionFailedError
            ) from exc
        except BaseException:
            await sub.close()
            raise
        return self.track(sub)
