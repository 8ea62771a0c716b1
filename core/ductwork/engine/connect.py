"""How the run store connects: drivers, SQLite's settings, and the error when it cannot.

``sqlite:///…`` runs on aiosqlite in WAL mode with ``synchronous=FULL`` and every writing
transaction ``BEGIN IMMEDIATE``; ``postgresql://…`` on asyncpg. A missing driver is a
:class:`~ductwork.errors.MissingDependencyError`; a database still unreachable when the store
stops waiting is a :class:`~ductwork.errors.ConnectionFailedError` naming the URL without its
password. A login the server refuses (SQLSTATE class 28: bad password, unknown role) is an
:class:`~ductwork.errors.AuthenticationError` and a database that does not exist (``3D000``) a
``ConnectionFailedError``, both at once: waiting cannot fix them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    ProgrammingError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ductwork._redact import redact
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    MissingDependencyError,
    ProviderError,
)

__all__ = ["check_out", "engine_for", "refused", "to_async_url", "transient", "unreachable"]


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is (for now) unreachable, so retrying may succeed."""
    if refused(exc) is not None:  # a refused login or a missing database: waiting cannot help
        return False
    if isinstance(exc, IntegrityError | ProgrammingError):
        return False
    if isinstance(exc, DBAPIError | OSError | ConnectionError | TimeoutError):
        return True
    # asyncpg errors raised while (re)connecting escape SQLAlchemy's wrapping, e.g.
    # CannotConnectNowError while the server is starting up.
    return type(exc).__module__.startswith("asyncpg")


def _root(exc: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's wrapping (asyncpg's carries the SQLSTATE)."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return cause


def refused(exc: BaseException) -> type[ProviderError] | None:
    """The error class when the server refused the login or has no such database, else ``None``."""
    state = str(getattr(_root(exc), "sqlstate", "") or "")
    if state.startswith("28"):
        return AuthenticationError
    if state == "3D000":
        return ConnectionFailedError
    return None


def to_async_url(url: str) -> str:
    """``sqlite:///x`` and ``postgresql://…`` with the asyncio drivers the store uses."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def engine_for(url: str, *, pool_size: int, connect_timeout: float | None) -> AsyncEngine:
    """An engine on ``url`` with the asyncio driver (SQLite: WAL, FULL sync, folder created)."""
    target = to_async_url(url)
    try:
        if target.startswith("sqlite"):
            _sqlite_folder(target)
            engine = create_async_engine(target, connect_args={"timeout": 30})
            _sqlite_setup(engine)
            return engine
        args = {} if connect_timeout is None else {"timeout": connect_timeout}
        engine = create_async_engine(target, pool_size=pool_size, connect_args=args)
        _ping_when_idle(engine)
        return engine
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            f"the jobs engine's store {url.split(':', 1)[0]!r} needs {exc.name}",
            install='pip install "ductwork[sql]"',
        ) from exc


#: a pooled connection unused for this long is pinged before it is handed out
IDLE_PING = 1.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled Postgres connection on checkout only when it may have gone stale.

    A ping on asyncpg is three round trips (``BEGIN``, ``;``, ``ROLLBACK``): paid on every
    checkout (``pool_pre_ping``) it was most of a dispatch's cost. Here a connection is pinged
    (:func:`check_out`) when it sat idle for :data:`IDLE_PING` seconds or its socket is already
    known closed; one in steady use is not. A connection that dies between two quick uses
    fails its statement and is discarded; the enqueue retries that once.
    """
    event.listen(engine.sync_engine, "connect", _used)
    event.listen(engine.sync_engine, "checkin", _used)
    event.listen(engine.sync_engine, "checkout", check_out)


def _used(_dbapi: Any, record: Any, *_: Any) -> None:
    record.info["used_at"] = time.monotonic()


def check_out(dbapi: Any, record: Any, _proxy: Any) -> None:
    """The pool's checkout hook: ping a connection idle for a while or known closed."""
    used = record.info.get("used_at")
    inner = getattr(dbapi, "_connection", None)  # asyncpg's own connection
    closed = inner is not None and inner.is_closed()
    if not closed and used is not None and time.monotonic() - used < IDLE_PING:
        return
    try:
        dbapi.ping()
    except Exception as exc:
        raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc


def unreachable(
    url: str,
    exc: Exception,
    attempts: int,
    elapsed: float,
    cls: type[ProviderError] = ConnectionFailedError,
) -> ProviderError:
    """The error :meth:`Store.open` gives up with: the URL without its password, the cause."""
    cause = _root(exc)
    detail = (str(cause).strip().splitlines() or [""])[0]
    reason = f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__
    tried = f"{attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f}s"
    return cls(f"cannot reach the jobs engine's store at {_safe_url(url)} ({tried}): {reason}")


def _safe_url(url: str) -> str:
    """``url`` as given, with any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return redact(url)


def _sqlite_folder(target: str) -> None:
    """Create the folder of an SQLite file (``sqlite+aiosqlite:///path/to/engine.db``)."""
    path = target.split(":///", 1)[1] if ":///" in target else ""
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_setup(engine: AsyncEngine) -> None:
    """WAL, synchronous=FULL, and BEGIN IMMEDIATE for every transaction (writers serialised)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # Store.tx() (every write) takes the write lock up front; reads stay deferred so a
        # reader never queues behind writers (WAL readers see the last committed state).
        write = conn.get_execution_options().get("ductwork_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
