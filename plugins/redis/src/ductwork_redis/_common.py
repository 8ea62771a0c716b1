"""What the Redis cache and broker share: connection options, the pool, error translation.

TLS is on with ``ssl: true`` or a ``rediss://`` URL. The connections then use the context
:func:`ductwork.providers.tls.client_context` builds from ``ca_file``/``cert_file``/
``key_file``/``key_password`` (server certificate and host name checked), unless the URL
carries redis-py's own ``ssl_*`` query parameters, which keep working as before and exclude
the TLS options.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ductwork.errors import AuthenticationError, ConnectionFailedError, ProviderError
from ductwork.providers.base import Provider, ProviderContext
from ductwork.providers.tls import TlsOptions, client_context, tls_failure
from pydantic import Field, SecretStr, model_validator
from redis import exceptions as rex
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

__all__ = [
    "RedisOptions",
    "TLSConnection",
    "WaitingPool",
    "build_pool",
    "endpoint_of",
    "reader_client",
    "tls_context",
    "translate",
]

_URL_SCHEMES = ("redis", "rediss", "unix")
# Set with ``url``, these would be ignored or contradict it, so giving both is refused.
_URL_PARTS = frozenset({"host", "port", "db", "username", "password", "ssl"})
# Server replies that mean the credentials were refused (redis-py raises some as ResponseError).
_AUTH_REPLIES = ("WRONGPASS", "NOAUTH", "INVALIDPASSWORD")


class RedisOptions(TlsOptions):
    """Where the Redis server is and how to talk to it (shared by cache and broker).

    Give either ``url`` (``redis://``, ``rediss://`` for TLS, or ``unix://``; it may carry
    credentials, so it is a secret) or the parts ``host``/``port``/``db``/``username``/
    ``password``/``ssl``. The TLS options (``ca_file``, ``cert_file``, …) need TLS on.
    """

    url: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0)
    username: str | None = None
    password: SecretStr | None = None
    ssl: bool = False
    key_prefix: str = ""
    socket_timeout: float | None = Field(5.0, gt=0)
    socket_connect_timeout: float | None = Field(5.0, gt=0)
    max_connections: int = Field(50, ge=1)
    pool_timeout: float | None = Field(5.0, gt=0)
    retries: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _url_or_parts(self) -> RedisOptions:
        if self.url is not None:
            scheme = urlsplit(self.url.get_secret_value()).scheme
            if scheme not in _URL_SCHEMES:
                raise ValueError(f"url must start with one of {', '.join(_URL_SCHEMES)}://")
            both = sorted(self.model_fields_set & _URL_PARTS)
            if both:
                raise ValueError(f"give either url or {', '.join(both)}, not both")
            if self.tls_files() and self.url_tls_parameters:
                raise ValueError(
                    f"give the TLS files as {', '.join(self.tls_files())} or as the url's "
                    f"{', '.join(self.url_tls_parameters)}, not both"
                )
        self.refuse_tls_files(self.uses_tls, "set ssl: true, or use a rediss:// url")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether connections speak TLS (``ssl: true`` or a ``rediss://`` URL)."""
        if self.url is None:
            return self.ssl
        return urlsplit(self.url.get_secret_value()).scheme == "rediss"

    @property
    def url_tls_parameters(self) -> list[str]:
        """redis-py's ``ssl_*`` parameters in the URL's query, by name."""
        if self.url is None:
            return []
        query = parse_qs(urlsplit(self.url.get_secret_value()).query)
        return sorted(name for name in query if name.startswith("ssl_"))


class TLSConnection(Connection):
    """A TCP connection wrapped in a given :class:`ssl.SSLContext`.

    redis-py's ``SSLConnection`` builds its own context from file names and takes none ready
    made, so this one passes ductwork's context to ``asyncio.open_connection``; the server's
    name is checked against the host connected to.
    """

    def __init__(self, *, tls_context: ssl.SSLContext, **kwargs: Any) -> None:
        self.tls_context = tls_context
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        return {**super()._connection_arguments(), "ssl": self.tls_context}


# ConnectionPool.get_connection is wrapped by a check for deprecated arguments that binds the
# call's signature on every command; we pass none, so call the function it wraps.
_get_connection = getattr(
    ConnectionPool.get_connection, "__wrapped__", ConnectionPool.get_connection
)


class WaitingPool(ConnectionPool):
    """A connection pool that waits up to ``timeout`` s for a free connection when all are busy.

    redis-py's ``BlockingConnectionPool`` does the same but enters a condition and a timeout
    scope on every command (~12 µs of CPU per call here, 10-15 % of a loopback GET); this one
    costs nothing until the pool is full.
    """

    def __init__(self, *, timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        """A connected connection, waiting for one to be released when the pool is full."""
        try:
            conn: AbstractConnection = await _get_connection(self)
            return conn
        except rex.MaxConnectionsError:
            pass
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        while True:
            freed: asyncio.Future[None] = loop.create_future()
            self._waiters.append(freed)
            try:
                try:  # again, now that a release cannot go unnoticed
                    conn = await _get_connection(self)
                    return conn
                except rex.MaxConnectionsError:
                    pass
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    break
                try:
                    await asyncio.wait_for(freed, left)
                except TimeoutError:
                    break
            finally:
                if not freed.done():
                    freed.cancel()
        raise rex.MaxConnectionsError(
            f"no free connection among {self.max_connections} within {self.timeout} s"
        )

    async def release(self, connection: AbstractConnection) -> None:
        """Return ``connection`` and wake one waiter."""
        await super().release(connection)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break


def tls_context(opts: RedisOptions, context: ProviderContext) -> ssl.SSLContext | None:
    """The TLS context for ``opts`` (the files are read now), or ``None``.

    ``None`` when TLS is off, or when the URL's ``ssl_*`` parameters configure redis-py's own.

    Raises:
        ConfigError: a TLS file is missing, unreadable or not PEM.
    """
    if opts.uses_tls and not opts.url_tls_parameters:
        return client_context(opts, context)
    return None


def build_pool(opts: RedisOptions, tls: ssl.SSLContext | None = None) -> WaitingPool:
    """A connection pool for ``opts`` (over ``tls`` when given); nothing connects yet."""
    common: dict[str, Any] = {
        "max_connections": opts.max_connections,
        "timeout": opts.pool_timeout,
        "socket_timeout": opts.socket_timeout,
        "socket_connect_timeout": opts.socket_connect_timeout,
        # Reconnect after a dropped connection only: a command that timed out may have run, and
        # sending it again could count an ``incr`` twice.
        "retry": Retry(
            ExponentialWithJitterBackoff(base=0.01, cap=0.5),
            opts.retries,
            supported_errors=(rex.ConnectionError,),
        ),
    }
    if tls is not None:
        common["tls_context"] = tls
    if opts.url is not None:
        # What ``from_url`` does, with our connection class for TLS; query values win.
        kwargs: dict[str, Any] = {**common, **parse_url(opts.url.get_secret_value())}
        if "tls_context" in kwargs:
            kwargs["connection_class"] = TLSConnection
        return WaitingPool(**kwargs)
    return WaitingPool(
        connection_class=TLSConnection if "tls_context" in common else Connection,
        host=opts.host,
        port=opts.port,
        db=opts.db,
        username=opts.username,
        password=opts.password.get_secret_value() if opts.password else None,
        **common,
    )


def reader_client(pool: WaitingPool) -> Redis:
    """A client on one connection of its own, with ``pool``'s settings (for blocking reads)."""
    own = WaitingPool(
        connection_class=pool.connection_class,
        max_connections=1,
        timeout=None,
        **pool.connection_kwargs,
    )
    return Redis.from_pool(own)


def endpoint_of(opts: RedisOptions) -> str:
    """The server's address without credentials."""
    if opts.url is None:
        return f"{'rediss' if opts.ssl else 'redis'}://{opts.host}:{opts.port}/{opts.db}"
    parts = urlsplit(opts.url.get_secret_value())
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path or '/0'}"


def translate(provider: Provider, exc: BaseException, doing: str) -> ProviderError:
    """The ductwork error for a redis-py (or socket) exception raised while ``doing``."""
    text = f"{type(exc).__name__}: {exc}"
    opts = provider.options
    if isinstance(opts, RedisOptions):  # redis-py never echoes it; be sure anyway
        for secret in (opts.password, opts.url):
            if secret is not None and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "***")
    cls: type[ProviderError] = ProviderError
    handshake = tls_failure(exc)
    if handshake is not None:
        return provider.error(f"redis {doing} failed: {handshake}", ConnectionFailedError)
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError) or (
        isinstance(exc, rex.ResponseError) and str(exc).startswith(_AUTH_REPLIES)
    ):
        cls = AuthenticationError
    elif isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError | TimeoutError):
        cls = ConnectionFailedError
    return provider.error(f"redis {doing} failed: {text}", cls)
