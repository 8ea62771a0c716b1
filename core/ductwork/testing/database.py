"""``DatabaseSuite``: what every :class:`~ductwork.providers.Database` must do.

Statements use a portable subset of SQL (``INTEGER``, ``VARCHAR``), so one suite serves SQLite,
PostgreSQL and MySQL/MariaDB. Each test works in its own freshly named table.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

import pytest

from ductwork.errors import ProviderError, TooManyRowsError, UnsupportedError, ValidationError
from ductwork.processor._actions import rows_within
from ductwork.providers.database import Database

__all__ = ["DatabaseSuite"]

HOSTILE = ["'; DROP TABLE x; --", '" OR 1=1 --', "\\'", ":name", "%s", "?", "$1", "🙂"]


class _Boom(Exception):
    pass


class DatabaseSuite:
    """Subclass with a ``provider`` fixture yielding an opened Database."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest.fixture
    async def table(self, provider: Database) -> AsyncIterator[str]:
        """A fresh table ``(id INTEGER PRIMARY KEY, name VARCHAR(200), score INTEGER)``."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        await provider.execute(
            f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name VARCHAR(200), score INTEGER)"
        )
        yield name
        await provider.execute(f"DROP TABLE IF EXISTS {name}")

    async def test_insert_and_select_with_bound_parameters(
        self, provider: Database, table: str
    ) -> None:
        result = await provider.execute(
            f"INSERT INTO {table} (id, name, score) VALUES (:id, :name, :score)",
            {"id": 1, "name": "ada", "score": 10},
        )
        assert result.rowcount == 1
        rows = (
            await provider.execute(f"SELECT id, name, score FROM {table} WHERE id = :id", {"id": 1})
        ).rows
        assert rows == [{"id": 1, "name": "ada", "score": 10}]

    async def test_rowcount_counts_updated_rows(self, provider: Database, table: str) -> None:
        for i in range(4):
            await provider.execute(
                f"INSERT INTO {table} (id, name, score) VALUES (:id, :n, :s)",
                {"id": i, "n": f"n{i}", "s": i},
            )
        result = await provider.execute(
            f"UPDATE {table} SET score = score + 1 WHERE score >= :min", {"min": 2}
        )
        assert result.rowcount == 2
        assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 4

    @pytest.mark.parametrize("hostile", HOSTILE)
    async def test_parameters_are_bound_never_interpreted(
        self, provider: Database, table: str, hostile: str
    ) -> None:
        await provider.execute(
            f"INSERT INTO {table} (id, name) VALUES (:id, :name)", {"id": 7, "name": hostile}
        )
        row = (
            await provider.execute(
                f"SELECT name FROM {table} WHERE name = :name", {"name": hostile}
            )
        ).one()
        assert row == {"name": hostile}
        assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 1

    async def test_transaction_commits_together(self, provider: Database, table: str) -> None:
        provider.require("transactions")
        async with provider.transaction() as tx:
            await tx.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'a')")
            await tx.execute(f"INSERT INTO {table} (id, name) VALUES (2, 'b')")
            inside = await tx.execute(f"SELECT COUNT(*) AS n FROM {table}")
            assert inside.scalar() == 2
        assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 2

    async def test_transaction_rolls_back_on_error(self, provider: Database, table: str) -> None:
        if not provider.supports("transactions"):
            with pytest.raises(UnsupportedError):
                provider.require("transactions")
            return
        with pytest.raises(_Boom):
            async with provider.transaction() as tx:
                await tx.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'a')")
                raise _Boom
        assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 0

    async def test_failed_statement_rolls_back_the_transaction(
        self, provider: Database, table: str
    ) -> None:
        with pytest.raises(ProviderError):
            async with provider.transaction() as tx:
                await tx.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'a')")
                await tx.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'duplicate')")
        assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 0

    async def test_ddl_in_a_failed_transaction(self, provider: Database) -> None:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with pytest.raises(_Boom):
            async with provider.transaction() as tx:
                await tx.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY)")
                raise _Boom
        try:
            await provider.execute(f"SELECT COUNT(*) AS n FROM {name}")
            exists = True
        except ProviderError:
            exists = False
        assert exists is not provider.supports("transactional_ddl")
        await provider.execute(f"DROP TABLE IF EXISTS {name}")

    async def test_sql_errors_become_provider_errors_naming_the_resource(
        self, provider: Database
    ) -> None:
        with pytest.raises(ProviderError) as info:
            await provider.execute("SELEC nonsense")
        assert info.value.resource == provider.context.resource
        assert info.value.__cause__ is not None

    async def _fill(self, provider: Database, table: str, count: int) -> None:
        async with provider.transaction() as tx:
            for i in range(count):
                await tx.execute(
                    f"INSERT INTO {table} (id, name, score) VALUES (:id, :name, :score)",
                    {"id": i, "name": f"n{i}", "score": i * 3},
                )

    async def test_stream_yields_every_row_in_batches(self, provider: Database, table: str) -> None:
        await self._fill(provider, table, 25)
        batches = [
            batch
            async for batch in provider.stream(
                f"SELECT id, name, score FROM {table} WHERE id >= :low ORDER BY id",
                {"low": 2},
                batch_size=7,
            )
        ]
        assert [len(b) for b in batches] == [7, 7, 7, 2]
        rows = [row for batch in batches for row in batch]
        assert rows == [{"id": i, "name": f"n{i}", "score": i * 3} for i in range(2, 25)]
        empty = [b async for b in provider.stream(f"SELECT id FROM {table} WHERE id < 0")]
        assert sum(len(b) for b in empty) == 0

    async def test_stream_left_early_gives_its_connection_back(
        self, provider: Database, table: str
    ) -> None:
        await self._fill(provider, table, 30)
        # More early exits than any pool holds connections: each one was given back.
        for _ in range(12):
            async for batch in provider.stream(f"SELECT id FROM {table} ORDER BY id", batch_size=4):
                assert [row["id"] for row in batch] == [0, 1, 2, 3]
                break
        assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 30

    async def test_stream_cancelled_mid_way_leaves_the_database_usable(
        self, provider: Database, table: str
    ) -> None:
        await self._fill(provider, table, 30)
        reading = asyncio.Event()

        async def read() -> None:
            async for _batch in provider.stream(f"SELECT id FROM {table}", batch_size=2):
                reading.set()
                await asyncio.Event().wait()  # hold the stream open until cancelled

        task = asyncio.create_task(read())
        await asyncio.wait_for(reading.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(3):
            assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 30

    async def test_stream_inside_a_transaction_sees_its_writes(
        self, provider: Database, table: str
    ) -> None:
        provider.require("transactions")
        async with provider.transaction() as tx:
            for i in range(9):
                await tx.execute(f"INSERT INTO {table} (id, name) VALUES (:id, 'x')", {"id": i})
            seen = [
                row["id"]
                async for batch in tx.stream(f"SELECT id FROM {table} ORDER BY id", batch_size=4)
                for row in batch
            ]
            assert seen == list(range(9))
            async for _batch in tx.stream(f"SELECT id FROM {table} ORDER BY id", batch_size=2):
                break  # left early: the transaction goes on
            await tx.execute(f"INSERT INTO {table} (id, name) VALUES (100, 'y')")
        assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 10

    async def test_stream_errors_are_provider_errors(self, provider: Database) -> None:
        with pytest.raises(ProviderError) as info:
            async for _batch in provider.stream("SELEC nonsense"):
                pass
        assert info.value.resource == provider.context.resource
        assert (await provider.execute("SELECT 1 AS one")).scalar() == 1

    @pytest.mark.parametrize("size", [0, -1, 1.5, True])
    async def test_stream_refuses_a_batch_size_that_is_not_a_count(
        self, provider: Database, size: object
    ) -> None:
        with pytest.raises(ValidationError, match="batch_size"):
            async for _batch in provider.stream("SELECT 1 AS one", batch_size=size):  # type: ignore[arg-type]
                pass

    async def test_a_limit_stops_the_stream_at_one_row_past_it(
        self, provider: Database, table: str
    ) -> None:
        """How an action's ``max_rows`` reads: through ``stream``, closed at row limit + 1."""
        await self._fill(provider, table, 30)
        sql = f"SELECT id FROM {table} ORDER BY id"
        refused = TooManyRowsError("too many", limit=20)
        with pytest.raises(TooManyRowsError):
            await rows_within(provider.stream(sql, batch_size=7), 20, lambda: refused)
        rows = await rows_within(provider.stream(sql, batch_size=7), 30, lambda: refused)
        assert [row["id"] for row in rows] == list(range(30))
        assert (await provider.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 30
