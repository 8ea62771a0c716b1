"""The postgres database passes the conformance suite; its own settings and locks work."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import logging
import uuid

import asyncpg
import pytest
from ductwork.errors import AuthenticationError, ConnectionFailedError, ProviderError
from ductwork.providers import ProviderContext
from ductwork.testing import DatabaseSuite
from ductwork_sql.postgres import PostgresDatabase
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
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
    assert PostgresDatabase.capabilities == {
        "transactions",
        "transactional_ddl",
        "locks",
        "streaming",
    }


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


# -- lone statements run on asyncpg directly ------------------------------------------------


@pytest.fixture
async def one_conn(postgres_url, context):
    """A database whose pool holds exactly one connection (so it is the one reused)."""
    async with PostgresDatabase.from_options(
        context, url=postgres_url, pool_size=1, max_overflow=0, pool_timeout=5
    ) as database:
        yield database


@pytest.fixture
async def admin(postgres_url, context):
    async with PostgresDatabase.from_options(context, url=postgres_url) as database:
        yield database


@pytest.fixture
async def typed_table(db):
    name = f"t_{uuid.uuid4().hex[:12]}"
    await db.execute(
        f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, j JSON, jb JSONB, u UUID, "
        "n NUMERIC(12, 4), f DOUBLE PRECISION, ts TIMESTAMP, tz TIMESTAMPTZ, d DATE, "
        "iv INTERVAL, ai INTEGER[], at TEXT[], b BYTEA, ok BOOLEAN, big BIGINT, s TEXT)"
    )
    yield name
    await db.execute(f"DROP TABLE IF EXISTS {name}")


def _typed(result):
    """Rows with each value's type, so equal-but-different values (UUID flavours) differ."""
    return (
        result.rowcount,
        result.columns,
        [[(key, type(value), value) for key, value in row.items()] for row in result.rows],
    )


async def test_lone_statements_chain_asyncpg_errors(db):
    # The direct path raises the driver's own exception; SQLAlchemy's would wrap it.
    with pytest.raises(ProviderError) as info:
        await db.execute("SELECT 1/0 AS x")
    assert isinstance(info.value.__cause__, asyncpg.DivisionByZeroError)
    assert "22012" in str(info.value)


async def test_values_match_the_sqlalchemy_path(db, typed_table):
    values = {
        "id": 1,
        "j": json.dumps({"a": [1, 2, {"b": None}]}),
        "jb": json.dumps({"k": "v", "n": 1.5}),
        "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "n": decimal.Decimal("12.3456"),
        "f": 1.25,
        "ts": datetime.datetime(2024, 1, 2, 3, 4, 5, 678901),
        "tz": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "d": datetime.date(2024, 5, 6),
        "iv": datetime.timedelta(days=1, seconds=5),
        "ai": [1, None, 3],
        "at": ["x", "y"],
        "b": b"\x00\x01",
        "ok": True,
        "big": 2**40,
        "s": "🙂",
    }
    columns = ", ".join(values)
    insert = (
        f"INSERT INTO {typed_table} ({columns}) VALUES "
        "(:id, CAST(:j AS JSON), CAST(:jb AS JSONB), :u, :n, :f, :ts, :tz, :d, :iv, :ai, :at, "
        ":b, :ok, :big, :s) RETURNING id"
    )
    assert (await db.execute(insert, values)).rows == [{"id": 1}]
    nulls = {key: None for key in values} | {"id": 2}
    assert (await db.execute(insert, nulls)).rowcount == 1
    statements = [
        (f"SELECT * FROM {typed_table} ORDER BY id", None),
        (f"SELECT j -> 'a' AS ja, jb ->> 'k' AS jk, jb FROM {typed_table} ORDER BY id", None),
        (f"SELECT u, CAST(:u AS UUID) AS bound FROM {typed_table} WHERE id = :id", values),
        (
            "SELECT CAST('[1, 2]' AS JSONB) AS arr, CAST('null' AS JSON) AS jn, NULL AS nothing",
            None,
        ),
        ("SELECT CAST(:a AS INTEGER[]) AS a", {"a": [[1, 2], [3, 4]]}),
        ('SELECT 1 AS a, 2 AS a, 3 AS "MixedCase", 4', None),
        (f"SELECT id FROM {typed_table} WHERE id < 0", None),
        (f"SELECT FROM {typed_table}", None),
        ("SHOW statement_timeout", None),
        ("VALUES (1, 'a'), (2, 'b')", None),
    ]
    for sql, params in statements:
        direct = await db.execute(sql, params)
        async with db.transaction() as tx:
            through_sqlalchemy = await tx.execute(sql, params)
        assert _typed(direct) == _typed(through_sqlalchemy), sql


async def test_binds_follow_text_rules(db):
    result = await db.execute(
        "SELECT CAST(:a AS INTEGER) AS one, CAST(:a AS INTEGER) + CAST(:b AS INTEGER) AS three, "
        "'\\:not_a_bind' AS escaped, CAST(:s AS TEXT)::VARCHAR AS cast, 'a::b' AS colons, "
        "'%' || CAST(:s AS TEXT) || '%%' AS percents",
        {"a": 1, "b": 2, "s": "x", "unused": object()},
    )
    assert result.rows == [
        {
            "one": 1,
            "three": 3,
            "escaped": ":not_a_bind",
            "cast": "x",
            "colons": "a::b",
            "percents": "%x%%",
        }
    ]
    # text() reads :name even inside quotes, where the server sees no placeholder: both
    # paths refuse it the same way (write '\:q' for the literal).
    with pytest.raises(ProviderError, match="expects 0 arguments"):
        await db.execute("SELECT ':q' AS q", {"q": "bound"})
    with pytest.raises(ProviderError, match="expects 0 arguments"):
        async with db.transaction() as tx:
            await tx.execute("SELECT ':q' AS q", {"q": "bound"})


async def test_a_missing_value_is_named(db):
    with pytest.raises(ProviderError, match="bind parameter 'x'"):
        await db.execute("SELECT CAST(:x AS INTEGER)", {"y": 1})
    with pytest.raises(ProviderError, match="bind parameter 'x'"):
        await db.execute("SELECT CAST(:x AS INTEGER)")


async def test_rowcount_of_each_kind_of_statement(db):
    table = f"t_{uuid.uuid4().hex[:12]}"
    assert (await db.execute(f"CREATE TABLE {table} (id INTEGER, v TEXT)")).rowcount == -1
    try:
        insert = await db.execute(
            f"INSERT INTO {table} SELECT g, 'v' FROM generate_series(1, 5) AS g"
        )
        assert (insert.rowcount, insert.rows, insert.columns) == (5, [], [])
        update = await db.execute(f"UPDATE {table} SET v = :v WHERE id > :id", {"v": "w", "id": 2})
        assert (update.rowcount, update.rows) == (3, [])
        none = await db.execute(f"UPDATE {table} SET v = 'x' WHERE id < 0")
        assert none.rowcount == 0
        returning = await db.execute(f"DELETE FROM {table} WHERE id <= 2 RETURNING id")
        assert returning.rowcount == 2
        assert sorted(row["id"] for row in returning.rows) == [1, 2]
        assert (await db.execute(f"DELETE FROM {table}")).rowcount == 3
        assert (await db.execute(f"SELECT * FROM {table}")).columns == ["id", "v"]
    finally:
        await db.execute(f"DROP TABLE {table}")


async def test_a_connection_killed_mid_statement_is_discarded(one_conn):
    before = (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
    with pytest.raises(ConnectionFailedError):
        await one_conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    after = (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
    assert after != before
    async with one_conn.transaction() as tx:  # the pool's one connection is free for it
        assert (await tx.execute("SELECT 1 AS one")).scalar() == 1


async def test_a_connection_killed_while_pooled_does_not_fail_the_next_call(one_conn, admin):
    pid = (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
    # The timeout makes the server wait until that backend is gone (its socket closed first).
    killed = await admin.execute("SELECT pg_terminate_backend(:pid, 10000) AS ok", {"pid": pid})
    assert killed.scalar() is True
    # asyncpg saw the socket close: the connection is replaced before use, no round trip.
    assert (await one_conn.execute("SELECT 1 AS one")).scalar() == 1
    assert (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar() != pid
    # The same for a connection the pool holds (a transaction's, given back).
    async with one_conn.transaction() as tx:
        pid = (await tx.execute("SELECT pg_backend_pid() AS pid")).scalar()
    killed = await admin.execute("SELECT pg_terminate_backend(:pid, 10000) AS ok", {"pid": pid})
    assert killed.scalar() is True
    assert (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar() != pid


async def test_a_cancelled_statement_discards_its_connection(one_conn):
    pid = (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(one_conn.execute("SELECT pg_sleep(30)"), 0.2)
    # The only pooled connection was replaced: its state after a cancel is unknown.
    assert (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar() != pid


async def test_driver_misuse_is_not_a_connection_failure(one_conn):
    pid = (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar()
    with pytest.raises(ProviderError) as info:  # $1 is not a :name: nothing binds it
        await one_conn.execute("SELECT CAST($1 AS INTEGER) AS x")
    assert not isinstance(info.value, ConnectionFailedError)
    assert (await one_conn.execute("SELECT pg_backend_pid() AS pid")).scalar() == pid


async def test_values_the_driver_cannot_encode_are_not_quoted(db):
    secret = "secret-not-a-number"
    with pytest.raises(ProviderError) as info:
        await db.execute("SELECT CAST(:n AS INTEGER) AS n", {"n": secret})
    assert secret not in str(info.value)
    assert "argument $1" in str(info.value)
    with pytest.raises(ProviderError) as info:
        async with db.transaction() as tx:
            await tx.execute("SELECT CAST(:n AS INTEGER) AS n", {"n": secret})
    assert secret not in str(info.value)
    with pytest.raises(ProviderError) as info:
        await db.execute("SELECT CAST(:u AS UUID) AS u", {"u": secret})
    assert secret not in str(info.value)


async def test_a_schema_change_re_prepares_cached_statements(postgres_url, context):
    async with PostgresDatabase.from_options(
        context, url=postgres_url, pool_size=2, max_overflow=0
    ) as db:
        table = f"t_{uuid.uuid4().hex[:12]}"
        await db.execute(f"CREATE TABLE {table} (id INTEGER)")
        try:
            await db.execute(f"INSERT INTO {table} VALUES (1)")
            select = f"SELECT * FROM {table}"
            # Both pooled connections prepare the statement.
            await asyncio.gather(db.execute(select), db.execute(select))
            await db.execute(f"ALTER TABLE {table} ADD COLUMN v TEXT DEFAULT 'x'")
            results = await asyncio.gather(*(db.execute(select) for _ in range(4)))
            assert all(r.rows == [{"id": 1, "v": "x"}] for r in results)
        finally:
            await db.execute(f"DROP TABLE {table}")


async def test_a_small_statement_cache_evicts(postgres_url, context):
    async with PostgresDatabase.from_options(
        context,
        url=postgres_url,
        pool_size=1,
        engine_options={"connect_args": {"prepared_statement_cache_size": 2}},
    ) as db:
        for round_ in range(3):
            for i in range(5):
                sql = f"SELECT CAST(:v AS INTEGER) + {i} AS v"
                assert (await db.execute(sql, {"v": round_})).scalar() == round_ + i


@pytest.mark.parametrize(
    "engine_options",
    [
        {"connect_args": {"prepared_statement_cache_size": 0}},
        {"connect_args": {"statement_cache_size": 0}},
    ],
)
async def test_without_statement_caching_sqlalchemy_runs_lone_statements(
    postgres_url, context, engine_options
):
    # e.g. behind PgBouncer in transaction mode: SQLAlchemy prepares as configured.
    async with PostgresDatabase.from_options(
        context, url=postgres_url, engine_options=engine_options
    ) as db:
        assert (await db.execute("SELECT CAST(:v AS INTEGER) AS v", {"v": 3})).scalar() == 3
        with pytest.raises(ProviderError) as info:
            await db.execute("SELECT 1/0 AS x")
        assert isinstance(info.value.__cause__, DBAPIError)


async def test_engine_listeners_still_see_lone_statements(db):
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.native.sync_engine, "before_cursor_execute", record)
    try:
        assert (await db.execute("SELECT CAST(:v AS INTEGER) AS v", {"v": 1})).scalar() == 1
    finally:
        event.remove(db.native.sync_engine, "before_cursor_execute", record)
    assert seen == ["SELECT CAST($1 AS INTEGER) AS v"]


async def test_echo_logs_lone_statements(postgres_url, context, caplog):
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    async with PostgresDatabase.from_options(context, url=postgres_url, echo=True) as db:
        await db.execute("SELECT CAST(:v AS INTEGER) AS logged_v", {"v": 12345})
    assert "logged_v" in caplog.text
