"""The postgres database passes the conformance suite; its own settings and locks work."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ductwork.errors import AuthenticationError, ProviderError
from ductwork.providers import ProviderContext
from ductwork.testing import DatabaseSuite
from ductwork_sql.postgres import PostgresDatabase
from sqlalchemy.ext.asyncio import AsyncEngine


class TestPostgresDatabase(DatabaseSuite):
    @pytest.fixture
    async def provider(self, postgres_url):
        context = ProviderContext(resource="databases.main", env="test", provider="postgres")
        async with PostgresDatabase.from_options(context, url=postgres_url, pool_size=2) as db:
            yield db


@pytest.fixture
async def db(postgres_url, context):
    async with PostgresDatabase.from_options(context, url=postgres_url) as database:
        yield database


def test_declares_transactional_ddl():
    assert PostgresDatabase.capabilities == {"transactions", "transactional_ddl", "locks"}


async def test_native_is_the_async_engine(db):
    assert isinstance(db.native, AsyncEngine)
    assert db.native.url.drivername == "postgresql+asyncpg"


async def test_columns_keep_select_order_and_types(db):
    result = await db.execute(
        "SELECT 2 AS b, 'x' AS a, NULL AS c, CAST(:n AS DOUBLE PRECISION) AS n", {"n": 1.5}
    )
    assert result.columns == ["b", "a", "c", "n"]
    assert result.rows == [{"b": 2, "a": "x", "c": None, "n": 1.5}]


async def test_statement_timeout_applies_to_every_session(postgres_url, context):
    async with PostgresDatabase.from_options(
        context, url=postgres_url, statement_timeout="150ms"
    ) as db:
        assert (await db.execute("SHOW statement_timeout")).scalar() == "150ms"
        with pytest.raises(ProviderError, match="57014"):
            await db.execute("SELECT pg_sleep(2)")


async def test_unknown_role_is_an_authentication_error(postgres_url, context):
    # Trust auth here checks roles, not passwords: an unknown role is refused credentials.
    db = PostgresDatabase.from_options(
        context, url=postgres_url, user="nobody_here", password="pw-never-shown"
    )
    with pytest.raises(AuthenticationError) as info:
        await db.open()
    assert "pw-never-shown" not in str(info.value)
    assert info.value.endpoint == "postgresql://nobody_here@127.0.0.1:5432/test"


async def test_errors_never_carry_parameters(db):
    table = f"t_{uuid.uuid4().hex[:12]}"
    await db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v TEXT)")
    try:
        await db.execute(f"INSERT INTO {table} VALUES (1, :v)", {"v": "first-value"})
        with pytest.raises(ProviderError) as info:
            await db.execute(f"INSERT INTO {table} VALUES (1, :v)", {"v": "secret-value"})
        assert "secret-value" not in str(info.value)
        assert "23505" in str(info.value)  # unique_violation, by SQLSTATE
    finally:
        await db.execute(f"DROP TABLE {table}")


async def test_concurrent_executes_share_a_small_pool(postgres_url, context):
    async with PostgresDatabase.from_options(
        context, url=postgres_url, pool_size=2, max_overflow=0
    ) as db:
        results = await asyncio.gather(
            *(db.execute("SELECT CAST(:i AS INTEGER) AS i", {"i": i}) for i in range(30))
        )
    assert [r.scalar() for r in results] == list(range(30))


async def test_named_lock_excludes_other_holders(postgres_url, context):
    name = f"lock-{uuid.uuid4().hex}"
    async with (
        PostgresDatabase.from_options(context, url=postgres_url) as a,
        PostgresDatabase.from_options(context, url=postgres_url) as b,
    ):
        async with a.lock(name):
            with pytest.raises(ProviderError, match="still held"):
                async with b.lock(name, timeout=0.2):
                    pass
            with pytest.raises(ProviderError, match="still held"):
                async with b.lock(name, timeout=0):
                    pass
        async with b.lock(name, timeout=2):
            pass
        # lock_timeout was reset on the pooled connection: long statements still wait normally
        assert (await b.execute("SHOW lock_timeout")).scalar() == "0"
