"""``mysql`` database: MySQL and MariaDB through SQLAlchemy 2 async and aiomysql.

Features: a pooled :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (``mysql+aiomysql``, charset
``utf8mb4``); ``:name`` parameters bound by the driver; transactions for data (InnoDB). DDL is
not transactional here: MySQL and MariaDB commit implicitly before and after each ``CREATE``/
``ALTER``/``DROP``, so a table created in a transaction that then fails remains (the
``transactional_ddl`` capability is not declared). Named locks use ``GET_LOCK`` (the server waits
up to ``timeout``); names longer than 64 characters are replaced by their SHA-256 digest.

Configuration: ``url`` (``mysql://``, ``mariadb://`` or any ``mysql+driver://``; the driver part is
replaced with ``+aiomysql``) or ``host``/``port`` (3306)/``user``/``password``/``database``;
``statement_timeout`` is set on each new session as ``max_statement_time`` on MariaDB (every
statement) or ``max_execution_time`` on MySQL (read-only ``SELECT`` only); ``connect_timeout``;
``ssl`` is ``disable``, ``require`` (encrypted, certificate not checked) or ``verify``
(certificate and host name checked against ``ca_file``, else the system CAs), and
``cert_file``/``key_file`` present a client certificate: the context is aiomysql's ``ssl``
connect argument. The rest is in :mod:`ductwork_sql._base`.

Errors: server errors 1044/1045/1698 (access denied) become :class:`AuthenticationError`; client
errors 2002/2003/2005/2006/2013 (cannot connect, server gone, lost connection) and 2026 (TLS
failed, or ``ssl`` asked for but the server did not encrypt the session; aiomysql alone would
silently fall back to plain text) :class:`ConnectionFailedError`; everything else
:class:`ProviderError` with the error number.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import pymysql  # type: ignore[import-untyped]  # aiomysql raises PyMySQL's errors, untyped
from ductwork.errors import AuthenticationError, ConnectionFailedError, ProviderError
from ductwork.providers.base import Options
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ductwork_sql._base import SqlDatabase
from ductwork_sql._options import SqlOptions
from ductwork_sql._results import sql_text

__all__ = ["MySQLDatabase", "MySQLOptions"]

_DENIED = frozenset({1044, 1045, 1698})
_NO_TLS = 2026  # CR_SSL_CONNECTION_ERROR
_UNREACHABLE = frozenset({2002, 2003, 2005, 2006, 2013, 2055, _NO_TLS})
_MAX_LOCK_NAME = 64


class MySQLOptions(SqlOptions):
    """Options of the ``mysql`` database (see :class:`~ductwork_sql._options.SqlOptions`)."""

    schemes: ClassVar[frozenset[str]] = frozenset({"mysql", "mariadb"})


def lock_name(name: str) -> str:
    """``name`` as ``GET_LOCK`` accepts it (at most 64 characters)."""
    return name if len(name) <= _MAX_LOCK_NAME else hashlib.sha256(name.encode()).hexdigest()


class MySQLDatabase(SqlDatabase):
    """A MySQL or MariaDB database."""

    Options: ClassVar[type[Options]] = MySQLOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"transactions", "locks", "streaming"})
    dialect: ClassVar[str] = "mysql"
    driver: ClassVar[str] = "mysql+aiomysql"
    default_port: ClassVar[int] = 3306
    unbuffered_streams: ClassVar[bool] = True  # aiomysql's SSCursor
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (
        SQLAlchemyError,
        OSError,
        pymysql.err.MySQLError,
    )

    def connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "connect_timeout": self.settings.connect_timeout,
            "charset": "utf8mb4",
        }
        context = self.ssl_context()
        if context is not None:
            args["ssl"] = context
        return args

    def configure(self, engine: AsyncEngine) -> None:
        timeout = self.settings.statement_timeout
        tls = self.settings.ssl != "disable"
        if timeout is None and not tls:
            return
        dialect = engine.dialect

        # Runs for each new pooled connection, after SQLAlchemy has learnt the server's flavour.
        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                if tls:  # aiomysql falls back to plain text when the server has no TLS: refuse
                    cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                    row = cursor.fetchone()
                    if not row or not row[1]:
                        raise pymysql.err.OperationalError(
                            _NO_TLS, "ssl is required but the server did not encrypt the session"
                        )
                if timeout is not None:  # numbers built here, never user text
                    if getattr(dialect, "is_mariadb", False):
                        cursor.execute(f"SET SESSION max_statement_time = {float(timeout)}")
                    else:
                        ms = max(1, round(timeout * 1000))
                        cursor.execute(f"SET SESSION max_execution_time = {ms}")
            finally:
                cursor.close()

        event.listen(engine.sync_engine, "connect", on_connect)

    def error_class(self, orig: BaseException) -> type[ProviderError]:
        code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
        if code in _DENIED:
            return AuthenticationError
        if code in _UNREACHABLE or isinstance(orig, OSError):
            return ConnectionFailedError
        return ProviderError

    async def acquire_lock(self, conn: AsyncConnection, name: str, timeout: float) -> bool:
        got = await conn.execute(
            sql_text("SELECT GET_LOCK(:name, :timeout)"),
            {"name": lock_name(name), "timeout": max(0.0, timeout)},
        )
        return got.scalar() == 1

    async def release_lock(self, conn: AsyncConnection, name: str) -> None:
        await conn.execute(sql_text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name(name)})
