"""What the ``postgres`` and ``mysql`` databases share: engine, execute, streams, transactions.

Features: one SQLAlchemy 2 :class:`~sqlalchemy.ext.asyncio.AsyncEngine` per provider, built in
:meth:`SqlDatabase.open` and disposed in :meth:`SqlDatabase.close`; its pool is reused by every
call. :meth:`~SqlDatabase.execute` checks out one pooled connection, runs the statement in its
own transaction and returns it, all in one greenlet switch into SQLAlchemy's core (dialects where
autocommit costs no round trip run it in autocommit mode: the statement is its own implicit
transaction, without BEGIN/COMMIT; ``postgres`` runs it on asyncpg directly, on a connection
from the same pool); :meth:`~SqlDatabase.transaction` holds one connection for the block.
``:name`` parameters are bound by SQLAlchemy's :func:`~sqlalchemy.text` (never formatted into
SQL); parsed statements are cached by their text. Named locks (``locks``) hold one pooled
connection in autocommit mode for the block. A dialect module adds only its driver, URL schemes,
connect arguments, error codes and lock statements (and ``postgres`` its lone-statement path).

Configuration (:class:`~ductwork_sql._options.SqlOptions`): ``url`` (a secret: it may carry the
password), or ``host``/``port``/``user``/``password``/``database`` (each overrides the URL's part
when both are given); pool and timeout settings; ``engine_options`` passed to
:func:`~sqlalchemy.ext.asyncio.create_async_engine`. TLS: ``ssl`` is ``disable``, ``require``
(encrypted, the server's certificate not checked) or ``verify`` (certificate and host name checked,
against ``ca_file`` when given, else the system's CAs); ``cert_file``/``key_file``/``key_password``
present a client certificate. The context is built once per :meth:`SqlDatabase.open` by
:func:`ductwork.providers.tls.client_context` (a missing or unreadable file is a
:class:`ConfigError` before anything connects) and given to the driver as a connect argument, so
every pooled connection uses it.

Errors: refused, unreachable, timed out or dropped connections, and failed TLS handshakes
(worded by :func:`~ductwork.providers.tls.tls_failure`), become
:class:`ConnectionFailedError`, rejected credentials :class:`AuthenticationError`, anything else
from SQLAlchemy or the driver :class:`ProviderError`; messages name resource, env, provider and
an endpoint without password, and never carry the statement's parameters (a value the driver
cannot encode is named by its position, ``$n``, not quoted).

Streaming (``streaming``): :meth:`~SqlDatabase.stream` holds one pooled connection and reads
through the driver's server-side cursor (SQLAlchemy's ``stream_results``: a named cursor inside a
transaction on Postgres, aiomysql's unbuffered ``SSCursor`` on MySQL/MariaDB), ``batch_size`` rows
per fetch; :meth:`Connection.stream` does the same inside a transaction. Leaving a lone stream
early discards its connection where the rest of the result is still on the wire (MySQL: reading
it would take as long as the whole result) or the driver was interrupted (cancellation, an
error); a Postgres stream left by ``break`` rolls back its cursor and keeps the connection.

Ordering: statements on one connection run in the order awaited; separate ``execute`` calls use
separate connections and commit independently.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager, suppress
from typing import Any, ClassVar

from ductwork.errors import ConfigError, ConnectionFailedError, ProviderError
from ductwork.providers.database import (
    DEFAULT_BATCH_SIZE,
    Connection,
    Database,
    Result,
    check_batch_size,
    row_dicts,
)
from ductwork.providers.tls import client_context, tls_failure
from sqlalchemy import URL, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from ductwork_sql._options import SqlOptions
from ductwork_sql._results import execute_in, reason, sql_text, to_result

__all__ = ["SqlDatabase", "SqlOptions"]


class _SqlConnection(Connection):
    __slots__ = ("_conn", "_db", "_open")

    def __init__(self, db: SqlDatabase, conn: AsyncConnection) -> None:
        self._db = db
        self._conn = conn
        # The cursor of a stream not read to its end (``async for … break`` does not close an
        # async generator): closed before the next statement, which could not run before it.
        self._open: AsyncGenerator[list[dict[str, Any]], None] | None = None

    async def _close_open_stream(self) -> None:
        left, self._open = self._open, None
        if left is not None:
            await left.aclose()

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        await self._close_open_stream()
        try:
            return to_result(await self._conn.execute(sql_text(sql), params))
        except self._db.backend_errors as exc:
            raise self._db.failure(exc, "statement failed") from exc

    async def stream(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        check_batch_size(batch_size)
        await self._close_open_stream()
        # Inside the transaction the connection cannot be discarded: leaving early closes the
        # cursor (on MySQL that reads the rest of the result), so the block may go on.
        rows = self._db.batches(self._conn, sql, params, batch_size, close=True)
        self._open = rows
        async with aclosing(rows):
            async for batch in rows:
                yield batch
        if self._open is rows:
            self._open = None


class SqlDatabase(Database[SqlOptions]):
    """A SQL server reached through a SQLAlchemy async engine (base of each dialect)."""

    # The SQLAlchemy drivername every URL is normalised to, e.g. ``postgresql+asyncpg``.
    driver: ClassVar[str] = ""
    default_port: ClassVar[int] = 0
    # Exceptions translated at the boundary; dialects add their driver's base classes.
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (SQLAlchemyError, OSError)
    # Run lone statements in autocommit mode (still one implicit transaction per statement),
    # saving the BEGIN and COMMIT round trips, where switching modes costs no round trip itself.
    autocommit_execute: ClassVar[bool] = False
    # Streams read an unbuffered cursor whose unread rows stay on the connection's wire.
    unbuffered_streams: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings: SqlOptions = self.options
        self.url = self._url()
        self._engine: AsyncEngine | None = None
        self._execute_engine: Engine | None = None

    # -- dialect hooks --------------------------------------------------------------------

    def connect_args(self) -> dict[str, Any]:
        """The driver's connect arguments for timeouts and TLS."""
        raise NotImplementedError

    def error_class(self, orig: BaseException) -> type[ProviderError]:
        """The error class for a driver exception (by SQLSTATE or error number)."""
        return ProviderError

    def configure(self, engine: AsyncEngine) -> None:
        """Attach dialect event listeners to a new engine (e.g. per-connection settings)."""

    async def acquire_lock(self, conn: AsyncConnection, name: str, timeout: float) -> bool:
        """Take the session-level named lock on ``conn``; ``False`` when ``timeout`` passed."""
        raise NotImplementedError

    async def release_lock(self, conn: AsyncConnection, name: str) -> None:
        """Release the named lock taken on ``conn``."""
        raise NotImplementedError

    # -- configuration --------------------------------------------------------------------

    def _url(self) -> URL:
        o = self.settings
        url = URL.create(self.driver)
        if o.url is not None:
            url = make_url(o.url.get_secret_value()).set(drivername=self.driver)
        # Without a URL every field counts; with one, only the fields given override its parts.
        given = o.model_fields_set if o.url is not None else set(type(o).model_fields)
        parts: dict[str, Any] = {}
        for name, part in (
            ("host", "host"),
            ("port", "port"),
            ("user", "username"),
            ("database", "database"),
        ):
            value = getattr(o, name)
            if name in given and value is not None:
                parts[part] = value
        if "password" in given and o.password is not None:
            parts["password"] = o.password.get_secret_value()
        return url.set(**parts)

    def ssl_context(self) -> _ssl.SSLContext | None:
        """The TLS context for ``ssl`` (``require`` encrypts, ``verify`` also checks the cert).

        The TLS files are read now: called once per :meth:`open`, never per connection.

        Raises:
            ConfigError: a TLS file is missing, unreadable or not PEM, or its key is locked.
        """
        mode = self.settings.ssl
        if mode == "disable":
            return None
        return client_context(self.settings, self.context, verify=mode == "verify")

    @property
    def endpoint(self) -> str:
        url = self.url
        user = f"{url.username}@" if url.username else ""
        where = f"{url.host or 'localhost'}:{url.port or self.default_port}"
        return f"{url.get_backend_name()}://{user}{where}/{url.database or ''}"

    @property
    def native(self) -> AsyncEngine:
        """The SQLAlchemy :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (after ``open``)."""
        return self._live()

    def _live(self) -> AsyncEngine:
        if self._engine is None:
            raise self.error("database is not open: call open() first")
        return self._engine

    # -- errors ---------------------------------------------------------------------------

    def failure(self, exc: BaseException, action: str, *, dropped: bool = False) -> ProviderError:
        """A translated error for ``exc``, naming where it happened and never the password.

        ``dropped``: the connection was found closed after ``exc`` (for errors raised by the
        driver itself; SQLAlchemy's own say so through ``connection_invalidated``).
        """
        if isinstance(exc, DBAPIError) and exc.orig is not None:
            cls = self.error_class(exc.orig)
            dropped = dropped or exc.connection_invalidated
        elif isinstance(exc, OSError):  # refused, unreachable, TLS failure, connect timeout
            cls = ConnectionFailedError
        else:
            cls = self.error_class(exc)
        if cls is ProviderError and dropped:
            cls = ConnectionFailedError
        handshake = tls_failure(exc)
        if handshake is not None:
            cls = ConnectionFailedError
        message = f"{action}: {handshake or reason(exc)}"
        password = self.url.password
        if password:
            message = message.replace(str(password), "***")
        return self.error(message, cls)

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine is not None:
            return
        o = self.settings
        extra = dict(o.engine_options)
        connect_args = {**self.connect_args(), **extra.pop("connect_args", {})}
        kwargs: dict[str, Any] = {
            "echo": o.echo,
            "hide_parameters": True,  # values never reach logs or error strings
            "pool_size": o.pool_size,
            "max_overflow": o.max_overflow,
            "pool_timeout": o.pool_timeout,
            "connect_args": connect_args,
            **extra,
        }
        try:
            engine = create_async_engine(self.url, **kwargs)
        except (SQLAlchemyError, TypeError) as exc:
            raise ConfigError(
                f"{self.context.resource}: cannot build the engine: {reason(exc)}",
                env=self.context.env,
            ) from None
        self.configure(engine)
        self._engine = engine
        self._execute_engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.autocommit_execute
            else engine
        ).sync_engine
        try:
            await self._execute("SELECT 1", None, "cannot open database")
        except BaseException:
            self._engine = self._execute_engine = None
            await engine.dispose()
            raise

    async def close(self) -> None:
        engine, self._engine, self._execute_engine = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def ping(self) -> None:
        await self._execute("SELECT 1", None, "ping failed")

    # -- statements -----------------------------------------------------------------------

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        return await self._execute(sql, params, "statement failed")

    async def _execute(self, sql: str, params: Mapping[str, Any] | None, action: str) -> Result:
        engine = self._execute_engine
        if engine is None:
            raise self.error("database is not open: call open() first")
        try:
            async with self.pool_turn():
                return await greenlet_spawn(execute_in, engine, sql, params)
        except self.backend_errors as exc:
            raise self.failure(exc, action) from exc

    async def stream(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        check_batch_size(batch_size)
        conn = await self.stream_connection()
        reusable = False
        try:
            close = not self.unbuffered_streams  # else the connection is discarded instead
            async with aclosing(self.batches(conn, sql, params, batch_size, close=close)) as rows:
                async for batch in rows:
                    yield batch
            reusable = True
        except GeneratorExit:  # left by break: reusable once its cursor is closed
            reusable = not self.unbuffered_streams
            raise
        finally:
            await self.give_back(conn, reusable=reusable)

    async def stream_connection(self) -> AsyncConnection:
        """A pooled connection for one stream (give it back with :meth:`give_back`)."""
        engine = self._live()
        try:
            async with self.pool_turn():
                return await engine.connect()
        except self.backend_errors as exc:
            raise self.failure(exc, "stream failed") from exc

    @asynccontextmanager
    async def pool_turn(self) -> AsyncIterator[None]:
        """Around each checkout from the pool other than a dialect's own lone statements."""
        yield

    async def give_back(self, conn: AsyncConnection, *, reusable: bool) -> None:
        """Return a stream's connection to the pool, or discard it when it is not reusable."""
        with suppress(*self.backend_errors):
            if not reusable:
                await conn.invalidate()  # closes it; the pool opens a fresh one when needed
            await conn.close()

    async def batches(
        self,
        conn: AsyncConnection,
        sql: str,
        params: Mapping[str, Any] | None,
        batch_size: int,
        *,
        close: bool,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Rows of ``sql`` on ``conn`` through a server-side cursor, ``batch_size`` per fetch.

        ``close``: close the cursor when left early (else the caller discards the connection).
        """
        try:
            result = await conn.stream(
                sql_text(sql), params, execution_options={"yield_per": batch_size}
            )
        except self.backend_errors as exc:
            raise self.failure(exc, "stream failed") from exc
        finished = False
        try:
            columns = list(result.keys())
            while columns:
                try:
                    rows = await result.fetchmany(batch_size)
                except self.backend_errors as exc:
                    raise self.failure(exc, "reading rows failed") from exc
                if not rows:
                    break
                try:
                    yield row_dicts(columns, rows)
                except GeneratorExit:
                    if close and self.unbuffered_streams:
                        # The rest is on the wire ahead of the next statement: read it off,
                        # a batch at a time, so the connection can go on.
                        with suppress(*self.backend_errors):
                            while await result.fetchmany(batch_size):
                                pass
                    raise
            finished = True
        finally:
            if finished or close:
                try:
                    await result.close()
                except self.backend_errors as exc:
                    raise self.failure(exc, "closing the cursor failed") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        engine = self._live()
        try:
            async with self.pool_turn():
                conn = await engine.connect()
            try:
                async with conn.begin():
                    block = _SqlConnection(self, conn)
                    yield block
                    await block._close_open_stream()  # before COMMIT, which it would hold up
            finally:
                await conn.close()
        except self.backend_errors as exc:
            raise self.failure(exc, "transaction failed") from exc

    @asynccontextmanager
    async def lock(self, name: str, *, timeout: float = 60.0) -> AsyncIterator[None]:
        self.require("locks")
        engine = self._live()
        try:
            async with self.pool_turn():
                conn = await engine.connect()
        except self.backend_errors as exc:
            raise self.failure(exc, f"cannot take lock {name!r}") from exc
        try:
            try:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                acquired = await self.acquire_lock(conn, name, timeout)
            except self.backend_errors as exc:
                raise self.failure(exc, f"cannot take lock {name!r}") from exc
            if not acquired:
                raise self.error(f"lock {name!r} still held by another holder after {timeout:g}s")
            try:
                yield
            finally:
                try:
                    await self.release_lock(conn, name)
                except self.backend_errors:
                    # The server frees a session's locks when the session ends: drop it.
                    with suppress(*self.backend_errors):
                        await conn.invalidate()
        finally:
            with suppress(*self.backend_errors):
                await conn.close()
