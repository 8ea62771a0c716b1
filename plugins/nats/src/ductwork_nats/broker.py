"""``nats`` broker: topics as NATS JetStream streams, consumer groups as durable pull consumers.

Features: publish confirmed by JetStream (``publish`` returns after the stream's PubAck, with
the stream sequence as the message id); one stream per topic (``<stream_prefix>_<topic>``,
bound to the one subject ``<subject_prefix>.<topic>``), created on first use; one durable pull
consumer per group, named after the group and created with ``DeliverPolicy.NEW`` when the group
first joins, so every group receives every message published after it joined and each message
goes to one member of the group. Ack is a JetStream ack; nack is a NAK (``nack(delay=…)`` a NAK
with that delay); ``attempt`` is the server's delivery count. Closing a subscription NAKs the
deliveries it holds, so they go straight back to the group. A consumer that dies without a word
has its delivery redelivered after ``ack_wait``. With ``max_deliveries``, a delivery nacked on
its last attempt (or redelivered past it) is published to ``<topic>.dead-letter`` — whose stream
and ``ductwork-dead-letters`` group are made first so the letter is kept — and only once that
publish is confirmed is the original acked.

Configuration: ``servers`` (``["nats://127.0.0.1:4222"]``; credentials in the URLs are never
shown), ``user``/``password``, ``token``, ``stream_prefix`` and ``subject_prefix``
(``ductwork``), ``storage`` (``file`` or ``memory``), ``retention`` (``interest``: a message is
removed once every group acked it; ``limits``: kept until ``max_age``), ``max_age`` (none),
``replicas`` (1), ``ack_wait`` (30 s), ``max_ack_pending`` (1000 per group), ``connect_timeout``
(2 s), ``request_timeout`` (5 s, for PubAcks and JetStream API calls). TLS: ``tls`` (off; on for
every server when true, and for each ``tls://`` URL), with ``ca_file``, ``cert_file``/``key_file``
/``key_password`` (see :mod:`ductwork.providers.tls`), refused while TLS is off. With TLS on, a
server that does not require TLS is refused rather than used in clear (see
:mod:`ductwork_nats._client`); the server's certificate and name are always checked.

Errors: no server reachable, or none answering within ``connect_timeout``, a failed TLS
handshake (untrusted certificate, name mismatch) or a server without TLS when TLS is on ->
:class:`ConnectionFailedError`; a TLS file that cannot be read -> :class:`ConfigError`, before
connecting; credentials refused -> :class:`AuthenticationError`; a missing
PubAck, a JetStream API error or a lost connection -> :class:`ProviderError` (timeouts and lost
connections as :class:`ConnectionFailedError`). A topic that is not a valid subject (empty
tokens, spaces, ``*``, ``>``) -> :class:`ValidationError`.

Ordering: a stream keeps publish order; a lone consumer of a group receives messages in that
order (fetched one at a time), until one is nacked or its ``ack_wait`` runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from ductwork._redact import get_logger
from ductwork.config.durations import Duration
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    ProviderError,
    UnsupportedError,
    ValidationError,
)
from ductwork.providers.broker import (
    IDEMPOTENCY_KEY,
    Broker,
    Subscription,
    header,
    refuse_options,
)
from ductwork.providers.tls import TlsOptions, client_context, tls_failure
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from pydantic import Field, SecretStr, field_validator, model_validator

from ductwork_nats._client import TLSRequiringClient, is_refused_login, telling_error
from ductwork_nats.subscription import KEY_HEADER, NATSSubscription

__all__ = ["NATSBroker", "NATSOptions"]

log = get_logger("ductwork.nats")

_NAME = re.compile(r"[^A-Za-z0-9_-]")


# What error_cb reports as a connection drops; disconnected_cb says it once, with context.
_CONNECTION_LOSS = (
    OSError,
    nats.errors.UnexpectedEOF,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionClosedError,
)


class NATSOptions(TlsOptions):
    """Options of the ``nats`` broker."""

    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    tls: bool = False
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    stream_prefix: str = Field("ductwork", pattern=r"^[A-Za-z0-9_-]*$")
    subject_prefix: str = Field("ductwork", pattern=r"^([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?$")
    storage: Literal["file", "memory"] = "file"
    retention: Literal["interest", "limits"] = "interest"
    max_age: Duration | None = Field(None, gt=0)
    replicas: int = Field(1, ge=1, le=5)
    ack_wait: Duration = Field(30.0, gt=0)
    max_ack_pending: int = Field(1000, ge=1)
    connect_timeout: Duration = Field(2.0, gt=0)
    request_timeout: Duration = Field(5.0, gt=0)

    @field_validator("servers", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [s.strip() for s in value.split(",")] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> Self:
        self.refuse_tls_files(self.uses_tls, "set tls: true, or use tls:// server URLs")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether any connection speaks TLS (``tls: true`` or a ``tls://`` URL)."""
        return self.tls or any(s.startswith("tls://") for s in self.servers)


MSG_ID = "Nats-Msg-Id"


def _safe_name(raw: str) -> str:
    """``raw`` as a stream or consumer name: no ``.``, spaces or wildcards; injective."""
    clean = _NAME.sub("_", raw)
    if clean != raw:  # keep distinct topics distinct: ``a.b`` and ``a_b`` must not share
        clean = f"{clean}_{hashlib.sha1(raw.encode()).hexdigest()[:8]}"
    return clean


class NATSBroker(Broker[NATSOptions]):
    """A broker on NATS JetStream, with nats-py."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"dead_letter", "delayed_nack", "ordering"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._nc: Client | None = None
        self._lost = False  # disconnected, reconnecting
        self._js: JetStreamContext | None = None
        self._streams: set[str] = set()
        self._groups: set[tuple[str, str]] = set()
        self._routes: dict[str, tuple[str, str]] = {}  # topic -> (subject, stream), once made
        self._setup = asyncio.Lock()
        self._opening: list[Exception] | None = None

    @property
    def endpoint(self) -> str:
        def bare(url: str) -> str:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            host = parts.hostname or ""
            host = f"[{host}]" if ":" in host else host
            return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

        return ",".join(bare(s) for s in self.options.servers)

    @property
    def native(self) -> Client:
        """The nats-py client (connected after :meth:`open`)."""
        if self._nc is None:
            raise UnsupportedError("the nats broker is not open")
        return self._nc

    @property
    def connection(self) -> Client | None:
        """The nats-py client while open, else ``None``."""
        return self._nc

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context of :attr:`native`."""
        if self._js is None:
            raise UnsupportedError("the nats broker is not open")
        return self._js

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        opts = self.options
        # Read before anything connects: a missing certificate file is a ConfigError.
        tls = client_context(opts, self.context) if opts.uses_tls else None
        nc = TLSRequiringClient(require_tls=opts.tls)
        failed = asyncio.Event()
        self._opening = errors = []

        async def on_error(exc: Exception) -> None:
            if self._opening is not None:
                errors.append(exc)
                if len(errors) >= len(opts.servers):  # every server refused once: give up
                    failed.set()
            elif self._lost or isinstance(exc, _CONNECTION_LOSS):
                # one line per outage (disconnected_cb's), not one per reconnect attempt
                log.debug("nats: %s: %s", type(exc).__name__, exc)
            else:
                log.warning("nats: %s: %s", type(exc).__name__, exc)

        connect = asyncio.ensure_future(
            nc.connect(
                servers=opts.servers,
                user=opts.user,
                password=opts.password.get_secret_value() if opts.password else None,
                token=opts.token.get_secret_value() if opts.token else None,
                connect_timeout=opts.connect_timeout,  # type: ignore[arg-type]  # float works
                tls=tls,
                error_cb=on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                max_reconnect_attempts=-1,  # ride out outages; events.subscribe bounds them
                name=f"ductwork {self.context.resource}",
            )
        )
        gave_up = asyncio.ensure_future(failed.wait())
        try:
            await asyncio.wait(
                {connect, gave_up},
                timeout=opts.connect_timeout * len(opts.servers),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            gave_up.cancel()
            self._opening = None
        if not connect.done() or connect.cancelled() or connect.exception() is not None:
            if connect.done() and not connect.cancelled() and not errors:
                errors.append(connect.exception())  # type: ignore[arg-type]  # not None here
            connect.cancel()
            with contextlib.suppress(BaseException):
                await connect
            with contextlib.suppress(Exception):
                await nc.close()
            raise self._open_error(errors)
        self._nc = nc
        self._js = nc.jetstream(timeout=opts.request_timeout)
        try:
            await self.ping()
        except ProviderError:
            await self.close()
            raise

    def _open_error(self, errors: Sequence[BaseException]) -> ProviderError:
        last = telling_error(errors)
        if last is not None and is_refused_login(last):
            who = f"user {self.options.user!r}" if self.options.user else "the credentials given"
            error = self.error(f"the server refused {who}", AuthenticationError)
        elif last is None:
            error = self.error(
                f"cannot connect: no answer within {self.options.connect_timeout:g}s",
                ConnectionFailedError,
            )
        else:
            why = tls_failure(last) or f"{type(last).__name__}: {last}"
            error = self.error(f"cannot connect: {why}", ConnectionFailedError)
        error.__cause__ = last
        return error

    async def _on_disconnected(self) -> None:
        if self._nc is not None and not self._lost:  # not our own close()
            self._lost = True
            log.warning(
                "nats: connection lost: resource=%s env=%s endpoint=%s",
                self.context.resource,
                self.context.env,
                self.endpoint,
            )

    async def _on_reconnected(self) -> None:
        self._lost = False
        log.info(
            "nats: connection back: resource=%s env=%s endpoint=%s",
            self.context.resource,
            self.context.env,
            self.endpoint,
        )

    async def close(self) -> None:
        await self.close_subscriptions()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await nc.close()  # flushes the NAKs and acks still buffered

    async def ping(self) -> None:
        with self.translating("JetStream is not reachable (is the server started with -js?)"):
            await self.jetstream.account_info()

    # -- errors ------------------------------------------------------------------------------

    def translated(self, exc: BaseException, message: str) -> ProviderError:
        """The ductwork error for a nats-py or socket failure."""
        lost = nats.errors.ConnectionClosedError | nats.errors.NoServersError | OSError
        if isinstance(exc, TimeoutError | lost):
            return self.error(f"{message}: {type(exc).__name__}: {exc}", ConnectionFailedError)
        return self.error(f"{message}: {type(exc).__name__}: {exc}")

    @contextlib.contextmanager
    def translating(self, message: str) -> Iterator[None]:
        """Turn nats-py and socket errors raised inside into ductwork's."""
        try:
            yield
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise self.translated(exc, message) from exc

    # -- topology ----------------------------------------------------------------------------

    def subject(self, topic: str) -> str:
        """The NATS subject of ``topic``."""
        tokens = topic.split(".")
        if not topic or "" in tokens or any(c in topic for c in " \t\r\n*>"):
            raise ValidationError(
                f"topic {topic!r} is not a NATS subject: use dot-separated tokens without "
                "spaces, '*' or '>'"
            )
        prefix = self.options.subject_prefix
        return f"{prefix}.{topic}" if prefix else topic

    def stream_name(self, topic: str) -> str:
        """The JetStream stream that holds ``topic``."""
        prefix = self.options.stream_prefix
        return f"{prefix}_{_safe_name(topic)}" if prefix else _safe_name(topic)

    async def ensure_stream(self, topic: str) -> str:
        """Create ``topic``'s stream unless it exists; return its name."""
        name = self.stream_name(topic)
        if name in self._streams:
            return name
        subject = self.subject(topic)
        opts = self.options
        async with self._setup:
            if name in self._streams:
                return name
            with self.translating(f"cannot create stream {name!r} for {subject!r}"):
                try:
                    await self.jetstream.stream_info(name)
                except nats.js.errors.NotFoundError:
                    config = StreamConfig(
                        name=name,
                        subjects=[subject],
                        storage=StorageType(opts.storage),
                        retention=RetentionPolicy(opts.retention),
                        max_age=opts.max_age,
                        num_replicas=opts.replicas,
                    )
                    try:
                        await self.jetstream.add_stream(config)
                    except nats.js.errors.APIError:
                        await self.jetstream.stream_info(name)  # made meanwhile by someone else
            self._streams.add(name)
        return name

    async def ensure_group(self, topic: str, group: str) -> tuple[str, str]:
        """Create ``topic``'s stream and ``group``'s durable consumer unless they exist."""
        stream = await self.ensure_stream(topic)
        durable = _safe_name(group)
        if (stream, durable) in self._groups:
            return stream, durable
        opts = self.options
        async with self._setup:
            with self.translating(f"cannot create group {group!r} on stream {stream!r}"):
                try:
                    await self.jetstream.consumer_info(stream, durable)
                except nats.js.errors.NotFoundError:
                    config = ConsumerConfig(
                        durable_name=durable,
                        deliver_policy=DeliverPolicy.NEW,  # the group gets what comes after
                        ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=opts.ack_wait,
                        max_ack_pending=opts.max_ack_pending,
                    )
                    try:
                        await self.jetstream.add_consumer(stream, config)
                    except nats.js.errors.APIError:
                        await self.jetstream.consumer_info(stream, durable)
            self._groups.add((stream, durable))
        return stream, durable

    # -- the interface -----------------------------------------------------------------------

    @property
    def max_body(self) -> int | None:
        """The server's ``max_payload`` (headers count against it too)."""
        nc = self.connection
        return nc.max_payload if nc is not None else None

    def group_name(self, group: str) -> str:
        return _safe_name(group)

    async def groups(self, topic: str) -> frozenset[str] | None:
        """The durable consumers of ``topic``'s stream."""
        stream = await self.ensure_stream(topic)
        names: set[str] = set()
        with self.translating(f"cannot list the groups of {topic!r}"):
            while True:  # the server answers 256 at most per request
                page = await self.jetstream.consumers_info(stream, offset=len(names))
                names.update(c.name for c in page)
                if len(page) < 256:
                    return frozenset(names)

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        route = self._routes.get(topic)
        if route is None:  # first publish to this topic from here: validate, make its stream
            route = self._routes[topic] = (self.subject(topic), await self.ensure_stream(topic))
        subject, stream = route
        hdrs: dict[str, str] | None
        if key is not None:
            hdrs = {**headers, KEY_HEADER: key} if headers else {KEY_HEADER: key}
        else:
            hdrs = dict(headers) if headers else None
        if hdrs and MSG_ID not in hdrs:
            step = header(hdrs, IDEMPOTENCY_KEY)  # a feature step's publish: dedupe a re-run
            if step is not None:
                hdrs[MSG_ID] = step
        try:
            ack = await self.jetstream.publish(subject, body, headers=hdrs)
        except nats.js.errors.NoStreamResponseError:
            # The stream was deleted behind our back: make it again, once.
            self._streams.discard(stream)
            self._groups = {g for g in self._groups if g[0] != stream}
            with self.translating(f"publish to {topic!r} was not confirmed"):
                await self.ensure_stream(topic)
                ack = await self.jetstream.publish(subject, body, headers=hdrs)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise self.translated(exc, f"publish to {topic!r} was not confirmed") from exc
        return str(ack.seq)

    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        max_deliveries: int | None = None,
        **options: Any,
    ) -> Subscription:
        refuse_options("nats", options)
        stream, durable = await self.ensure_group(topic, group)
        with self.translating(f"cannot join group {group!r} on {topic!r}"):
            psub = await self.jetstream.pull_subscribe_bind(durable=durable, stream=stream)
        sub = NATSSubscription(self, topic, psub, max_deliveries)
        return self.track(sub)
