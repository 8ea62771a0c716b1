"""Statements and answers of the SQL databases: parsed text, results, and errors' words.

Errors never carry a statement's parameters: a value the driver cannot encode is named by its
position (``$n``), not quoted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ductwork.providers.database import Result, row_dicts
from sqlalchemy import TextClause, text
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import DBAPIError

__all__ = ["execute_in", "reason", "sql_text", "to_result"]


@lru_cache(maxsize=512)
def sql_text(sql: str) -> TextClause:
    # text() scans the string for :name binds; the clause is immutable, so one per SQL string.
    return text(sql)


def to_result(cursor: CursorResult[Any]) -> Result:
    if not cursor.returns_rows:
        return Result(rowcount=cursor.rowcount)
    columns = list(cursor.keys())
    rows = row_dicts(columns, cursor.all())
    return Result(rows=rows, rowcount=cursor.rowcount, columns=columns)


def execute_in(engine: Engine, sql: str, params: Mapping[str, Any] | None) -> Result:
    # Runs inside one greenlet: checkout, execute, fetch, commit and checkin cost one switch
    # into SQLAlchemy's sync core instead of one per step through the async facade.
    with engine.begin() as conn:
        return to_result(conn.execute(sql_text(sql), params))


# asyncpg's words for a value it cannot encode: "... argument $2: 'the value' (why)".
_BAD_ARGUMENT = re.compile(
    r"(invalid input for query argument \$\d+(?: in element #\d+ of executemany\(\) sequence)?): "
)


def _unquoted(said: str, orig: BaseException) -> str:
    """``said`` without the parameter value asyncpg quotes when it cannot encode one."""
    found = _BAD_ARGUMENT.match(said)
    if found is None:
        return said
    where = found.group(1)
    cause = orig.__cause__  # the encoder's own error, perhaps behind SQLAlchemy's wrapper
    while cause is not None and _BAD_ARGUMENT.match(str(cause)):
        cause = cause.__cause__
    if cause is None:
        return where
    why = str(cause)
    if not said.endswith(f" ({why})"):
        return f"{where} ({type(cause).__name__})"
    quoted = said[found.end() : -len(why) - 3].removesuffix("...")  # repr, cut at 40 characters
    if not why or quoted in why or quoted.strip("'\"") in why:
        return f"{where} ({type(cause).__name__})"  # the reason repeats the value: drop it
    return f"{where} ({why})"


def reason(exc: BaseException) -> str:
    """What went wrong, from the driver's own error: never the statement or its parameters."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    args = orig.args
    if len(args) >= 2 and isinstance(args[0], int):  # (errno, message): PyMySQL and OSError
        said = f"{args[1]} (error {args[0]})"
    elif args:
        said = _unquoted(str(args[0]), orig)
    else:
        said = type(orig).__name__
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code and str(code) not in said:
        said = f"{said} (SQLSTATE {code})"
    return f"{type(orig).__name__}: {said}"
