"""``postgres`` database: PostgreSQL through SQLAlchemy 2 async and asyncpg.

Features: a pooled :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (``postgresql+asyncpg``);
``:name`` parameters bound by the driver; transactions, including DDL (``CREATE``/``ALTER``/
``DROP`` in a failed transaction roll back with it); named locks are session-level advisory
locks (``pg_advisory_lock`` on a 64-bit hash of the name, waiting at most ``timeout`` through
``lock_timeout``). asyncpg prepares each statement once per pooled connection and reuses it.

Configuration: ``url`` (``postgresql://``, ``postgres://`` or any ``postgresql+driver://``; the
driver part is replaced with ``+asyncpg``) or ``host``/``port`` (5432)/``user``/``password``/
``database``; ``statement_timeout`` becomes the server's ``statement_timeout`` for every session;
``connect_timeout`` bounds each new connection; ``ssl`` is ``disable``, ``require`` (encrypted,
certificate not checked) or ``verify`` (certificate and host name checked against the system
CAs). The rest is in :mod:`ductwork_sql._base`.

Errors: SQLSTATE class 28 (invalid authorization, unknown role, bad password) becomes
:class:`AuthenticationError`; class 08, ``57P01``-``57P03`` and ``53300`` (too many connections)
:class:`ConnectionFailedError`; everything else :class:`ProviderError` with the SQLSTATE.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from ductwork.errors import AuthenticationError, ConnectionFailedError, ProviderError
from ductwork.providers.base import Options
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from ductwork_sql._base import SqlDatabase, SqlOptions, _text

__all__ = ["PostgresDatabase", "PostgresOptions"]

_UNREACHABLE = frozenset({"57P01", "57P02", "57P03", "53300"})
_LOCK_NOT_AVAILABLE = "55P03"


class PostgresOptions(SqlOptions):
    """Options of the ``postgres`` database (see :class:`~ductwork_sql._base.SqlOptions`)."""

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
        {"transactions", "transactional_ddl", "locks"}
    )
    dialect: ClassVar[str] = "postgresql"
    driver: ClassVar[str] = "postgresql+asyncpg"
    default_port: ClassVar[int] = 5432
    autocommit_execute: ClassVar[bool] = True  # asyncpg switches modes without a round trip
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (
        SQLAlchemyError,
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    )

    def connect_args(self) -> dict[str, Any]:
        o = self.settings
        args: dict[str, Any] = {"timeout": o.connect_timeout, "ssl": self.ssl_context() or False}
        if o.statement_timeout is not None:
            ms = max(1, round(o.statement_timeout * 1000))
            args["server_settings"] = {"statement_timeout": str(ms)}
        return args

    def error_class(self, orig: BaseException) -> type[ProviderError]:
        state = _sqlstate(orig)
        if state.startswith("28"):
            return AuthenticationError
        if state.startswith("08") or state in _UNREACHABLE:
            return ConnectionFailedError
        if isinstance(orig, asyncpg.InterfaceError | OSError):
            return ConnectionFailedError
        return ProviderError

    async def acquire_lock(self, conn: AsyncConnection, name: str, timeout: float) -> bool:
        key = {"key": lock_key(name)}
        if timeout <= 0:
            got = await conn.execute(_text("SELECT pg_try_advisory_lock(:key)"), key)
            return bool(got.scalar())
        ms = f"{max(1, round(timeout * 1000))}ms"
        await conn.execute(_text("SELECT set_config('lock_timeout', :ms, false)"), {"ms": ms})
        try:
            await conn.execute(_text("SELECT pg_advisory_lock(:key)"), key)
        except DBAPIError as exc:
            if exc.orig is not None and _sqlstate(exc.orig) == _LOCK_NOT_AVAILABLE:
                return False
            raise
        finally:
            await conn.execute(_text("RESET lock_timeout"))
        return True

    async def release_lock(self, conn: AsyncConnection, name: str) -> None:
        await conn.execute(_text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
