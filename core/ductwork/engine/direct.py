"""One-trip SQLite writes: the hot writes of an SQLite store on a connection of their own.

Through SQLAlchemy's aiosqlite adapter one small transaction costs about eight trips between
the event loop and the driver's thread (cursor, execute and close for ``BEGIN`` and for each
statement, the commit, the pool's reset). The writes on the hot path — a step's checkpoint
(:mod:`ductwork.engine.checkpoints`) and a dispatch's enqueue — run instead as one call on the
store's own :class:`~ductwork.builtin._sqlite.SqliteThread`: ``BEGIN IMMEDIATE``, the
statements, ``COMMIT``, one trip. They hold the store's in-process write lock like every other
writer, so the two paths never wait on each other in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Boolean, event

from ductwork.engine._group import GroupCommit, Outcome
from ductwork.engine.records import RUN_COLUMNS, inserted
from ductwork.engine.schema import run

if TYPE_CHECKING:
    from ductwork.builtin._sqlite import SqliteThread
    from ductwork.engine.store import Store

__all__ = ["batched", "enqueue", "thread_for", "write"]

T = TypeVar("T")

_BOOLEAN = frozenset(c.name for c in run.c if isinstance(c.type, Boolean))
_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM {run.name} WHERE "

_THREADS: weakref.WeakKeyDictionary[Store, SqliteThread] = weakref.WeakKeyDictionary()
_OPENING: weakref.WeakKeyDictionary[Store, asyncio.Lock] = weakref.WeakKeyDictionary()


async def thread_for(store: Store) -> SqliteThread:
    """The store's own connection thread, opened on first use and closed with the store."""
    thread = _THREADS.get(store)
    if thread is not None:
        return thread
    lock = _OPENING.setdefault(store, asyncio.Lock())
    async with lock:
        thread = _THREADS.get(store)
        if thread is None:
            from ductwork.builtin._sqlite import SqliteThread

            path = store.engine.url.database
            if not path or path == ":memory:" or path.startswith("file:"):
                from ductwork.errors import ConfigError

                raise ConfigError("the run store needs an SQLite file (not :memory:)")
            thread = SqliteThread(path, busy_timeout_ms=30_000)
            await thread.open()
            _THREADS[store] = thread
            # closed with the store (its engine's dispose), queued writes first
            event.listen(store.engine.sync_engine, "engine_disposed", _closer(thread))
    return thread


def _closer(thread: SqliteThread) -> Callable[[Any], None]:
    def close(_engine: Any) -> None:
        thread.close_now()

    return close


async def write(store: Store, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction on the store's thread."""
    thread = await thread_for(store)
    lock = store._write_lock  # the store's writers and these, one at a time
    assert lock is not None

    def transaction() -> T:
        conn = thread.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async with lock:
        return await thread.run(transaction)


async def batched(store: Store, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(conn)`` in the next group commit of the store's thread; its result.

    Calls made while a commit is under way wait for the next one, which takes them all: many
    concurrent writers (sends logged by 50 deliveries in flight) share one ``BEGIN IMMEDIATE``
    … ``COMMIT`` and one fsync instead of queueing for one each. Each call runs inside a
    savepoint of its own, so one that raises is rolled back alone and gets its error; the
    others still commit.
    """
    group = _GROUPS.get(store)
    if group is None:
        group = _GROUPS[store] = GroupCommit(functools.partial(_commit, store))
    return await group.submit(fn)  # type: ignore[no-any-return]


Call = Callable[[sqlite3.Connection], Any]


async def _commit(store: Store, calls: list[Call]) -> list[Outcome]:
    return await write(store, functools.partial(_each, calls=calls))


def _each(conn: sqlite3.Connection, *, calls: list[Call]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for fn in calls:
        conn.execute("SAVEPOINT dw_call")
        try:
            outcomes.append((True, fn(conn)))
        except Exception as exc:
            conn.execute("ROLLBACK TO dw_call")
            outcomes.append((False, exc))
        conn.execute("RELEASE dw_call")
    return outcomes


_GROUPS: weakref.WeakKeyDictionary[Store, GroupCommit[Call]] = weakref.WeakKeyDictionary()


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(RUN_COLUMNS, values, strict=True))
    for name in _BOOLEAN:
        if row[name] is not None:
            row[name] = bool(row[name])
    return row


@functools.lru_cache(maxsize=4)
def _insert(columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {run.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


async def enqueue(store: Store, values: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Insert a run; with a live run of the same dedupe key, that one.

    Returns the run's row (as a SELECT of it gives it) and whether it was created.

    Alone, the insert is one statement in autocommit, its own transaction: SQLite takes the
    write lock for it (calling the busy handler while another writer holds it) and commits
    with its fsync, no ``BEGIN`` or ``COMMIT`` of its own. A dispatch that arrives while the
    store is writing rides the next group commit instead (:func:`batched`): fifty concurrent
    dispatches share a transaction and an fsync rather than queueing for one each. A refused
    insert with a dedupe key goes the same way: the insert again (the live run may have ended
    since), else the live run, in one transaction.
    """
    insert = _insert(tuple(values))
    params = tuple(values.values())
    thread = _THREADS.get(store) or await thread_for(store)
    lock = store._write_lock  # the store's writers and these, one at a time
    assert lock is not None
    # (no await between this check and the lock's acquisition below)
    if lock.locked():  # a write is under way: join the next commit, with whoever else waits
        return await batched(store, functools.partial(_insert_or_live, insert, params, values))

    def once() -> None:
        thread.connection().execute(insert, params)

    try:
        async with lock:
            await thread.run(once)
    except sqlite3.IntegrityError:
        if values.get("dedupe_key") is None:
            raise
        return await write(store, functools.partial(_insert_or_live, insert, params, values))
    return inserted(values), True


def _insert_or_live(
    insert: str, params: tuple[Any, ...], values: dict[str, Any], conn: sqlite3.Connection
) -> tuple[dict[str, Any], bool]:
    """Inside a transaction: the run inserted, or the live run holding its dedupe key."""
    try:
        conn.execute(insert, params)
    except sqlite3.IntegrityError:
        dedupe = values.get("dedupe_key")
        if dedupe is None:
            raise
        row = conn.execute(_SELECT + "dedupe_key = ?", (dedupe,)).fetchone()
        if row is None:  # not the dedupe index that refused it
            raise
        return _row(row), False
    return inserted(values), True
