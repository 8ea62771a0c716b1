"""Statements prepared on the ``postgres`` database's asyncpg connections, and their results.

A lone statement (:meth:`PostgresDatabase.execute <ductwork_sql.postgres.PostgresDatabase>`)
runs as a statement prepared on its pooled connection: the ``:name`` text compiled to ``$n``
placeholders once per text, prepared once per connection (least recently used dropped past the
cache size), its rows read as SQLAlchemy reads them.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from ductwork.providers.database import Result, row_dicts
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql.compiler import SQLCompiler

from ductwork_sql._results import sql_text

__all__ = ["DIALECT", "Prepared", "Statements", "positional"]

# SQLAlchemy's asyncpg dialect: compiles ``text()`` to ``$n`` placeholders (``numeric_dollar``).
DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]  # unannotated __init__
# The rowcount in a command's status message, read as SQLAlchemy's asyncpg dialect reads it.
_ROWCOUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


@lru_cache(maxsize=512)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    r"""``sql`` with ``$n`` placeholders, and the parameter name behind each ``$n``.

    SQLAlchemy's own compiler does it, so the statement reads exactly as ``text(sql)`` does in
    a transaction: ``\:`` is a literal colon, ``::`` a cast, and a name used twice is one ``$n``.
    """
    compiled = sql_text(sql).compile(dialect=DIALECT)
    assert isinstance(compiled, SQLCompiler)
    return compiled.string, tuple(compiled.positiontup or ())


class Prepared:
    """One statement prepared on one connection, with its column names."""

    __slots__ = ("columns", "statement")

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self.columns = tuple(attribute.name for attribute in statement.get_attributes())

    def result(self, rows: list[Any]) -> Result:
        match = _ROWCOUNT.match(self.statement.get_statusmsg() or "")
        rowcount = int(match.group(1)) if match else -1
        columns = self.columns
        if not columns:  # a command, not a query: no rows, as SQLAlchemy reports it
            return Result(rowcount=rowcount)
        return Result(rows=row_dicts(columns, rows), rowcount=rowcount, columns=list(columns))


class Statements:
    """The statements prepared on one asyncpg connection, least recently used first."""

    __slots__ = ("connection", "epoch", "prepared", "size")

    def __init__(self, connection: Any, epoch: int, size: int) -> None:
        self.connection = connection
        self.epoch = epoch
        self.size = size
        self.prepared: OrderedDict[str, Prepared] = OrderedDict()

    async def get(self, query: str) -> Prepared:
        prepared = self.prepared.get(query)
        if prepared is not None:
            self.prepared.move_to_end(query)
            return prepared
        prepared = Prepared(await self.connection.prepare(query))
        self.prepared[query] = prepared
        if len(self.prepared) > self.size:
            self.prepared.popitem(last=False)  # asyncpg closes it on the server when collected
        return prepared

    def discard(self, query: str) -> None:
        self.prepared.pop(query, None)
