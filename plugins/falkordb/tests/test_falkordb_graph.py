"""The ``falkordb`` graph on a real FalkorDB server: the conformance suite and its own behaviour."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pydantic
import pytest
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    ProviderError,
    UnsupportedError,
    ValidationError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.testing import GraphSuite
from ductwork.testing.servers import free_port
from ductwork_falkordb.graph import FalkorDBGraph

PASSWORD = "falkor-test-secret-never-printed"  # the server's (see conftest.py)


def ctx(name: str = "graphs.social") -> ProviderContext:
    return ProviderContext(resource=name, env="test", provider="falkordb")


class TestFalkorDBGraph(GraphSuite):
    @pytest.fixture
    async def provider(self, falkor_graph):
        return falkor_graph


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("graph", "falkordb")]
    assert entry.distribution == "ductwork-falkordb"
    assert get_registry().get("graph", "falkordb") is FalkorDBGraph


def test_options_reject_unknown_keys_and_hide_the_password():
    with pytest.raises(Exception, match="extra"):
        FalkorDBGraph.Options(hostname="x")
    options = FalkorDBGraph.Options(password="hidden-value")
    assert "hidden-value" not in repr(options)


def test_capabilities_are_none_schemaless_and_no_transactions():
    assert FalkorDBGraph.capabilities == frozenset()
    with pytest.raises(UnsupportedError, match="transactions"):
        FalkorDBGraph(context=ctx()).transaction()


def test_graph_name_defaults_to_the_resource_tag():
    assert FalkorDBGraph(context=ctx("graphs.social")).graph_name == "social"
    assert FalkorDBGraph(context=ctx("graphs.team.people")).graph_name == "people"
    assert FalkorDBGraph(context=ctx("adhoc")).graph_name == "ductwork"
    assert FalkorDBGraph.from_options(ctx(), graph="g1").graph_name == "g1"


def test_endpoint_never_carries_credentials():
    url = f"falkor://user:{PASSWORD}@db.example:7000"
    assert FalkorDBGraph.from_options(ctx(), url=url).endpoint == "falkor://db.example:7000"
    assert FalkorDBGraph.from_options(ctx(), host="h", port=1).endpoint == "falkor://h:1"


def test_a_url_with_an_unknown_scheme_is_refused_without_showing_it():
    with pytest.raises(pydantic.ValidationError, match="falkor://") as info:
        FalkorDBGraph.Options(url=f"http://user:{PASSWORD}@localhost:6379")
    assert PASSWORD not in str(info.value)


async def test_connection_refused_names_where_and_hides_the_secret():
    port = free_port()
    provider = FalkorDBGraph.from_options(
        ctx(), url=f"falkor://:{PASSWORD}@127.0.0.1:{port}", socket_connect_timeout=2
    )
    with pytest.raises(ConnectionFailedError) as info:
        await provider.open()
    message = str(info.value)
    for part in ("resource=graphs.social", "env=test", "provider=falkordb"):
        assert part in message
    assert f"endpoint=falkor://127.0.0.1:{port}" in message
    assert PASSWORD not in message and PASSWORD not in repr(info.value)
    assert info.value.__cause__ is not None


async def test_bad_credentials_raise_authentication_error(falkor):
    provider = FalkorDBGraph.from_options(
        ctx(), host=falkor.host, port=falkor.port, password="wrong-password-xyz"
    )
    with pytest.raises(AuthenticationError) as info:
        await provider.open()
    assert "wrong-password-xyz" not in str(info.value)
    assert "resource=graphs.social" in str(info.value)


async def test_host_port_and_password_options_connect(falkor):
    name = f"t{uuid.uuid4().hex[:12]}"
    async with FalkorDBGraph.from_options(
        ctx(), host=falkor.host, port=falkor.port, password=PASSWORD, graph=name
    ) as g:
        await g.ping()
        assert (await g.query("RETURN $x + 1 AS y", {"x": 41})).scalar() == 42
        await g.native.select_graph(name).delete()


async def test_calls_before_open_fail_clearly():
    with pytest.raises(ProviderError, match="not open"):
        await FalkorDBGraph(context=ctx()).query("RETURN 1")


async def test_relationships_and_paths_come_back_as_plain_dicts(falkor_graph):
    await falkor_graph.query(
        "CREATE (:Person {name: 'a', age: 1})-[:KNOWS {since: 2020}]->(:Person {name: 'b'})"
    )
    record = (
        await falkor_graph.query(
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
    assert record["p"] == {"_nodes": [x, y], "_rels": [k]}
    assert record["both"] == [x, y]
    assert record["m"] == {"friend": y}


async def test_values_are_bound_as_literals_of_their_type(falkor_graph):
    params = {
        "n": None,
        "b": True,
        "i": 2**62,
        "f": 1.5,
        "s": 'a"b\\c\n',
        "raw": "bytes é".encode(),
        "d": dt.date(2024, 2, 29),
        "l": [1, "two", [3], {"k": None}],
        "m": {"weird key": "x", "@type": "y"},
    }
    record = (
        await falkor_graph.query(
            "RETURN $n AS n, $b AS b, $i AS i, $f AS f, $s AS s, $raw AS raw, "
            "date($d) = date('2024-02-29') AS d, $l AS l, $m AS m",
            params,
        )
    ).one()
    assert record == {
        "n": None,
        "b": True,
        "i": 2**62,
        "f": 1.5,
        "s": 'a"b\\c\n',
        "raw": "bytes é",
        "d": True,
        "l": [1, "two", [3], {"k": None}],
        "m": {"weird key": "x", "@type": "y"},
    }


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"v": "a\x00b"}, "NUL"),
        ({"v": ["ok", "a\x00"]}, "NUL"),
        ({"v": object()}, "cannot bind a object"),
        ({"v": b"\xff"}, "UTF-8"),
        ({"v": {"a`b": 1}}, "backticks"),
        ({"not an identifier": 1}, "identifiers"),
    ],
)
async def test_values_that_cannot_be_bound_safely_are_refused_before_sending(
    falkor_graph, params, match
):
    with pytest.raises(ValidationError, match=match):
        await falkor_graph.query("RETURN 1 AS one", params)


async def test_concurrent_queries_share_the_pool(falkor):
    name = f"t{uuid.uuid4().hex[:12]}"
    async with FalkorDBGraph.from_options(
        ctx(), url=falkor.url, graph=name, max_connections=4
    ) as g:
        results = await asyncio.gather(
            *(g.query("CREATE (p:N {i: $i}) RETURN p.i AS i", {"i": i}) for i in range(40))
        )
        assert sorted(r.scalar() for r in results) == list(range(40))
        assert (await g.query("MATCH (p:N) RETURN count(p) AS n")).scalar() == 40
        await g.native.select_graph(name).delete()


async def test_server_errors_name_the_resource_and_keep_the_cause(falkor_graph):
    with pytest.raises(ProviderError) as info:
        await falkor_graph.query("RETURN nosuchfunction(1)")
    assert "query failed" in str(info.value) and "resource=graphs.social" in str(info.value)
    assert info.value.__cause__ is not None
    assert not isinstance(info.value, ConnectionFailedError)


async def test_query_timeout_is_enforced_by_the_server(falkor):
    async with FalkorDBGraph.from_options(
        ctx(), url=falkor.url, graph=f"t{uuid.uuid4().hex[:12]}", query_timeout=0.05
    ) as g:
        with pytest.raises(ProviderError, match=r"[Tt]imed out") as info:
            await g.query("UNWIND range(1, 10000) AS a UNWIND range(1, 10000) AS b RETURN count(*)")
        assert not isinstance(info.value, ConnectionFailedError)
        assert (await g.query("RETURN 1 AS ok")).scalar() == 1
