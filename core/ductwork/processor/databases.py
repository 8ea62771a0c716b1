"""``dw.databases``: raw statements, database actions from config, transactions.

An action is a parameterised query declared in ``ductwork.yaml``. Its input is validated
against the declared types before anything runs, and parameters are always bound by the driver,
never formatted into the SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Unpack

from ductwork.config.models import DatabaseAction, DatabaseResource
from ductwork.errors import ProviderError, ValidationError
from ductwork.processor._actions import SQL_PARAMETER, ActionInputs, query_parameters
from ductwork.processor._base import Group, JobOptions, Namespace, json_payload
from ductwork.processor.migrations import MigrationNamespace
from ductwork.providers.database import Connection, Database, Result

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config
    from ductwork.engine.spec import Job

__all__ = ["ActionNamespace", "Databases", "Transaction", "query_parameters"]


def _shape(result: Result, action: DatabaseAction) -> Any:
    if action.result == "one":
        return result.one()
    if action.result == "scalar":
        return result.scalar()
    if action.result == "count":
        return result.rowcount
    return result.rows


@contextmanager
def _naming_action(database: str, action: str) -> Iterator[None]:
    """Say which action failed: the provider's error names the resource and env already."""
    try:
        yield
    except ProviderError as exc:
        raise type(exc)(
            f"database {database!r} action {action!r} failed: {exc.message}",
            **exc.context(),
        ) from exc


class Transaction:
    """Statements and actions that commit together (``async with dw.databases.transaction``)."""

    def __init__(self, namespace: Databases, database: str, env: str, conn: Connection) -> None:
        self._ns = namespace
        self._database = database
        self._env = env
        self._conn = conn

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Result:
        """Run a raw statement inside the transaction."""
        return await self._conn.execute(sql, params)

    async def action(self, action: str, input: Mapping[str, Any] | None = None) -> Any:
        """Run a database action inside the transaction."""
        spec, params = self._ns.prepare(self._database, action, input, self._env)
        with _naming_action(self._database, action):
            return _shape(await self._conn.execute(spec.query, params), spec)


class ActionNamespace(Group):
    """``dw.databases.action``: run actions declared in config."""

    def __init__(self, namespace: Databases) -> None:
        self._ns = namespace

    async def execute(
        self,
        database: str,
        action: str,
        input: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
        cache: str | Mapping[str, Any] | None = None,
    ) -> Any:
        """Validate ``input``, run the action, return rows, one row, a scalar or the count.

        ``cache`` (a cache's tag or ``{tag, ttl, lock, stale}``) reuses a stored result for the
        same input, as ``actions.run(cache=…)`` does; the result must be JSON.
        """
        from ductwork.processor._flights import cache_policy, call_key, through_cache

        env_name = self._ns.env(env)
        spec, params = self._ns.prepare(database, action, input, env_name)
        policy = cache_policy(cache)

        async def run() -> Any:
            provider = await self._ns.provider(database, env_name)
            with _naming_action(database, action):
                return _shape(await provider.execute(spec.query, params), spec)

        if policy is None:
            return await run()
        key = call_key("databases", database, action, env_name, data=params)
        value, _ = await through_cache(self._ns._client, policy, key, env_name, run)
        return value

    async def dispatch(
        self,
        database: str,
        action: str,
        input: Mapping[str, Any] | None = None,
        **opts: Unpack[JobOptions],
    ) -> Job:
        """Run the action as a durable job; its input is validated now, before storing."""
        env_name = self._ns.env(opts.get("env"))
        self._ns.prepare(database, action, input, env_name)
        self._ns._checked(database, env_name)
        payload = {"input": json_payload(dict(input or {}), "the action's input")}
        return await self._ns._submit(
            "databases.action", f"{database}:{action}", database, payload, opts
        )


class Databases(Namespace):
    """The product's databases."""

    section = "databases"

    def __init__(self, client: Ductwork) -> None:
        super().__init__(client)
        self.action = ActionNamespace(self)
        self.migration = MigrationNamespace(self)
        self._inputs: ActionInputs[DatabaseAction] = ActionInputs("database", SQL_PARAMETER)

    @property
    def config(self) -> Config:
        """The client's config."""
        return self._client.config

    def env(self, env: str | None) -> str:
        """The env a call runs in."""
        return self._client.config.env_name(env or self._client.env)

    async def provider(self, database: str, env: str | None = None) -> Database:
        """The opened database provider."""
        return await self._provider(database, env, Database)

    async def execute(
        self,
        database: str,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
    ) -> Result:
        """Run a raw statement with ``:name`` parameters bound from ``params``."""
        return await (await self.provider(database, env)).execute(sql, params)

    async def dispatch(
        self,
        database: str,
        sql: str,
        params: Mapping[str, Any] | None = None,
        **opts: Unpack[JobOptions],
    ) -> Job:
        """Run a raw statement as a durable job (now, later or on a schedule)."""
        if not sql.strip():
            raise ValidationError("databases.dispatch needs a statement")
        self._checked(database, opts.get("env"))
        payload = {"sql": sql, "params": json_payload(dict(params or {}), "params")}
        return await self._submit("databases.execute", database, database, payload, opts)

    @asynccontextmanager
    async def transaction(
        self, database: str, *, env: str | None = None
    ) -> AsyncIterator[Transaction]:
        """Statements and actions that commit together or not at all."""
        provider = await self.provider(database, env)
        provider.require("transactions")
        async with provider.transaction() as conn:
            yield Transaction(self, database, self.env(env), conn)

    def prepare(
        self, database: str, action: str, input: Mapping[str, Any] | None, env: str
    ) -> tuple[DatabaseAction, dict[str, Any]]:
        """The action's definition and its validated, bindable parameters."""
        resource = self._client.config.resource(self.section, database)
        assert isinstance(resource, DatabaseResource)
        return self._inputs.prepare(database, action, resource.actions, input, env)
