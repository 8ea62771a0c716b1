r"""``postgres`` database: PostgreSQL through SQLAlchemy 2 async and asyncpg.

Features: a pooled :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (``postgresql+asyncpg``);
``:name`` parameters bound by the driver; transactions, including DDL (``CREATE``/``ALTER``/
``DROP`` in a failed transaction roll back with it); named locks are session-level advisory
locks (``pg_advisory_lock`` on a 64-bit hash of the name, waiting at most ``timeout`` through
``lock_timeout``). asyncpg prepares each statement once per pooled connection and reuses it.

Lone statements (:meth:`PostgresDatabase.execute`, ``ping``, ``open``) skip SQLAlchemy's
statement layer: in one greenlet switch they check a connection out of the engine's own pool,
run a prepared statement on its asyncpg connection in autocommit mode and check it back in. The
statement is compiled once per SQL string by SQLAlchemy's :func:`~sqlalchemy.text` for asyncpg
(so ``:name``, ``\:``, ``::`` and repeated names read exactly as in a transaction) and its values
are sent positionally, never formatted into SQL; each connection keeps its prepared statements
(``prepared_statement_cache_size``, 100) with their column names, and the rowcount comes from the
server's status message. A statement whose plan a schema change invalidated is prepared again
and retried once (the server refused it before running it). SQLAlchemy runs the statement as
before when a value is missing, when engine or dialect event listeners or statement logging
(``echo``) are on, or when prepared-statement caching is off (``prepared_statement_cache_size``
or ``statement_cache_size`` 0, or ``prepared_statement_name_func``, as for PgBouncer).

A lone statement keeps its connection checked out for the next one (one at most, never with
pre-ping or recycle): the next runs on it without the pool or a greenlet switch. Every other
checkout of this provider (transactions, locks, streams, SQLAlchemy's path) first gives it back
(:meth:`PostgresDatabase.pool_turn`), and nothing is kept while one waits. A pooled connection
the server ended (asyncpg saw its socket close) is replaced before use, without a round trip.

Streams (:meth:`PostgresDatabase.stream`) run on an asyncpg cursor in a transaction of their
own, one ``FETCH`` per batch.

Configuration: ``url`` (``postgresql://``, ``postgres://`` or any ``postgresql+driver://``; the
driver part is replaced with ``+asyncpg``) or ``host``/``port`` (5432)/``user``/``password``/
``database``; ``statement_timeout`` becomes the server's ``statement_timeout`` for every session;
``connect_timeout`` bounds each new connection; ``ssl`` is ``disable``, ``require`` (encrypted,
certificate not checked) or ``verify`` (certificate and host name checked against ``ca_file``,
else the system CAs), and ``cert_file``/``key_file`` present a client certificate (``hostssl …
cert`` in ``pg_hba.conf``). The TLS context is asyncpg's ``ssl`` connect argument, so the direct
path's connections, taken from the same pool, use it too. The rest is in :mod:`ductwork_sql._base`.

Errors: SQLSTATE class 28 (invalid authorization, unknown role, bad password) becomes
:class:`AuthenticationError`; class 08, ``57P01``-``57P03`` and ``53300`` (too many connections),
and any error after which the connection is closed (it is then discarded, never pooled again)
:class:`ConnectionFailedError`; everything else :class:`ProviderError` with the SQLSTATE.
A cancelled lone statement discards its connection too.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager, suppress
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from ductwork.errors import AuthenticationError, ConnectionFailedError, ProviderError
from ductwork.providers.base import Options
from ductwork.providers.database import DEFAULT_BATCH_SIZE, Result, check_batch_size, row_dicts
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_only, greenlet_spawn

from ductwork_sql._base import SqlDatabase
from ductwork_sql._options import SqlOptions
from ductwork_sql._prepared import DIALECT, Statements, positional
from ductwork_sql._results import sql_text

__all__ = ["PostgresDatabase", "PostgresOptions"]

_UNREACHABLE = frozenset({"57P01", "57P02", "57P03", "53300"})
_LOCK_NOT_AVAILABLE = "55P03"
# What asyncpg raises from a statement: the server's errors, misuse or a closed connection,
# its own internal failures, and the socket's.
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
# Where a pooled connection's prepared statements live (the pool record's ``info``).
_STATEMENTS = "ductwork_sql.statements"
_DEFAULT_CACHE_SIZE = 100  # SQLAlchemy's ``prepared_statement_cache_size`` default


class PostgresOptions(SqlOptions):
    """Options of the ``postgres`` database (see :class:`~ductwork_sql._options.SqlOptions`)."""

    schemes: ClassVar[frozenset[str]] = frozenset({"postgresql", "postgres"})


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or "")


def lock_key(name: str) -> int:
    """The signed 64-bit advisory-lock key for ``name`` (stable across processes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class PostgresDatabase(SqlDatabase):
    """A PostgreSQL database."""

    Options: ClassVar[type[Options]] = PostgresOptions
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"transactions", "transactional_ddl", "locks", "streaming"}
    )
    dialect: ClassVar[str] = "postgresql"
    driver: ClassVar[str] = "postgresql+asyncpg"
    default_port: ClassVar[int] = 5432
    autocommit_execute: ClassVar[bool] = True  # asyncpg switches modes without a round trip
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (
        SQLAlchemyError,
        *_DRIVER_ERRORS,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lone statements go straight to asyncpg when this is above 0 (see ``configure``).
        self._cache_size = 0
        # Bumped when a connection learns that the schema changed under its prepared
        # statements; every other connection then drops its own before its next statement.
        self._schema_epoch = 0
        # The pooled connection the last lone statement kept, checked out, for the next one
        # (one at most): it saves the pool's checkout and checkin and the greenlet switch.
        self._held: tuple[PoolProxiedConnection, Any] | None = None
        self._waiting = 0  # this provider's other checkouts under way: keep nothing then
        self._may_hold = False  # not with pre-ping or recycling, which act on checkout

    def connect_args(self) -> dict[str, Any]:
        o = self.settings
        args: dict[str, Any] = {"timeout": o.connect_timeout, "ssl": self.ssl_context() or False}
        if o.statement_timeout is not None:
            ms = max(1, round(o.statement_timeout * 1000))
            args["server_settings"] = {"statement_timeout": str(ms)}
        return args

    def configure(self, engine: AsyncEngine) -> None:
        """Decide whether lone statements may go to asyncpg directly, and keep how many."""
        self._cache_size = 0
        pool: Any = engine.sync_engine.pool
        self._may_hold = not getattr(pool, "_pre_ping", True) and getattr(pool, "_recycle", 0) < 0
        if engine.dialect.paramstyle != DIALECT.paramstyle:
            return  # placeholders other than $n: leave statements to SQLAlchemy
        # The driver arguments as SQLAlchemy passes them: URL query, then ``connect_args``.
        args = {**self.url.query, **self.settings.engine_options.get("connect_args", {})}
        if "prepared_statement_name_func" in args:
            return  # statements named for a pooler such as PgBouncer: SQLAlchemy names them
        try:
            size = int(args.get("prepared_statement_cache_size", _DEFAULT_CACHE_SIZE))
            named = int(args.get("statement_cache_size", _DEFAULT_CACHE_SIZE))
        except (TypeError, ValueError):
            return
        if named > 0:  # asyncpg only names prepared statements while its own cache is on
            self._cache_size = max(0, size)

    def error_class(self, orig: BaseException) -> type[ProviderError]:
        state = _sqlstate(orig)
        if state.startswith("28"):
            return AuthenticationError
        if state.startswith("08") or state in _UNREACHABLE or isinstance(orig, OSError):
            return ConnectionFailedError
        return ProviderError

    # -- lone statements on asyncpg ---------------------------------------------------------

    def _direct(
        self, sql: str, params: Mapping[str, Any] | None
    ) -> tuple[Engine, str, list[Any]] | None:
        """The engine, ``$n`` query and values when a lone statement may go to asyncpg directly."""
        engine, base = self._execute_engine, self._engine
        if (
            engine is None
            or base is None
            or not self._cache_size
            # Listeners on the engine (the autocommit engine has SQLAlchemy's own) or dialect,
            # and statement logging, see each statement only on SQLAlchemy's path.
            or base.sync_engine._has_events
            or engine.dialect._has_events
            or engine._should_log_info()
        ):
            return None
        try:
            query, names = positional(sql)
            args = [params[name] for name in names] if names and params is not None else []
        except (KeyError, TypeError, SQLAlchemyError):
            return None
        if len(args) != len(names):
            return None  # a placeholder without a value: SQLAlchemy says which, as it always has
        return engine, query, args

    async def _execute(self, sql: str, params: Mapping[str, Any] | None, action: str) -> Result:
        """Run a lone statement on asyncpg directly, or on SQLAlchemy's path when it must."""
        direct = self._direct(sql, params)
        if direct is None:
            return await super()._execute(sql, params, action)
        engine, query, args = direct
        held, self._held = self._held, None
        if held is not None:
            fairy, conn = held
            if not conn.is_closed():
                return await self._run_held(fairy, conn, query, args, action)
            await greenlet_spawn(self._give_back, fairy, dropped=True)  # the server closed it
        return await greenlet_spawn(self._run, engine, query, args, action)

    async def _run_held(
        self, fairy: PoolProxiedConnection, conn: Any, query: str, args: Sequence[Any], action: str
    ) -> Result:
        """Run on the connection the last lone statement kept: no pool, no greenlet switch."""
        try:
            result = await self._fetch(fairy, conn, query, args)
        except BaseException as exc:
            dropped = not isinstance(exc, Exception) or conn.is_closed()
            await greenlet_spawn(self._give_back, fairy, dropped=dropped, exc=exc)
            if isinstance(exc, _DRIVER_ERRORS):
                raise self.failure(exc, action, dropped=dropped) from exc
            raise
        if not self._keep(fairy, conn):
            await greenlet_spawn(self._give_back, fairy)
        return result

    def _keep(self, fairy: PoolProxiedConnection, conn: Any) -> bool:
        """Keep the connection for the next lone statement when nothing else waits for one."""
        if self._held is not None or self._waiting or not self._may_hold:
            return False
        self._held = (fairy, conn)
        return True

    @staticmethod
    def _give_back(
        fairy: PoolProxiedConnection, *, dropped: bool = False, exc: BaseException | None = None
    ) -> None:
        """Check ``fairy`` in, or discard it when ``dropped`` (closed, or after ``exc``)."""
        with suppress(Exception):  # cleaning up never hides the statement's own error
            if dropped:
                fairy.invalidate(exc)  # closes it; the pool opens a fresh one when needed
            else:
                fairy.close()

    @asynccontextmanager
    async def pool_turn(self) -> AsyncIterator[None]:
        """Give the kept connection back, and keep none, while this checkout waits its turn."""
        self._waiting += 1
        try:
            held, self._held = self._held, None
            if held is not None:
                await greenlet_spawn(self._give_back, held[0])
            yield
        finally:
            self._waiting -= 1

    async def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            await greenlet_spawn(self._give_back, held[0])
        await super().close()

    async def stream(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Rows through an asyncpg cursor in a transaction of its own, ``batch_size`` per fetch.

        Off the direct path (see :meth:`_execute`) SQLAlchemy's server-side cursor does it.
        """
        check_batch_size(batch_size)
        direct = self._direct(sql, params)
        if direct is None:
            async with aclosing(super().stream(sql, params, batch_size=batch_size)) as rows:
                async for batch in rows:
                    yield batch
            return
        _, query, args = direct
        conn = await self.stream_connection()
        reusable = False
        try:
            async with aclosing(self._cursor_batches(conn, query, args, batch_size)) as rows:
                async for batch in rows:
                    yield batch
            reusable = True
        except GeneratorExit:
            # Left by break: the transaction and its cursor rolled back (or, when that failed,
            # the connection was closed and is discarded here).
            raw: Any = (await conn.get_raw_connection()).driver_connection
            reusable = raw is not None and not raw.is_closed()
            raise
        finally:
            await self.give_back(conn, reusable=reusable)

    async def _cursor_batches(
        self, conn: AsyncConnection, query: str, args: Sequence[Any], batch_size: int
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Open a transaction and a cursor on ``conn``'s asyncpg connection; fetch in batches.

        A clean end commits (a streamed statement may write); anything else rolls back.
        """
        try:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            tx = raw.transaction()
            await tx.start()
        except self.backend_errors as exc:
            raise self.failure(exc, "stream failed") from exc
        committed = False
        try:
            try:
                prepared = await raw.prepare(query)
                columns = [attribute.name for attribute in prepared.get_attributes()]
                cursor = await prepared.cursor(*args) if columns else None
            except self.backend_errors as exc:
                raise self.failure(exc, "stream failed") from exc
            if cursor is None:  # a command, not a query: run it, no rows
                try:
                    await prepared.fetch(*args)
                except self.backend_errors as exc:
                    raise self.failure(exc, "stream failed") from exc
            while cursor is not None:
                try:
                    records = await cursor.fetch(batch_size)
                except self.backend_errors as exc:
                    raise self.failure(exc, "reading rows failed") from exc
                if not records:
                    break
                yield row_dicts(columns, records)
            try:
                await tx.commit()
            except self.backend_errors as exc:
                raise self.failure(exc, "stream failed") from exc
            committed = True
        finally:
            if not committed and not raw.is_closed():
                try:
                    await tx.rollback()
                except BaseException:
                    raw.terminate()  # interrupted mid-protocol: the stream discards it
                    raise

    def _run(self, engine: Engine, query: str, args: Sequence[Any], action: str) -> Result:
        """Check out, run and check in (or keep): in a greenlet, so the pool may await."""
        fairy = self._checkout(engine, action)
        conn: Any = fairy.driver_connection  # the asyncpg Connection
        if conn.is_closed():  # the server ended it while pooled (restart, terminated backend)
            self._give_back(fairy, dropped=True)
            fairy = self._checkout(engine, action)
            conn = fairy.driver_connection
        try:
            result = await_only(self._fetch(fairy, conn, query, args))
        except BaseException as exc:
            # Cancelled mid-statement, or the connection died: never hand it out again.
            dropped = not isinstance(exc, Exception) or conn.is_closed()
            self._give_back(fairy, dropped=dropped, exc=exc)
            if isinstance(exc, _DRIVER_ERRORS):
                raise self.failure(exc, action, dropped=dropped) from exc
            raise
        if not self._keep(fairy, conn):
            fairy.close()
        return result

    def _checkout(self, engine: Engine, action: str) -> PoolProxiedConnection:
        dialect = engine.dialect
        try:
            return engine.raw_connection()
        except dialect.loaded_dbapi.Error as exc:
            # What ``Engine.connect()`` reports for the same failure (refused role, TLS, ...).
            dropped = dialect.is_disconnect(exc, None, None)
            raise self.failure(exc, action, dropped=dropped) from exc
        except self.backend_errors as exc:
            raise self.failure(exc, action) from exc

    async def _fetch(
        self, fairy: PoolProxiedConnection, conn: Any, query: str, args: Sequence[Any]
    ) -> Result:
        retried = False
        while True:
            statements = await self._statements(fairy, conn)
            prepared = await statements.get(query)
            try:
                rows = await prepared.statement.fetch(*args)
            except asyncpg.InvalidCachedStatementError:
                # Prepared before a schema change (ALTER TABLE, search_path): the server
                # refused the plan before running it and no transaction is open, so prepare
                # it again and retry once, as asyncpg does for its own statements.
                statements.discard(query)
                self._schema_epoch += 1
                if retried:
                    raise
                retried = True
                continue
            except asyncpg.PostgresError:
                raise  # the server's answer to this run: the statement itself stays good
            except BaseException as exc:
                statements.discard(query)  # asyncpg may have closed it (outdated types, ...)
                if isinstance(exc, asyncpg.OutdatedSchemaCacheError):
                    self._schema_epoch += 1
                raise
            return prepared.result(rows)

    async def _statements(self, fairy: PoolProxiedConnection, conn: Any) -> Statements:
        statements = fairy.info.get(_STATEMENTS)
        if isinstance(statements, Statements) and statements.connection is conn:
            if statements.epoch == self._schema_epoch:
                return statements
            await conn.reload_schema_state()  # another connection saw the schema change
        statements = Statements(conn, self._schema_epoch, self._cache_size)
        fairy.info[_STATEMENTS] = statements
        return statements

    # -- locks ------------------------------------------------------------------------------

    async def acquire_lock(self, conn: AsyncConnection, name: str, timeout: float) -> bool:
        key = {"key": lock_key(name)}
        if timeout <= 0:
            got = await conn.execute(sql_text("SELECT pg_try_advisory_lock(:key)"), key)
            return bool(got.scalar())
        ms = f"{max(1, round(timeout * 1000))}ms"
        await conn.execute(sql_text("SELECT set_config('lock_timeout', :ms, false)"), {"ms": ms})
        try:
            await conn.execute(sql_text("SELECT pg_advisory_lock(:key)"), key)
        except DBAPIError as exc:
            if exc.orig is not None and _sqlstate(exc.orig) == _LOCK_NOT_AVAILABLE:
                return False
            raise
        finally:
            await conn.execute(sql_text("RESET lock_timeout"))
        return True

    async def release_lock(self, conn: AsyncConnection, name: str) -> None:
        await conn.execute(sql_text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
