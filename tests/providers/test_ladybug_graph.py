"""The embedded ``ladybug`` graph: the conformance suite, its own behaviour, and graph actions."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from ductwork.builtin.ladybug_graph import LadybugGraph
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import ConfigError, ProviderError, TooManyRowsError, ValidationError
from ductwork.providers import ProviderContext
from ductwork.testing import GraphSuite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def ctx(tmp_path: Path) -> ProviderContext:
    return ProviderContext(resource="graphs.test", env="test", provider="ladybug", root=tmp_path)


@pytest.fixture
async def people(tmp_path):
    database = tmp_path / "graph.lbdb"
    async with LadybugGraph.from_options(ctx(tmp_path), path="graph.lbdb") as provider:
        for statement in GraphSuite.SCHEMA:
            await provider.query(statement)
        yield provider
    database.unlink(missing_ok=True)  # the database is this one file


class TestLadybugGraph(GraphSuite):
    @pytest.fixture
    async def provider(self, tmp_path):
        database = tmp_path / "suite.lbdb"
        async with LadybugGraph.from_options(ctx(tmp_path), path="suite.lbdb") as p:
            yield p
        database.unlink(missing_ok=True)


def test_options_refuse_unknown_keys():
    with pytest.raises(Exception, match="extra"):
        LadybugGraph.Options(pth="x.lbdb")
    with pytest.raises(Exception, match="greater than or equal"):
        LadybugGraph.Options(max_threads=-1)


def test_default_path_is_relative_to_the_config_folder(tmp_path):
    provider = LadybugGraph(context=ctx(tmp_path))
    assert provider.endpoint == f"ladybug://{tmp_path / '.ductwork/graph.lbdb'}"


async def test_the_database_is_one_file_that_survives_a_reopen(tmp_path):
    async with LadybugGraph.from_options(ctx(tmp_path), path="db/keep.lbdb") as g:
        for statement in GraphSuite.SCHEMA:
            await g.query(statement)
        await g.query("CREATE (:Person {name: 'ada', age: 36})")
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["keep.lbdb"]
    async with LadybugGraph.from_options(ctx(tmp_path), path="db/keep.lbdb", read_only=True) as g:
        age = await g.query("MATCH (p:Person) WHERE p.name = $n RETURN p.age AS age", {"n": "ada"})
        assert age.scalar() == 36
        with pytest.raises(ProviderError, match="query failed"):
            await g.query("CREATE (:Person {name: 'bob', age: 1})")


async def test_an_in_memory_graph_keeps_nothing_on_disk(tmp_path):
    async with LadybugGraph.from_options(ctx(tmp_path), path=":memory:") as g:
        assert g.endpoint == "ladybug://:memory:"
        await g.ping()
        for statement in GraphSuite.SCHEMA:
            await g.query(statement)
        async with g.transaction() as tx:
            await tx.query("CREATE (:Person {name: 'm', age: 1})")
        assert (await g.query("MATCH (p:Person) RETURN count(p) AS n")).scalar() == 1
    assert list(tmp_path.iterdir()) == []


async def test_relationships_and_paths_come_back_as_plain_dicts(people):
    await people.query("CREATE (:Person {name: 'a', age: 1}), (:Person {name: 'b', age: 2})")
    await people.query(
        "MATCH (x:Person), (y:Person) WHERE x.name = 'a' AND y.name = 'b' "
        "CREATE (x)-[:KNOWS {since: 2020}]->(y)"
    )
    record = (
        await people.query(
            "MATCH p = (x:Person)-[k:KNOWS]->(y:Person) RETURN x, k, y, p, [x, y] AS both, "
            "{friend: y} AS m"
        )
    ).one()
    assert record is not None
    x, k, y = record["x"], record["k"], record["y"]
    assert x == {"_id": x["_id"], "_labels": ["Person"], "name": "a", "age": 1}
    assert k == {
        "_id": k["_id"],
        "_type": "KNOWS",
        "_src": x["_id"],
        "_dst": y["_id"],
        "since": 2020,
    }
    assert [n["name"] for n in record["p"]["_nodes"]] == ["a", "b"]
    assert record["p"]["_rels"] == [k]
    assert [n["name"] for n in record["both"]] == ["a", "b"]
    assert record["m"]["friend"]["_labels"] == ["Person"]


async def test_several_statements_return_the_last_ones_records(people):
    result = await people.query(
        "CREATE (:Person {name: 'x', age: 1}); MATCH (p:Person) RETURN count(p) AS n"
    )
    assert result.records == [{"n": 1}]


async def test_a_failed_query_rolls_its_transaction_back(people):
    with pytest.raises(ProviderError, match="duplicated primary key"):
        async with people.transaction() as tx:
            await tx.query("CREATE (:Person {name: 'dup', age: 1})")
            await tx.query("CREATE (:Person {name: 'dup', age: 2})")
    assert (await people.query("MATCH (p:Person) RETURN count(p) AS n")).scalar() == 0


async def test_a_transaction_whose_failure_was_caught_does_not_commit(people):
    with pytest.raises(ProviderError, match="rolled back"):
        async with people.transaction() as tx:
            await tx.query("CREATE (:Person {name: 'a', age: 1})")
            with pytest.raises(ProviderError):
                await tx.query("RETURN $v AS v", {"v": object()})
            with pytest.raises(ProviderError, match="already rolled back"):
                await tx.query("CREATE (:Person {name: 'b', age: 1})")
    assert (await people.query("MATCH (p:Person) RETURN count(p) AS n")).scalar() == 0


async def test_other_queries_wait_for_a_transaction(people):
    import asyncio

    async with people.transaction() as tx:
        await tx.query("CREATE (:Person {name: 'a', age: 1})")
        outside = asyncio.create_task(people.query("MATCH (p:Person) RETURN count(p) AS n"))
        await asyncio.sleep(0.05)  # give the outside query every chance to run inside
        assert not outside.done()
    assert (await outside).scalar() == 1


async def test_querying_the_graph_inside_its_own_transaction_is_refused_not_deadlocked(people):
    with pytest.raises(ProviderError, match="through its session"):
        async with people.transaction():
            await people.query("RETURN 1 AS one")
    assert (await people.query("RETURN 1 AS one")).scalar() == 1


async def test_query_timeout_interrupts_a_long_query(tmp_path):
    import asyncio
    import time

    async with LadybugGraph.from_options(ctx(tmp_path), path="t.lbdb", query_timeout=0.05) as g:
        started = time.monotonic()
        # 10^12 rows that cannot be summed without visiting each: hours of work, never a race
        # (a count(*) is answered from the factorised plan in milliseconds, so it cannot serve).
        with pytest.raises(ProviderError, match="Interrupted"):
            await asyncio.wait_for(
                g.query(
                    "UNWIND range(1, 1000000) AS a UNWIND range(1, 1000000) AS b "
                    "RETURN sum(a * b) AS n"
                ),
                timeout=30,
            )
        assert time.monotonic() - started < 30
        assert (await g.query("RETURN 1 AS ok")).scalar() == 1


async def test_open_failures_name_the_resource_and_chain_the_cause(tmp_path):
    provider = LadybugGraph.from_options(ctx(tmp_path), path="missing.lbdb", read_only=True)
    with pytest.raises(ProviderError) as info:
        await provider.open()
    message = str(info.value)
    assert "cannot open graph database" in message
    assert "resource=graphs.test" in message and "provider=ladybug" in message
    assert "env=test" in message and "missing.lbdb" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(ProviderError, match="not open"):
        await provider.query("RETURN 1")


# -- graph actions end to end through Ductwork ----------------------------------------------


def social_config(tmp_path: Path) -> Config:
    return Config.from_dict(
        {
            "product": "social",
            "environments": ["dev"],
            "graphs": {
                "social": {
                    "dev": {"provider": "ladybug", "path": ".ductwork/social.lbdb"},
                    "schema": [
                        "CREATE NODE TABLE IF NOT EXISTS Person("
                        "id STRING, name STRING, age INT64, PRIMARY KEY(id))",
                        "CREATE REL TABLE IF NOT EXISTS KNOWS(FROM Person TO Person)",
                    ],
                    "actions": {
                        "add": {
                            "query": "CREATE (p:Person {id: $id, name: $name, age: $age}) "
                            "RETURN p.id AS id",
                            "input": {"id": "str", "name": "str", "age": "int?"},
                            "result": "scalar",
                        },
                        "befriend": {
                            "query": "MATCH (a:Person), (b:Person) WHERE a.id = $a AND b.id = $b "
                            "CREATE (a)-[:KNOWS]->(b)",
                            "input": {"a": "str", "b": "str"},
                        },
                        "friends": {
                            "query": "MATCH (p:Person)-[:KNOWS]->(f:Person) WHERE p.id = $id "
                            "RETURN f.name AS name ORDER BY name",
                            "input": {"id": "str"},
                        },
                        "get": {
                            "query": "MATCH (p:Person) WHERE p.id = $id RETURN p",
                            "input": {"id": "str"},
                            "result": "one",
                        },
                        "by_name": {
                            "query": "MATCH (p:Person) WHERE p.name = $name RETURN p.id AS id",
                            "input": {"name": "str"},
                        },
                        "first_people": {
                            "query": "MATCH (p:Person) RETURN p.id AS id ORDER BY id",
                            "max_rows": 2,
                        },
                    },
                }
            },
        },
        root=tmp_path,
    )


@pytest.fixture
async def dw(tmp_path):
    async with Ductwork(social_config(tmp_path), env="dev") as client:
        yield client
    (tmp_path / ".ductwork/social.lbdb").unlink(missing_ok=True)


async def test_graph_actions_run_end_to_end(dw, tmp_path):
    assert await dw.graphs.action.execute("social", "add", {"id": "1", "name": "Ada"}) == "1"
    await dw.graphs.action.execute("social", "add", {"id": "2", "name": "Bob", "age": 7})
    await dw.graphs.action.execute("social", "befriend", {"a": "1", "b": "2"})
    assert await dw.graphs.action.execute("social", "friends", {"id": "1"}) == [{"name": "Bob"}]
    got = await dw.graphs.action.execute("social", "get", {"id": "2"})
    assert got is not None
    assert got["p"]["name"] == "Bob" and got["p"]["age"] == 7 and got["p"]["_labels"] == ["Person"]
    assert (tmp_path / ".ductwork/social.lbdb").exists()
    with pytest.raises(ValidationError, match="age"):
        await dw.graphs.action.execute("social", "add", {"id": "3", "name": "C", "age": "old"})
    with pytest.raises(ProviderError, match="graph 'social' action 'add' failed") as info:
        await dw.graphs.action.execute("social", "add", {"id": "1", "name": "again"})
    assert info.value.resource == "graphs.social"


async def test_max_rows_refuses_more_records(dw):
    await dw.graphs.action.execute("social", "add", {"id": "1", "name": "Ada"})
    await dw.graphs.action.execute("social", "add", {"id": "2", "name": "Bob"})
    ids = await dw.graphs.action.execute("social", "first_people")
    assert ids == [{"id": "1"}, {"id": "2"}]
    await dw.graphs.action.execute("social", "add", {"id": "3", "name": "Cy"})
    with pytest.raises(TooManyRowsError, match=r"graph 'social' action 'first_people'.*=2") as info:
        await dw.graphs.action.execute("social", "first_people")
    assert info.value.limit == 2
    assert info.value.resource == "graphs.social"


async def test_an_undeclared_action_parameter_is_a_config_error(tmp_path):
    bad = Config.from_dict(
        {
            "product": "p",
            "environments": ["dev"],
            "graphs": {
                "g": {
                    "dev": {"provider": "ladybug", "path": "g.lbdb"},
                    "actions": {"a": {"query": "RETURN $x AS x"}},
                }
            },
        },
        root=tmp_path,
    )
    async with Ductwork(bad, env="dev") as client:
        with pytest.raises(ConfigError, match=r"\$?x"):
            await client.graphs.action.execute("g", "a", {})


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # every example uses fresh ids, so sharing the database is safe
@given(value=st.text(max_size=40))
async def test_hostile_action_input_is_bound_never_interpreted(dw, value):
    key = uuid.uuid4().hex
    await dw.graphs.action.execute("social", "add", {"id": key, "name": value})
    got = await dw.graphs.action.execute("social", "get", {"id": key})
    assert got is not None and got["p"]["name"] == value
    ids = await dw.graphs.action.execute("social", "by_name", {"name": value})
    assert {"id": key} in ids
    assert (await dw.graphs.query("social", "MATCH (p:Person) RETURN count(p) AS n")).scalar() >= 1
