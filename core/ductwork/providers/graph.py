"""The ``Graph`` interface: parameterised Cypher queries returning records.

Parameters are always bound: write ``$name`` in the query and pass a mapping. Records come back
as dicts keyed by the query's ``RETURN`` names; nodes and relationships are converted to plain
dicts (``{"_id", "_labels", …properties}`` / ``{"_id", "_type", …properties}``).

Capabilities:
    ``transactions``: :meth:`Graph.transaction` gives a session whose queries commit together.
    ``schema``: the backend needs node/relationship tables declared before use (Kùzu-style);
        providers without it are schemaless.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ductwork.providers.base import OptionsT, Provider

__all__ = ["Graph", "GraphResult", "GraphSession"]


@dataclass(frozen=True)
class GraphResult:
    """Records (dicts, in ``RETURN`` order) and the column names."""

    records: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def one(self) -> dict[str, Any] | None:
        """The first record, or ``None``."""
        return self.records[0] if self.records else None

    def scalar(self) -> Any:
        """The first value of the first record, or ``None``."""
        record = self.one()
        return next(iter(record.values())) if record else None


class GraphSession(ABC):
    """Queries inside a transaction."""

    @abstractmethod
    async def query(self, cypher: str, params: Mapping[str, Any] | None = None) -> GraphResult:
        """Run one query with ``$name`` parameters bound from ``params``."""


class Graph(Provider[OptionsT]):
    """A graph database speaking Cypher."""

    kind: ClassVar[str] = "graph"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"transactions", "schema"})

    @abstractmethod
    async def query(self, cypher: str, params: Mapping[str, Any] | None = None) -> GraphResult:
        """Run one query (its own transaction) and return its records."""

    def transaction(self) -> AbstractAsyncContextManager[GraphSession]:
        """A session whose queries commit on clean exit and roll back on error."""
        self.require("transactions")
        raise NotImplementedError  # pragma: no cover - providers declaring it override this
