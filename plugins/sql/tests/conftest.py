"""Servers for the sql plugin's tests: the machine's PostgreSQL and MariaDB.

Both run on every machine of this project (see the env notes); override with
``DUCTWORK_TEST_POSTGRES_URL`` / ``DUCTWORK_TEST_MYSQL_URL``. A server that is not ready within
``READY_WITHIN`` seconds fails the tests that need it: never a skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

import pytest
from ductwork.providers import ProviderContext
from ductwork_sql.mysql import MySQLDatabase
from ductwork_sql.postgres import PostgresDatabase

READY_WITHIN = 20.0


def _wait_until_ready(cls: type[PostgresDatabase | MySQLDatabase], url: str) -> str:
    async def ping() -> None:
        async with cls.from_options(url=url, connect_timeout=2) as db:
            await db.ping()

    deadline = time.monotonic() + READY_WITHIN
    while True:
        try:
            asyncio.run(ping())
            return url
        except Exception as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"{cls.__name__}: no server ready at {url}: {exc}")
            time.sleep(0.2)  # poll: the service may still be starting


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("DUCTWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    return _wait_until_ready(PostgresDatabase, url)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    url = os.environ.get("DUCTWORK_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
    return _wait_until_ready(MySQLDatabase, url)


@pytest.fixture
def context() -> ProviderContext:
    return ProviderContext(resource="databases.main", env="test", provider="sql")


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["postgres", "mysql"])
async def database_url(request, postgres_url, mysql_url):
    """A fresh, empty database on each server; dropped afterwards."""
    name = f"dw_{uuid.uuid4().hex[:10]}"
    if request.param == "postgres":
        admin_cls, admin_url = PostgresDatabase, postgres_url
        url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    else:
        admin_cls, admin_url = MySQLDatabase, mysql_url
        url = mysql_url.rsplit("/", 1)[0] + f"/{name}"
    async with admin_cls.from_options(url=admin_url) as admin:
        await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield request.param, url
    finally:
        async with admin_cls.from_options(url=admin_url) as admin:
            drop = " WITH (FORCE)" if request.param == "postgres" else ""
            await admin.execute(f"DROP DATABASE IF EXISTS {name}{drop}")
