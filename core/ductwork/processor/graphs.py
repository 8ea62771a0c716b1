"""``dw.graphs``: Cypher queries and graph actions from config, on graph resources by tag.

A graph resource may list ``schema`` statements (node and relationship tables, for backends that
need them declared, e.g. the embedded ``ladybug``); they run once when the graph is first opened.

An action's ``max_rows`` refuses a result of more records with :class:`TooManyRowsError`. Graph
providers return a query's records whole (neither ladybug nor FalkorDB pages a result), so the
check comes after the query: it bounds what a caller receives and passes on, not what the
provider reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Unpack

from ductwork.config.models import GraphAction, GraphResource
from ductwork.errors import ProviderError
from ductwork.processor._actions import CYPHER_PARAMETER, ActionInputs, too_many_rows
from ductwork.processor._base import Group, JobOptions, Namespace
from ductwork.providers.graph import Graph, GraphResult, GraphSession

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.engine.spec import Job

__all__ = ["GraphActions", "Graphs"]


def _shape(result: GraphResult, action: GraphAction) -> Any:
    if action.result == "one":
        return result.one()
    if action.result == "scalar":
        return result.scalar()
    return result.records


@contextmanager
def _naming_action(graph: str, action: str) -> Iterator[None]:
    try:
        yield
    except ProviderError as exc:
        raise type(exc)(
            f"graph {graph!r} action {action!r} failed: {exc.message}", **exc.context()
        ) from exc


class GraphActions(Group):
    """``dw.graphs.action``: run graph actions declared in config."""

    def __init__(self, graphs: Graphs) -> None:
        self._graphs = graphs

    async def execute(
        self,
        graph: str,
        action: str,
        input: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
    ) -> Any:
        """Validate ``input``, run the action, return records, one record or a scalar."""
        env_name = self._graphs.env(env)
        spec, params = self._graphs.prepare(graph, action, input, env_name)
        provider = await self._graphs.provider(graph, env_name)
        with _naming_action(graph, action):
            result = await provider.query(spec.query, params)
        if spec.max_rows is not None and len(result.records) > spec.max_rows:
            raise too_many_rows(provider, "graph", graph, action, spec.max_rows)
        return _shape(result, spec)

    async def dispatch(
        self,
        graph: str,
        action: str,
        input: Mapping[str, Any] | None = None,
        **opts: Unpack[JobOptions],
    ) -> Job:
        """Run the graph action as a durable job; its input is validated now."""
        env_name = self._graphs.env(opts.get("env"))
        self._graphs.prepare(graph, action, input, env_name)
        self._graphs._checked(graph, env_name)
        payload = {"input": dict(input or {})}
        return await self._graphs._submit(
            "graphs.action", f"{graph}:{action}", graph, payload, opts
        )


class Graphs(Namespace):
    """The product's graph databases."""

    section = "graphs"

    def __init__(self, client: Ductwork) -> None:
        super().__init__(client)
        self.action = GraphActions(self)
        self._inputs: ActionInputs[GraphAction] = ActionInputs(
            "graph", CYPHER_PARAMETER, json_collections=False
        )
        self._ready: set[tuple[str, str]] = set()

    def env(self, env: str | None) -> str:
        """The env a call runs in."""
        return self._client.config.env_name(env or self._client.env)

    def _resource(self, graph: str) -> GraphResource:
        resource = self._client.config.resource(self.section, graph)
        assert isinstance(resource, GraphResource)
        return resource

    async def provider(self, graph: str, env: str | None = None) -> Graph:
        """The opened graph provider, its resource's schema statements applied once."""
        env_name = self.env(env)
        provider = await self._provider(graph, env_name, Graph)
        if (graph, env_name) not in self._ready:
            for statement in self._resource(graph).schema_:
                await provider.query(statement)
            self._ready.add((graph, env_name))
        return provider

    def prepare(
        self, graph: str, action: str, input: Mapping[str, Any] | None, env: str
    ) -> tuple[GraphAction, dict[str, Any]]:
        """The action's definition and its validated parameters."""
        return self._inputs.prepare(graph, action, self._resource(graph).actions, input, env)

    async def query(
        self,
        graph: str,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
    ) -> GraphResult:
        """Run a Cypher query with ``$name`` parameters bound from ``params``."""
        return await (await self.provider(graph, env)).query(cypher, params)

    async def dispatch(
        self,
        graph: str,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        **opts: Unpack[JobOptions],
    ) -> Job:
        """Run a Cypher query as a durable job (now, later or on a schedule)."""
        self._resource(graph)
        self._checked(graph, opts.get("env"))
        payload = {"cypher": cypher, "params": dict(params or {})}
        return await self._submit("graphs.query", graph, graph, payload, opts)

    @asynccontextmanager
    async def transaction(
        self, graph: str, *, env: str | None = None
    ) -> AsyncIterator[GraphSession]:
        """Queries that commit together (providers declaring ``transactions``)."""
        provider = await self.provider(graph, env)
        async with provider.transaction() as session:
            yield session
