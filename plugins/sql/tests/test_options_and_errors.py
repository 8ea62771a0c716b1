"""Options, URL normalisation, registration and connection errors of both databases."""

from __future__ import annotations

import pydantic
import pytest
from ductwork.errors import ConfigError, ConnectionFailedError, ProviderError
from ductwork.plugins import get_registry
from ductwork_sql.mysql import MySQLDatabase
from ductwork_sql.postgres import PostgresDatabase

BOTH = [PostgresDatabase, MySQLDatabase]


@pytest.mark.parametrize("cls", BOTH)
def test_unknown_options_are_refused(cls):
    with pytest.raises(pydantic.ValidationError, match="extra"):
        cls.from_options(hostname="db")


@pytest.mark.parametrize("cls", BOTH)
def test_validation_errors_never_echo_the_url(cls):
    with pytest.raises(pydantic.ValidationError) as info:
        cls.from_options(url="redis://u:hunter22@h/0")
    assert "hunter22" not in str(info.value)
    assert "scheme" in str(info.value)


@pytest.mark.parametrize(
    ("cls", "url", "drivername"),
    [
        (PostgresDatabase, "postgres://u:p@db/app", "postgresql+asyncpg"),
        (PostgresDatabase, "postgresql://u:p@db/app", "postgresql+asyncpg"),
        (PostgresDatabase, "postgresql+psycopg://u:p@db/app", "postgresql+asyncpg"),
        (MySQLDatabase, "mysql://u:p@db/app", "mysql+aiomysql"),
        (MySQLDatabase, "mysql+pymysql://u:p@db/app", "mysql+aiomysql"),
        (MySQLDatabase, "mariadb://u:p@db/app", "mysql+aiomysql"),
    ],
)
def test_the_driver_part_of_the_url_is_normalised(cls, url, drivername):
    db = cls.from_options(url=url)
    assert db.url.drivername == drivername
    assert (db.url.username, db.url.password, db.url.host, db.url.database) == (
        "u",
        "p",
        "db",
        "app",
    )


def test_a_mysql_url_is_refused_for_postgres():
    with pytest.raises(pydantic.ValidationError, match="not one of postgres://"):
        PostgresDatabase.from_options(url="mysql://u@db/app")


def test_fields_given_override_the_url():
    db = PostgresDatabase.from_options(
        url="postgresql://app:old@db.internal:6543/prod", password="new", database="other"
    )
    assert db.url.password == "new"
    assert (db.url.host, db.url.port, db.url.database) == ("db.internal", 6543, "other")
    assert db.endpoint == "postgresql://app@db.internal:6543/other"


def test_fields_alone_build_the_url_and_default_the_port():
    db = MySQLDatabase.from_options(host="db", user="app", password="pw", database="shop")
    assert db.url.render_as_string(hide_password=False) == "mysql+aiomysql://app:pw@db/shop"
    assert db.endpoint == "mysql://app@db:3306/shop"


def test_options_repr_hides_the_password_and_url():
    options = PostgresDatabase.Options(url="postgresql://u:pw-in-url@h/db", password="pw-field")
    assert "pw-in-url" not in repr(options)
    assert "pw-field" not in repr(options)


def test_durations_accept_strings():
    options = MySQLDatabase.Options(pool_timeout="2s", statement_timeout="500ms")
    assert (options.pool_timeout, options.statement_timeout) == (2.0, 0.5)


def test_registered_through_the_entry_point():
    registry = get_registry()
    assert registry.get("database", "postgres") is PostgresDatabase
    assert registry.get("database", "mysql") is MySQLDatabase
    assert registry.entries[("database", "postgres")].distribution == "ductwork-sql"


@pytest.mark.parametrize("cls", BOTH)
async def test_connection_refused_names_where_without_the_password(cls, context, closed_port):
    db = cls.from_options(
        context,
        host="127.0.0.1",
        port=closed_port,
        user="app",
        password="s3cret-pw",
        database="app",
        connect_timeout=2,
    )
    with pytest.raises(ConnectionFailedError) as info:
        await db.open()
    message = str(info.value)
    assert "s3cret-pw" not in message
    scheme = "postgresql" if cls is PostgresDatabase else "mysql"
    endpoint = f"{scheme}://app@127.0.0.1:{closed_port}/app"
    for part in ("resource=databases.main", "env=test", "provider=sql", f"endpoint={endpoint}"):
        assert part in message
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("cls", BOTH)
async def test_statements_before_open_fail_cleanly(cls, context):
    db = cls.from_options(context)
    with pytest.raises(ProviderError, match="not open"):
        await db.execute("SELECT 1")


@pytest.mark.parametrize("cls", BOTH)
async def test_engine_options_pass_through(cls, context, postgres_url, mysql_url):
    url = postgres_url if cls is PostgresDatabase else mysql_url
    async with cls.from_options(
        context, url=url, engine_options={"pool_pre_ping": True, "pool_recycle": 60}
    ) as db:
        assert db.native.pool._pre_ping is True  # type: ignore[attr-defined]
        assert (await db.execute("SELECT 1 AS one")).scalar() == 1


@pytest.mark.parametrize("cls", BOTH)
async def test_close_is_idempotent_and_reopen_works(cls, context, postgres_url, mysql_url):
    url = postgres_url if cls is PostgresDatabase else mysql_url
    db = cls.from_options(context, url=url)
    await db.open()
    await db.close()
    await db.close()
    await db.open()
    assert (await db.execute("SELECT 1 AS one")).scalar() == 1
    await db.close()


@pytest.mark.parametrize("cls", BOTH)
async def test_invalid_engine_options_are_a_config_error(cls, context):
    db = cls.from_options(context, engine_options={"no_such_engine_option": 1})
    with pytest.raises(ConfigError, match="no_such_engine_option"):
        await db.open()


@pytest.mark.parametrize("cls", BOTH)
@pytest.mark.parametrize("mode", ["require", "verify"])
async def test_ssl_never_falls_back_to_plain_text(cls, mode, context, postgres_url, mysql_url):
    # The machine's test servers have TLS off: asking for it must fail, not connect in clear
    # (aiomysql alone would silently connect without TLS).
    url = postgres_url if cls is PostgresDatabase else mysql_url
    db = cls.from_options(context, url=url, ssl=mode)
    with pytest.raises(ConnectionFailedError, match="cannot open database"):
        await db.open()
