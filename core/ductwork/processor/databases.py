"""``dw.databases``: raw statements, database actions from config, transactions.

An action is a parameterised query declared in ``ductwork.yaml``. Its input is validated
against the declared types before anything runs, and parameters are always bound by the driver,
never formatted into the SQL.

Big results: ``stream`` (on the namespace, its ``action`` group and a transaction) yields rows
read ``batch_size`` at a time through the provider's cursor, so memory stays bounded by one
batch. An action's ``max_rows`` refuses a larger result with :class:`TooManyRowsError` as soon as
row ``max_rows + 1`` arrives: ``execute`` reads through the same cursor, never the whole result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Unpack

from ductwork.config.models import DatabaseAction, DatabaseResource
from ductwork.errors import ProviderError, TooManyRowsError, ValidationError
from ductwork.processor._actions import (
    SQL_PARAMETER,
    ActionInputs,
    query_parameters,
    rows_within,
    too_many_rows,
)
from ductwork.processor._base import Group, JobOptions, Namespace
from ductwork.processor.migrations import MigrationNamespace
from ductwork.providers.database import (
    DEFAULT_BATCH_SIZE,
    Connection,
    Database,
    Result,
    check_batch_size,
)

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
def _naming_action(database: str, action: str | None) -> Iterator[None]:
    """Say which action failed: the provider's error names the resource and env already."""
    try:
        yield
    except ProviderError as exc:
        if action is None or isinstance(exc, TooManyRowsError):  # that one names it already
            raise
        raise type(exc)(
            f"database {database!r} action {action!r} failed: {exc.message}",
            **exc.context(),
        ) from exc


# Rows per fetch when ``execute`` reads an action with ``max_rows`` through a cursor.
_LIMITED_BATCH = 10_000


async def _run_action(
    runner: Database | Connection,
    provider: Database,
    database: str,
    action: str,
    spec: DatabaseAction,
    params: dict[str, Any],
) -> Any:
    """Run the action on ``runner`` (the provider or a transaction's connection) and shape it."""
    limit = spec.max_rows
    with _naming_action(database, action):
        if limit is None:
            return _shape(await runner.execute(spec.query, params), spec)
        batches = runner.stream(spec.query, params, batch_size=min(limit + 1, _LIMITED_BATCH))
        return await rows_within(
            batches, limit, lambda: too_many_rows(provider, "database", database, action, limit)
        )


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
        """Run a database action inside the transaction (``max_rows`` read through a cursor)."""
        spec, params = self._ns.prepare(self._database, action, input, self._env)
        provider = await self._ns.provider(self._database, self._env)
        return await _run_action(self._conn, provider, self._database, action, spec, params)

    def stream(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """The rows of a raw query inside the transaction, read ``batch_size`` at a time.

        Finish (or leave) the loop before the next statement on the transaction.
        """
        check_batch_size(batch_size)
        return self._ns._stream(
            self._database, self._env, sql, dict(params or {}), None, None, batch_size, self._conn
        )

    def stream_action(
        self,
        action: str,
        input: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """The rows of a database action inside the transaction (``max_rows`` enforced)."""
        check_batch_size(batch_size)
        spec, params = self._ns.prepare(self._database, action, input, self._env)
        return self._ns._stream(
            self._database,
            self._env,
            spec.query,
            params,
            action,
            spec.max_rows,
            batch_size,
            self._conn,
        )


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
            return await _run_action(provider, provider, database, action, spec, params)

        if policy is None:
            return await run()
        key = call_key("databases", database, action, env_name, data=params)
        value, _ = await through_cache(self._ns._client, policy, key, env_name, run)
        return value

    def stream(
        self,
        database: str,
        action: str,
        input: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """The action's rows, read ``batch_size`` at a time through the provider's cursor.

        ``input`` and ``batch_size`` are validated now; the query runs when iteration starts.
        Rows come whatever the action's ``result`` says; past ``max_rows`` rows the iteration
        raises :class:`~ductwork.errors.TooManyRowsError`. Leaving the loop early closes the
        cursor and gives the connection back.
        """
        check_batch_size(batch_size)
        env_name = self._ns.env(env)
        spec, params = self._ns.prepare(database, action, input, env_name)
        return self._ns._stream(
            database, env_name, spec.query, params, action, spec.max_rows, batch_size
        )

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
        payload = {"input": dict(input or {})}
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

    def stream(
        self,
        database: str,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """The rows of a raw query, read ``batch_size`` at a time through a cursor."""
        check_batch_size(batch_size)
        return self._stream(database, env, sql, dict(params or {}), None, None, batch_size)

    async def _stream(
        self,
        database: str,
        env: str | None,
        sql: str,
        params: dict[str, Any],
        action: str | None,
        limit: int | None,
        batch_size: int,
        conn: Connection | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Rows of ``sql`` on the provider, or on ``conn`` (a transaction's) when given.

        Past ``limit`` rows (an action's ``max_rows``) :class:`TooManyRowsError`. One async
        generator between the caller and the provider's batches: each row costs one yield.
        """
        provider = await self.provider(database, env)
        batches = (conn or provider).stream(sql, params, batch_size=batch_size)
        seen = 0
        async with aclosing(batches):
            while True:
                with _naming_action(database, action):
                    batch = await anext(batches, None)
                if batch is None:
                    return
                seen += len(batch)
                if limit is not None and seen > limit:
                    for row in batch[: len(batch) - (seen - limit)]:
                        yield row
                    assert action is not None
                    raise too_many_rows(provider, "database", database, action, limit)
                for row in batch:
                    yield row

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
        payload = {"sql": sql, "params": dict(params or {})}
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
