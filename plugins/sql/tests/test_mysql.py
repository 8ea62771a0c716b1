"""The mysql database (on MariaDB here) passes the conformance suite; its own behaviour works."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ductwork.errors import AuthenticationError, ProviderError
from ductwork.providers import ProviderContext
from ductwork.testing import DatabaseSuite
from ductwork_sql.mysql import MySQLDatabase, lock_name
from sqlalchemy.ext.asyncio import AsyncEngine


class TestMySQLDatabase(DatabaseSuite):
    @pytest.fixture
    async def provider(self, mysql_url):
        context = ProviderContext(resource="databases.main", env="test", provider="mysql")
        async with MySQLDatabase.from_options(context, url=mysql_url, pool_size=2) as db:
            yield db


@pytest.fixture
async def db(mysql_url, context):
    async with MySQLDatabase.from_options(context, url=mysql_url) as database:
        yield database


def test_does_not_declare_transactional_ddl():
    assert MySQLDatabase.capabilities == {"transactions", "locks", "streaming"}


async def test_native_is_the_async_engine(db):
    assert isinstance(db.native, AsyncEngine)
    assert db.native.url.drivername == "mysql+aiomysql"


async def test_ddl_commits_what_came_before_it_in_a_transaction(db):
    # Documented behaviour: MySQL/MariaDB commit implicitly before DDL.
    table, other = f"t_{uuid.uuid4().hex[:12]}", f"t_{uuid.uuid4().hex[:12]}"
    await db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute(f"INSERT INTO {table} (id) VALUES (1)")
                await tx.execute(f"CREATE TABLE {other} (id INTEGER)")
                raise RuntimeError
        assert (await db.execute(f"SELECT COUNT(*) AS n FROM {table}")).scalar() == 1
    finally:
        await db.execute(f"DROP TABLE IF EXISTS {table}")
        await db.execute(f"DROP TABLE IF EXISTS {other}")


async def test_utf8mb4_round_trips(db):
    assert (await db.execute("SELECT :s AS s", {"s": "🙂 ü"})).scalar() == "🙂 ü"


async def test_statement_timeout_is_set_per_session(mysql_url, context):
    async with MySQLDatabase.from_options(
        context, url=mysql_url, statement_timeout="250ms", pool_size=1
    ) as db:
        assert float((await db.execute("SELECT @@max_statement_time")).scalar()) == 0.25
        with pytest.raises(ProviderError, match="1969"):  # max_statement_time exceeded
            await db.execute(
                "SELECT COUNT(*) FROM information_schema.columns a, "
                "information_schema.columns b, information_schema.columns c"
            )


async def test_bad_password_is_an_authentication_error(mysql_url, context):
    db = MySQLDatabase.from_options(context, url=mysql_url, password="wrong-secret-pw")
    with pytest.raises(AuthenticationError) as info:
        await db.open()
    assert "wrong-secret-pw" not in str(info.value)
    assert info.value.endpoint == "mysql://root@127.0.0.1:3306/test"
    assert "1045" in str(info.value)


async def test_errors_never_carry_parameters(db):
    with pytest.raises(ProviderError) as info:
        await db.execute("SELECT * FROM no_such_table_here WHERE x = :v", {"v": "secret-value"})
    assert "secret-value" not in str(info.value)
    assert "1146" in str(info.value)


async def test_concurrent_executes_share_a_small_pool(mysql_url, context):
    async with MySQLDatabase.from_options(
        context, url=mysql_url, pool_size=2, max_overflow=0
    ) as db:
        results = await asyncio.gather(*(db.execute("SELECT :i AS i", {"i": i}) for i in range(30)))
    assert [r.scalar() for r in results] == list(range(30))


async def test_named_lock_excludes_other_holders(mysql_url, context):
    name = f"lock-{uuid.uuid4().hex}" * 2  # longer than GET_LOCK's 64 characters
    assert len(lock_name(name)) == 64
    async with (
        MySQLDatabase.from_options(context, url=mysql_url) as a,
        MySQLDatabase.from_options(context, url=mysql_url) as b,
    ):
        async with a.lock(name):
            with pytest.raises(ProviderError, match="still held"):
                async with b.lock(name, timeout=0.2):
                    pass
        async with b.lock(name, timeout=2):
            pass
