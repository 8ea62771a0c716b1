"""Graph actions end to end through ``Ductwork`` on a real FalkorDB server."""

from __future__ import annotations

import uuid

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import ProviderError, UnsupportedError, ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def social_config(tmp_path, falkor, graph: str) -> Config:
    return Config.from_dict(
        {
            "product": "social",
            "environments": ["dev"],
            "graphs": {
                "social": {
                    "dev": {"provider": "falkordb", "url": falkor.url, "graph": graph},
                    "actions": {
                        "add": {
                            "query": "CREATE (p:Person {id: $id, name: $name, age: $age}) "
                            "RETURN p.id AS id",
                            "input": {"id": "str", "name": "str", "age": "int?"},
                            "result": "scalar",
                        },
                        "befriend": {
                            "query": "MATCH (a:Person {id: $a}), (b:Person {id: $b}) "
                            "CREATE (a)-[:KNOWS]->(b)",
                            "input": {"a": "str", "b": "str"},
                        },
                        "friends": {
                            "query": "MATCH (:Person {id: $id})-[:KNOWS]->(f:Person) "
                            "RETURN f.name AS name ORDER BY name",
                            "input": {"id": "str"},
                        },
                        "get": {
                            "query": "MATCH (p:Person {id: $id}) RETURN p",
                            "input": {"id": "str"},
                            "result": "one",
                        },
                        "broken": {
                            "query": "RETURN nosuchfunction($x) AS y",
                            "input": {"x": "int"},
                        },
                        "by_name": {
                            "query": "MATCH (p:Person) WHERE p.name = $name RETURN p.id AS id",
                            "input": {"name": "str"},
                        },
                    },
                }
            },
        },
        root=tmp_path,
    )


@pytest.fixture
async def dw(tmp_path, falkor):
    graph = f"t{uuid.uuid4().hex[:12]}"
    async with Ductwork(social_config(tmp_path, falkor, graph), env="dev") as client:
        yield client
        provider = await client.graphs.provider("social")
        await provider.native.select_graph(graph).delete()


async def test_graph_actions_run_end_to_end(dw, falkor):
    assert await dw.graphs.action.execute("social", "add", {"id": "1", "name": "Ada"}) == "1"
    await dw.graphs.action.execute("social", "add", {"id": "2", "name": "Bob", "age": 7})
    await dw.graphs.action.execute("social", "befriend", {"a": "1", "b": "2"})
    assert await dw.graphs.action.execute("social", "friends", {"id": "1"}) == [{"name": "Bob"}]
    got = await dw.graphs.action.execute("social", "get", {"id": "2"})
    assert got is not None
    assert got["p"]["name"] == "Bob" and got["p"]["age"] == 7 and got["p"]["_labels"] == ["Person"]
    with pytest.raises(ValidationError, match="age"):
        await dw.graphs.action.execute("social", "add", {"id": "3", "name": "C", "age": "old"})
    with pytest.raises(UnsupportedError, match="transactions"):
        async with dw.graphs.transaction("social"):
            pass


async def test_a_failing_action_names_the_graph_and_action(dw, falkor):
    with pytest.raises(ProviderError, match="graph 'social' action 'broken' failed") as info:
        await dw.graphs.action.execute("social", "broken", {"x": 1})
    assert info.value.resource == "graphs.social"
    assert falkor.password not in str(info.value)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # every example uses fresh ids, so sharing the graph is safe
@given(value=st.text(max_size=40))
async def test_hostile_action_input_is_bound_never_interpreted(dw, value):
    key = uuid.uuid4().hex
    if "\x00" in value:  # FalkorDB's parser stops at NUL: refused before anything is sent
        with pytest.raises(ValidationError, match="NUL"):
            await dw.graphs.action.execute("social", "add", {"id": key, "name": value})
        return
    await dw.graphs.action.execute("social", "add", {"id": key, "name": value})
    got = await dw.graphs.action.execute("social", "get", {"id": key})
    assert got is not None and got["p"]["name"] == value
    assert {"id": key} in await dw.graphs.action.execute("social", "by_name", {"name": value})
    count = await dw.graphs.query(
        "social", "MATCH (p:Person {id: $id}) RETURN count(p)", {"id": key}
    )
    assert count.scalar() == 1
