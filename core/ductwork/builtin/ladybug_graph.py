"""``ladybug`` graph: an embedded Ladybug database (the maintained fork of Kùzu) in one file.

Features: Cypher with ``$name`` parameters bound by the engine (ladybug prepares each query once
per connection and reuses the plan); node and relationship tables declared up front (capability
``schema``); multi-query transactions (``BEGIN TRANSACTION`` / ``COMMIT`` / ``ROLLBACK``,
capability ``transactions``). Nodes come back as ``{"_id": "table:offset", "_labels": [label],
…properties}``, relationships as ``{"_id", "_type", "_src", "_dst", …properties}`` and paths as
``{"_nodes": [...], "_rels": [...]}``, at any depth of a returned list or map.

Ordering: one connection owned by one worker thread, so queries run one at a time in the order
they were awaited; a transaction holds the connection until it ends (other queries wait; the
task inside it must use its session: ``graph.query`` there is refused rather than deadlocked).
A query whose caller is cancelled still runs to its end on the worker thread (set
``query_timeout`` to bound it). A query sent as several ``;``-separated statements returns the
records of the last one.

Configuration: ``path`` (default ``.ductwork/graph.lbdb``, relative to the config's folder, or
``:memory:``), ``read_only``, ``buffer_pool_size`` (bytes; 0 = ladybug's default, ~80 % of RAM,
reserved as address space and filled on demand), ``max_threads`` (per query; 0 = all cores),
``query_timeout`` (seconds; none = no limit). ladybug locks the file: another process opening
it fails with :class:`ProviderError`.

Errors: ladybug reports every failure (syntax, binder, constraint, I/O, interruption) as
``RuntimeError``; it becomes :class:`ProviderError` naming the resource, with the original
chained. A query that fails inside a transaction rolls the transaction back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import ladybug
from pydantic import Field

from ductwork.builtin._thread import DedicatedThread
from ductwork.providers.base import Options
from ductwork.providers.graph import Graph, GraphResult, GraphSession

__all__ = ["LadybugGraph"]

T = TypeVar("T")

# Every ladybug failure is a RuntimeError; parameter conversion raises ValueError/TypeError.
_ERRORS = (RuntimeError, ValueError, TypeError)
_NODE_KEYS = frozenset({"_ID", "_LABEL"})
_REL_KEYS = frozenset({"_ID", "_LABEL", "_SRC", "_DST"})


class LadybugGraphOptions(Options):
    """Options of the ``ladybug`` graph."""

    path: str = ".ductwork/graph.lbdb"
    read_only: bool = False
    buffer_pool_size: int = Field(0, ge=0, description="bytes; 0 = ladybug's default")
    max_threads: int = Field(0, ge=0, description="threads per query; 0 = all cores")
    query_timeout: float | None = Field(None, gt=0, description="seconds; none = no limit")


def _internal_id(value: Any) -> Any:
    # ladybug's internal id is {"table": t, "offset": o}; Cypher's id() shows it as "t:o".
    if isinstance(value, dict):
        return f"{value.get('table')}:{value.get('offset')}"
    return value


def _plain(value: Any) -> Any:
    """Nodes, relationships and paths as plain dicts, at any depth of lists and maps."""
    if type(value) is list:
        return [_plain(v) for v in value]
    if type(value) is not dict:
        return value
    if "_LABEL" in value and "_ID" in value:
        props = {k: _plain(v) for k, v in value.items() if k not in _REL_KEYS}
        if "_SRC" in value:
            return {
                "_id": _internal_id(value["_ID"]),
                "_type": value["_LABEL"],
                "_src": _internal_id(value["_SRC"]),
                "_dst": _internal_id(value["_DST"]),
                **props,
            }
        return {"_id": _internal_id(value["_ID"]), "_labels": [value["_LABEL"]], **props}
    if value.keys() == {"_NODES", "_RELS"}:
        return {"_nodes": _plain(value["_NODES"]), "_rels": _plain(value["_RELS"])}
    return {k: _plain(v) for k, v in value.items()}


def _execute(conn: ladybug.Connection, cypher: str, params: dict[str, Any] | None) -> GraphResult:
    """Run on the worker thread: execute, read every record, release the result."""
    result = conn.execute(cypher, params)
    if isinstance(result, list):  # several statements: keep the last one's records
        for earlier in result[:-1]:
            earlier.close()
        result = result[-1]
    try:
        columns = result.get_column_names()
        records = []
        while result.has_next():
            row = result.get_next()
            records.append({c: _plain(v) for c, v in zip(columns, row, strict=True)})
    finally:
        result.close()
    return GraphResult(records, columns)


class _LadybugSession(GraphSession):
    def __init__(self, graph: LadybugGraph) -> None:
        self.graph = graph
        self.aborted = False

    async def query(self, cypher: str, params: Mapping[str, Any] | None = None) -> GraphResult:
        if self.aborted:
            raise self.graph.error("transaction already rolled back after a failed query")
        try:
            return await self.graph._query(cypher, params)
        except BaseException:
            # ladybug rolls back on most failures but not all (a parameter it cannot convert
            # fails before the engine sees the query): roll back here so both end the same.
            self.aborted = True
            await self.graph._rollback()
            raise


class LadybugGraph(Graph[LadybugGraphOptions]):
    """A Ladybug graph database file."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"transactions", "schema"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings: LadybugGraphOptions = self.options
        path = self.settings.path
        self.path = path if path == ":memory:" else str(self.context.resolve(path))
        self._thread = DedicatedThread("ductwork-ladybug")
        self._db: ladybug.Database | None = None
        self._conn: ladybug.Connection | None = None
        self._lock = asyncio.Lock()
        self._tx_owner: asyncio.Task[Any] | None = None  # the task inside transaction(), if any

    @property
    def endpoint(self) -> str:
        return f"ladybug://{self.path}"

    @property
    def native(self) -> ladybug.Connection:
        """The ``ladybug.Connection`` (call it only from the worker thread: see :meth:`run`)."""
        return self._connection()

    def _connection(self) -> ladybug.Connection:
        if self._conn is None:
            raise self.error("graph is not open")
        return self._conn

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the connection's worker thread, after what is queued there."""
        if not self._thread.running:
            raise self.error("graph is not open")
        return await self._thread.run(fn, *args)

    async def open(self) -> None:
        settings = self.settings
        if self.path != ":memory:" and not settings.read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

        def connect() -> tuple[ladybug.Database, ladybug.Connection]:
            db = ladybug.Database(
                self.path,
                buffer_pool_size=settings.buffer_pool_size,
                max_num_threads=settings.max_threads,
                read_only=settings.read_only,
            )
            try:
                conn = ladybug.Connection(db, num_threads=settings.max_threads)
                if settings.query_timeout is not None:
                    conn.set_query_timeout(max(1, round(settings.query_timeout * 1000)))
            except BaseException:
                db.close()
                raise
            return db, conn

        try:
            with self.translate(*_ERRORS, OSError, message="cannot open graph database"):
                self._db, self._conn = await self.run(connect)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if not self._thread.running:
            return
        conn, db = self._conn, self._db
        self._conn = self._db = None

        def shut() -> None:
            if conn is not None:
                conn.close()
            if db is not None:
                db.close()  # checkpoints the write-ahead log into the database file

        try:
            with self.translate(*_ERRORS, OSError, message="cannot close graph database"):
                await self.run(shut)
        finally:
            self._thread.stop()

    async def ping(self) -> None:
        await self.query("RETURN 1 AS ok")

    async def _query(self, cypher: str, params: Mapping[str, Any] | None) -> GraphResult:
        conn = self._connection()
        with self.translate(*_ERRORS, message="query failed"):
            return await self.run(_execute, conn, cypher, dict(params) if params else None)

    async def query(self, cypher: str, params: Mapping[str, Any] | None = None) -> GraphResult:
        if self._tx_owner is not None and self._tx_owner is asyncio.current_task():
            # It would wait for its own transaction to end: a deadlock, refused instead.
            raise self.error("inside transaction(), run queries through its session (tx.query)")
        async with self._lock:
            return await self._query(cypher, params)

    async def _rollback(self) -> None:
        # After a failed query ladybug may already have rolled back ("No active transaction").
        with suppress(*_ERRORS):
            await self.run(_execute, self._connection(), "ROLLBACK", None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[GraphSession]:
        async with self._lock:
            conn = self._connection()
            with self.translate(*_ERRORS, message="cannot begin transaction"):
                await self.run(_execute, conn, "BEGIN TRANSACTION", None)
            session = _LadybugSession(self)
            self._tx_owner = asyncio.current_task()
            try:
                yield session
            except BaseException:
                if not session.aborted:
                    await self._rollback()
                raise
            finally:
                self._tx_owner = None
            if session.aborted:
                raise self.error("transaction rolled back: a query in it failed")
            with self.translate(*_ERRORS, message="commit failed"):
                await self.run(_execute, conn, "COMMIT", None)
