"""Entry point of ductwork-falkordb: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Graph


@hookimpl
def register_providers(register: Register) -> None:
    """Register the ``falkordb`` graph (imported only when config selects it)."""
    register(Graph, "falkordb", "ductwork_falkordb.graph:FalkorDBGraph")
