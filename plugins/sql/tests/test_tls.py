"""TLS options of the sql databases, against a private TLS PostgreSQL cluster and MariaDB.

Both servers (``ductwork.testing.servers.postgres_server`` and ``mariadb_server``, each started
once for this module) have a server certificate for 127.0.0.1 from a private CA made at test
time (trustme) and trust that CA for client certificates. Accounts: ``app`` with a password,
over TLS only (``hostssl``; ``REQUIRE SSL``), and ``certuser`` with a client certificate
(Postgres ``hostssl … cert``, the CN as role; MariaDB ``REQUIRE SUBJECT`` with the certificate's
subject, no password); MariaDB also has ``otheruser``, who wants a certificate for another subject.

Checked on both: ``ssl: verify`` with ``ca_file`` for lone statements (on Postgres asyncpg's
direct path, including connections it opens itself) and transactions, the server reporting the
session encrypted (``pg_stat_ssl``; ``Ssl_cipher``/``Ssl_version``); the system's CAs and another
host name refused under ``verify``; ``require`` without a CA; ``disable`` refused by the server;
a client certificate under ``verify`` and ``require``, none refused, one from another CA refused.
Postgres also: a relative ``ca_file``. Both dialects: files refused or unreadable before any
connection, TLS settings in the url refused, and (MySQL, against the machine's MariaDB, which
has no TLS) no fall back to plain text.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pydantic
import pytest
from cryptography import x509
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import AuthenticationError, ConfigError, ConnectionFailedError, ProviderError
from ductwork.providers import ProviderContext
from ductwork.testing.servers import HOST, Server
from ductwork.testing.sql_servers import PostgresServer, mariadb_server, postgres_server
from ductwork.testing.tls import TlsFiles, tls_files
from ductwork_sql.mysql import MySQLDatabase
from ductwork_sql.postgres import PostgresDatabase

BOTH = [PostgresDatabase, MySQLDatabase]
PASSWORD = "s3cret-tls-pw"
CERT_ROLE = "certuser"
OTHER_ROLE = "otheruser"  # MariaDB: wants a certificate with another subject
CONTEXT = ProviderContext(resource="databases.main", env="test", provider="sql")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    # The server certificate names 127.0.0.1 alone (so ``localhost`` is another host); the
    # client certificate's CN is a role (``cert`` auth reads the CN). Both servers use them.
    return tls_files(tmp_path_factory.mktemp("tls"), hosts=(HOST,), client=CERT_ROLE)


@pytest.fixture(scope="module")
def pg(tls: TlsFiles) -> Iterator[PostgresServer]:
    hba = [
        f"hostssl all {CERT_ROLE} {HOST}/32 cert",
        f"hostssl all app {HOST}/32 scram-sha-256",
        f"host all app,{CERT_ROLE} {HOST}/32 reject",  # never in clear text
    ]
    with postgres_server(tls=tls, hba=hba) as server:

        async def roles() -> None:
            async with PostgresDatabase.from_options(url=server.url) as admin:
                await admin.execute(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'")
                await admin.execute(f"CREATE ROLE {CERT_ROLE} LOGIN")
                await admin.execute(f"GRANT CREATE ON SCHEMA public TO app, {CERT_ROLE}")

        asyncio.run(roles())
        yield server


def app(pg: PostgresServer, **options) -> PostgresDatabase:
    defaults = {"host": HOST, "port": pg.port, "user": "app", "password": PASSWORD}
    return PostgresDatabase.from_options(
        CONTEXT, database="postgres", connect_timeout=5, **{**defaults, **options}
    )


SSL_IN_USE = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def _assert_encrypted(row: dict) -> None:
    assert row["ssl"] is True
    assert row["version"] in ("TLSv1.2", "TLSv1.3")


# -- verify with the private CA --------------------------------------------------------------


async def test_verify_with_ca_file_runs_lone_statements_and_transactions(pg, tls):
    table = f"t_{uuid.uuid4().hex[:12]}"
    db = app(pg, ssl="verify", ca_file=str(tls.ca), pool_size=1, max_overflow=0)
    async with db:
        # Lone statements run on asyncpg directly: its own error class proves the path.
        _assert_encrypted((await db.execute(SSL_IN_USE)).rows[0])
        with pytest.raises(ProviderError) as info:
            await db.execute("SELECT 1/0 AS x")
        assert isinstance(info.value.__cause__, asyncpg.DivisionByZeroError)

        async with db.transaction() as conn:
            _assert_encrypted((await conn.execute(SSL_IN_USE)).rows[0])
            await conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v TEXT)")
            await conn.execute(f"INSERT INTO {table} VALUES (:id, :v)", {"id": 1, "v": "tls"})
        assert (await db.execute(f"SELECT v FROM {table} WHERE id = :id", {"id": 1})).rows == [
            {"v": "tls"}
        ]

        # A connection the direct path opens itself gets the same connect arguments.
        await db.native.dispose()
        _assert_encrypted((await db.execute(SSL_IN_USE)).rows[0])
        await db.execute(f"DROP TABLE {table}")


async def test_a_relative_ca_file_resolves_against_the_config_folder(pg, tls):
    settings = {
        "provider": "postgres",
        # Not a url: a config's url is a secret, masked wherever it appears later in the run.
        "host": HOST,
        "port": pg.port,
        "user": "app",
        "database": "postgres",
        "password": PASSWORD,
        "ssl": "verify",
        "ca_file": tls.ca.name,
    }
    config = Config.from_dict(
        {"product": "tls", "environments": ["test"], "databases": {"main": {"test": settings}}},
        root=tls.folder,
    )
    async with Ductwork(config, env="test") as dw:
        db = await dw.provider("databases", "main")
        assert (await db.execute("SELECT current_user AS u")).scalar() == "app"


async def test_verify_without_ca_file_uses_the_system_store_and_fails(pg):
    db = app(pg, ssl="verify")
    with pytest.raises(ConnectionFailedError) as info:
        await db.open()
    message = str(info.value)
    assert f"endpoint=postgresql://app@{HOST}:{pg.port}/postgres" in message
    assert "certificate was not accepted" in message and "set ca_file" in message
    assert PASSWORD not in message
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_verify_refuses_a_certificate_for_another_host(pg, tls):
    # The certificate names 127.0.0.1 only; localhost reaches the same server.
    db = app(pg, host="localhost", ssl="verify", ca_file=str(tls.ca))
    with pytest.raises(ConnectionFailedError, match="does not name the host") as info:
        await db.open()
    assert f"endpoint=postgresql://app@localhost:{pg.port}/postgres" in str(info.value)


async def test_require_encrypts_without_a_ca(pg):
    async with app(pg, ssl="require") as db:
        _assert_encrypted((await db.execute(SSL_IN_USE)).rows[0])
        async with db.transaction() as conn:
            _assert_encrypted((await conn.execute(SSL_IN_USE)).rows[0])


async def test_disable_is_refused_where_the_server_wants_tls(pg):
    with pytest.raises(AuthenticationError, match="28000"):
        await app(pg, ssl="disable").open()


# -- client certificates -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["verify", "require"])
async def test_a_client_certificate_authenticates(pg, tls, mode):
    files = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    ca = {"ca_file": str(tls.ca)} if mode == "verify" else {}
    async with app(pg, user=CERT_ROLE, password=None, ssl=mode, **ca, **files) as db:
        assert (await db.execute("SELECT current_user AS u")).scalar() == CERT_ROLE
        async with db.transaction() as conn:
            assert (await conn.execute("SELECT current_user AS u")).scalar() == CERT_ROLE


async def test_without_a_client_certificate_cert_auth_refuses(pg, tls):
    db = app(pg, user=CERT_ROLE, password=None, ssl="verify", ca_file=str(tls.ca))
    with pytest.raises(AuthenticationError, match="certificate"):
        await db.open()


async def test_a_client_certificate_from_another_ca_is_refused(pg, tls, tmp_path):
    other = tls_files(tmp_path / "other")
    files = {"cert_file": str(other.client_cert), "key_file": str(other.client_key)}
    db = app(pg, user=CERT_ROLE, password=None, ssl="verify", ca_file=str(tls.ca), **files)
    with pytest.raises(ConnectionFailedError) as info:
        await db.open()
    # TLS 1.3: the server checks the client's certificate once the client's side of the
    # handshake is done, sends its alert and closes. The alert usually arrives first; when the
    # client's next write meets the closed socket, the reset discards it.
    message = str(info.value)
    said = ("refused the client certificate", "connection was closed")
    assert any(words in message for words in said), message


# -- refused before connecting (both dialects) ---------------------------------------------------


@pytest.mark.parametrize("cls", BOTH)
async def test_a_missing_ca_file_is_a_config_error_before_connecting(cls, tmp_path, closed_port):
    missing = tmp_path / "nope.pem"
    db = cls.from_options(CONTEXT, host=HOST, port=closed_port, ssl="verify", ca_file=str(missing))
    # A connection attempt would be a ConnectionFailedError: nothing listens on closed_port.
    with pytest.raises(ConfigError, match=r"databases\.main\.test\.ca_file: cannot read") as info:
        await db.open()
    assert str(missing) in str(info.value)
    with pytest.raises(ProviderError, match="not open"):
        await db.execute("SELECT 1")


@pytest.mark.parametrize("cls", BOTH)
def test_tls_files_are_refused_while_ssl_is_disable(cls, tls):
    with pytest.raises(pydantic.ValidationError, match="TLS is off: set ssl: verify"):
        cls.Options(ca_file=str(tls.ca))
    with pytest.raises(pydantic.ValidationError, match="TLS is off"):
        cls.Options(ssl="disable", cert_file=str(tls.client_cert))
    with pytest.raises(pydantic.ValidationError, match="does not check the server's certificate"):
        cls.Options(ssl="require", ca_file=str(tls.ca))
    with pytest.raises(pydantic.ValidationError, match="need cert_file"):
        cls.Options(ssl="verify", key_file=str(tls.client_key))


@pytest.mark.parametrize(
    ("cls", "query"),
    [
        (PostgresDatabase, "ssl=require"),  # was replaced by ssl: disable, so in clear text
        (PostgresDatabase, "sslmode=verify-full&sslrootcert=/etc/ca.pem"),
        (MySQLDatabase, "ssl_ca=/etc/ca.pem&ssl_check_hostname=false"),
    ],
)
def test_tls_settings_in_the_url_are_refused(cls, query):
    scheme = "postgresql" if cls is PostgresDatabase else "mysql"
    url = f"{scheme}://app:url-pw@db.internal/shop?{query}"
    with pytest.raises(pydantic.ValidationError, match="TLS settings in the url") as info:
        cls.Options(url=url)
    assert "url-pw" not in str(info.value) and "/etc/ca.pem" not in str(info.value)
    assert cls.Options(url=f"{scheme}://app@db.internal/shop?connect_timeout=3").url is not None


def test_tls_files_with_ssl_disable_are_a_config_error_in_a_config(tls):
    settings = {"provider": "postgres", "host": HOST, "ca_file": "ca.pem"}
    config = Config.from_dict(
        {"product": "tls", "environments": ["test"], "databases": {"main": {"test": settings}}},
        root=tls.folder,
    )
    with pytest.raises(ConfigError, match=r"databases\.main\.test.*TLS is off"):
        config.resolve("databases", "main", "test")


# -- mysql: a private MariaDB with TLS -----------------------------------------------------------


def _subject(cert: Path) -> str:
    # As MariaDB compares it (OpenSSL's one-line form): /O=…/OU=…/CN=certuser.
    name = x509.load_pem_x509_certificate(cert.read_bytes()).subject
    return "".join(f"/{part.rfc4514_attribute_name}={part.value}" for part in name)


@pytest.fixture(scope="module")
def my(tls: TlsFiles) -> Iterator[Server]:
    with mariadb_server(tls=tls) as server:

        async def users() -> None:
            async with MySQLDatabase.from_options(url=server.url) as admin:
                app_user, cert_user = f"'app'@'{HOST}'", f"'{CERT_ROLE}'@'{HOST}'"
                # Values bound by the driver (client side): the subject has '#' and spaces.
                await admin.execute(
                    f"CREATE USER {app_user} IDENTIFIED BY :pw REQUIRE SSL", {"pw": PASSWORD}
                )
                await admin.execute(
                    f"CREATE USER {cert_user} REQUIRE SUBJECT :subject",
                    {"subject": _subject(tls.client_cert)},
                )
                # Any certificate from the CA would do for REQUIRE X509; this one wants another.
                other_user = f"'{OTHER_ROLE}'@'{HOST}'"
                await admin.execute(f"CREATE USER {other_user} REQUIRE SUBJECT '/CN={OTHER_ROLE}'")
                for user in (app_user, cert_user, other_user):
                    await admin.execute(f"GRANT ALL ON test.* TO {user}")

        asyncio.run(users())
        yield server


def my_app(my: Server, **options) -> MySQLDatabase:
    defaults = {"host": HOST, "port": my.port, "user": "app", "password": PASSWORD}
    return MySQLDatabase.from_options(
        CONTEXT, database="test", connect_timeout=5, **{**defaults, **options}
    )


MY_SSL_IN_USE = "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_cipher', 'Ssl_version')"


def _assert_my_encrypted(rows: list[dict]) -> None:
    status = {row["Variable_name"]: row["Value"] for row in rows}
    assert status["Ssl_cipher"], status
    assert status["Ssl_version"] in ("TLSv1.2", "TLSv1.3"), status


async def test_mysql_verify_with_ca_file_runs_lone_statements_and_transactions(my, tls):
    table = f"t_{uuid.uuid4().hex[:12]}"
    async with my_app(my, ssl="verify", ca_file=str(tls.ca)) as db:
        _assert_my_encrypted((await db.execute(MY_SSL_IN_USE)).rows)
        async with db.transaction() as conn:
            _assert_my_encrypted((await conn.execute(MY_SSL_IN_USE)).rows)
            await conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v TEXT)")
        async with db.transaction() as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (:id, :v)", {"id": 1, "v": "tls"})
        assert (await db.execute(f"SELECT v FROM {table} WHERE id = :id", {"id": 1})).rows == [
            {"v": "tls"}
        ]
        assert (await db.execute("SELECT CURRENT_USER() AS u")).scalar() == f"app@{HOST}"
        await db.execute(f"DROP TABLE {table}")


async def test_mysql_verify_without_ca_file_uses_the_system_store_and_fails(my):
    db = my_app(my, ssl="verify")
    with pytest.raises(ConnectionFailedError) as info:
        await db.open()
    message = str(info.value)
    assert f"endpoint=mysql://app@{HOST}:{my.port}/test" in message
    assert "certificate was not accepted" in message and "set ca_file" in message
    assert PASSWORD not in message


async def test_mysql_verify_refuses_a_certificate_for_another_host(my, tls):
    # The certificate names 127.0.0.1 only; localhost reaches the same server.
    db = my_app(my, host="localhost", ssl="verify", ca_file=str(tls.ca))
    with pytest.raises(ConnectionFailedError, match="does not name the host") as info:
        await db.open()
    assert f"endpoint=mysql://app@localhost:{my.port}/test" in str(info.value)


async def test_mysql_require_encrypts_without_a_ca(my):
    async with my_app(my, ssl="require") as db:
        _assert_my_encrypted((await db.execute(MY_SSL_IN_USE)).rows)
        async with db.transaction() as conn:
            _assert_my_encrypted((await conn.execute(MY_SSL_IN_USE)).rows)


async def test_mysql_disable_is_refused_for_a_user_that_requires_ssl(my):
    with pytest.raises(AuthenticationError, match="1045") as info:
        await my_app(my, ssl="disable").open()
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("mode", ["verify", "require"])
async def test_mysql_a_client_certificate_authenticates(my, tls, mode):
    files = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    ca = {"ca_file": str(tls.ca)} if mode == "verify" else {}
    async with my_app(my, user=CERT_ROLE, password=None, ssl=mode, **ca, **files) as db:
        assert (await db.execute("SELECT CURRENT_USER() AS u")).scalar() == f"{CERT_ROLE}@{HOST}"
        async with db.transaction() as conn:
            _assert_my_encrypted((await conn.execute(MY_SSL_IN_USE)).rows)
            assert (await conn.execute("SELECT CURRENT_USER() AS u")).scalar() == (
                f"{CERT_ROLE}@{HOST}"
            )


async def test_mysql_without_a_client_certificate_require_subject_refuses(my, tls):
    db = my_app(my, user=CERT_ROLE, password=None, ssl="verify", ca_file=str(tls.ca))
    with pytest.raises(AuthenticationError, match="1045"):
        await db.open()


async def test_mysql_a_client_certificate_with_another_subject_is_refused(my, tls):
    files = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    db = my_app(my, user=OTHER_ROLE, password=None, ssl="verify", ca_file=str(tls.ca), **files)
    with pytest.raises(AuthenticationError, match="1045"):
        await db.open()


async def test_mysql_a_client_certificate_from_another_ca_is_refused(my, tls, tmp_path):
    other = tls_files(tmp_path / "other", client=CERT_ROLE)  # same subject CN, another CA
    files = {"cert_file": str(other.client_cert), "key_file": str(other.client_key)}
    db = my_app(my, user=CERT_ROLE, password=None, ssl="verify", ca_file=str(tls.ca), **files)
    with pytest.raises(ConnectionFailedError) as info:
        await db.open()
    # As on Postgres (TLS 1.3): the server's alert usually arrives first; when the client's next
    # write meets the closed socket, the reset discards it and aiomysql says "Lost connection".
    message = str(info.value)
    said = ("refused the client certificate", "Lost connection to MySQL server")
    assert any(words in message for words in said), message
    assert f"endpoint=mysql://{CERT_ROLE}@{HOST}:{my.port}/test" in message


# -- mysql: the context aiomysql is given, and no fall back to plain text ------------------------


def test_mysql_hands_aiomysql_a_context_from_the_tls_options(tls):
    verify = MySQLDatabase.from_options(CONTEXT, ssl="verify", ca_file=str(tls.ca))
    context = verify.connect_args()["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # Only the private CA is trusted, not the system's store.
    assert context.get_ca_certs() == ssl.create_default_context(cafile=tls.ca).get_ca_certs()
    files = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    require = MySQLDatabase.from_options(CONTEXT, ssl="require", **files).connect_args()["ssl"]
    assert require.verify_mode == ssl.CERT_NONE and not require.check_hostname
    assert "ssl" not in MySQLDatabase.from_options(CONTEXT).connect_args()


async def test_mysql_with_tls_files_never_falls_back_to_plain_text(mysql_url, tls):
    # The machine's MariaDB has no TLS: asking for it, CA and client certificate given, fails
    # (aiomysql alone would carry on in clear text).
    files = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    db = MySQLDatabase.from_options(
        CONTEXT, url=mysql_url, ssl="verify", ca_file=str(tls.ca), **files
    )
    with pytest.raises(ConnectionFailedError, match="did not encrypt"):
        await db.open()
