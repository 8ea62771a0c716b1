"""The ``Database`` interface: SQL with bound parameters, transactions.

Parameters are always bound, never formatted into SQL: write ``:name`` placeholders and pass
a mapping. Every provider accepts that one style and converts it for its driver.

Capabilities:
    ``transactions``: :meth:`Database.transaction` gives a connection whose statements commit
        together or not at all.
    ``transactional_ddl``: DDL (``CREATE``/``ALTER``/``DROP``) inside a transaction rolls back too.
    ``locks``: :meth:`Database.lock` takes a named lock that excludes every other holder, in any
        process, until released (Postgres advisory locks, MySQL ``GET_LOCK``, a file lock for
        SQLite). Migrations need it so two runners never apply the same migration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ductwork.providers.base import OptionsT, Provider

__all__ = ["Connection", "Database", "Result"]


@dataclass(frozen=True)
class Result:
    """Rows (as dicts, in column order) and the number of rows affected."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rowcount: int = -1
    columns: list[str] = field(default_factory=list)

    def one(self) -> dict[str, Any] | None:
        """The first row, or ``None``."""
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or ``None``."""
        row = self.one()
        return next(iter(row.values())) if row else None


class Connection(ABC):
    """A connection inside a transaction."""

    @abstractmethod
    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        """Run one statement with ``:name`` parameters bound from ``params``."""


class Database(Provider[OptionsT]):
    """Execute statements; group them in transactions."""

    kind: ClassVar[str] = "database"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset(
        {"transactions", "transactional_ddl", "locks"}
    )
    dialect: ClassVar[str] = ""

    @abstractmethod
    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        """Run one statement in its own transaction and return its rows and rowcount."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A connection whose statements commit on clean exit and roll back on error."""

    def lock(self, name: str, *, timeout: float = 60.0) -> AbstractAsyncContextManager[None]:
        """Hold the named lock for the ``async with`` block (``locks`` capability).

        Raises :class:`ProviderError` if it cannot be had within ``timeout`` seconds.
        """
        self.require("locks")
        raise NotImplementedError  # pragma: no cover - providers declaring "locks" override it
