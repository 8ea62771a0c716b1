"""``GraphSuite``: what every :class:`~ductwork.providers.Graph` must do.

Queries use the Cypher subset Kùzu/Ladybug and FalkorDB share. Providers that need a schema
(capability ``schema``) get :attr:`GraphSuite.SCHEMA` run once per fixture.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import pytest

from ductwork.errors import ProviderError, UnsupportedError
from ductwork.providers.graph import Graph

__all__ = ["GraphSuite"]

HOSTILE = ["'}) DETACH DELETE n //", '" OR 1=1', "$name", "\\'", "🙂 unicode"]


class _Boom(Exception):
    pass


class GraphSuite:
    """Subclass with a ``provider`` fixture yielding an opened Graph."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    SCHEMA: ClassVar[list[str]] = [
        "CREATE NODE TABLE IF NOT EXISTS Person(name STRING, age INT64, PRIMARY KEY(name))",
        "CREATE REL TABLE IF NOT EXISTS KNOWS(FROM Person TO Person, since INT64)",
    ]

    @pytest.fixture
    async def graph(self, provider: Graph) -> Graph:
        """The provider, with the suite's schema where it needs one."""
        if provider.supports("schema"):
            for statement in self.SCHEMA:
                await provider.query(statement)
        return provider

    @pytest.fixture
    def name(self) -> str:
        """A fresh name per test."""
        return f"p{uuid.uuid4().hex[:10]}"

    async def test_create_and_return_with_bound_parameters(self, graph: Graph, name: str) -> None:
        result = await graph.query(
            "CREATE (p:Person {name: $name, age: $age}) RETURN p.name AS name, p.age AS age",
            {"name": name, "age": 36},
        )
        assert result.records == [{"name": name, "age": 36}]
        assert result.columns == ["name", "age"]
        count = await graph.query(
            "MATCH (p:Person) WHERE p.name = $name RETURN count(p) AS n", {"name": name}
        )
        assert count.scalar() == 1

    async def test_relationships_are_matched(self, graph: Graph, name: str) -> None:
        a, b = f"{name}a", f"{name}b"
        await graph.query("CREATE (:Person {name: $n, age: 1})", {"n": a})
        await graph.query("CREATE (:Person {name: $n, age: 2})", {"n": b})
        await graph.query(
            "MATCH (x:Person), (y:Person) WHERE x.name = $a AND y.name = $b "
            "CREATE (x)-[:KNOWS {since: 2020}]->(y)",
            {"a": a, "b": b},
        )
        result = await graph.query(
            "MATCH (x:Person)-[k:KNOWS]->(y:Person) WHERE x.name = $a "
            "RETURN y.name AS friend, k.since AS since",
            {"a": a},
        )
        assert result.records == [{"friend": b, "since": 2020}]

    async def test_nodes_come_back_as_plain_dicts(self, graph: Graph, name: str) -> None:
        await graph.query("CREATE (:Person {name: $n, age: 5})", {"n": name})
        node = (
            await graph.query("MATCH (p:Person) WHERE p.name = $n RETURN p", {"n": name})
        ).scalar()
        assert isinstance(node, dict)
        assert node["name"] == name and node["age"] == 5
        assert "Person" in node["_labels"]

    @pytest.mark.parametrize("hostile", HOSTILE)
    async def test_parameters_are_bound_never_interpreted(
        self, graph: Graph, name: str, hostile: str
    ) -> None:
        value = f"{name}{hostile}"
        await graph.query("CREATE (:Person {name: $n, age: 1})", {"n": value})
        back = await graph.query(
            "MATCH (p:Person) WHERE p.name = $n RETURN p.name AS name", {"n": value}
        )
        assert back.records == [{"name": value}]

    async def test_transactions_roll_back_or_are_unsupported(self, graph: Graph, name: str) -> None:
        if not graph.supports("transactions"):
            with pytest.raises(UnsupportedError):
                async with graph.transaction():
                    pass
            return
        with pytest.raises(_Boom):
            async with graph.transaction() as tx:
                await tx.query("CREATE (:Person {name: $n, age: 1})", {"n": name})
                raise _Boom
        gone = await graph.query(
            "MATCH (p:Person) WHERE p.name = $n RETURN count(p) AS n", {"n": name}
        )
        assert gone.scalar() == 0
        async with graph.transaction() as tx:
            await tx.query("CREATE (:Person {name: $n, age: 1})", {"n": name})
        kept = await graph.query(
            "MATCH (p:Person) WHERE p.name = $n RETURN count(p) AS n", {"n": name}
        )
        assert kept.scalar() == 1

    async def test_bad_cypher_is_a_provider_error_naming_the_resource(self, graph: Graph) -> None:
        with pytest.raises(ProviderError) as info:
            await graph.query("MATCH (n RETURN n")
        assert info.value.resource == graph.context.resource
        assert info.value.__cause__ is not None
