"""Shared fixtures: a product folder on the embedded providers; a private Postgres database."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.demo import sample_config
from hypothesis import settings

# Properties judge outcomes, never speed: on a loaded machine one example (the first, which
# imports and compiles) can take longer than hypothesis's default 200 ms deadline.
settings.register_profile("ductwork", deadline=None)
settings.load_profile("ductwork")


@pytest.fixture
def product_dir(tmp_path: Path) -> Path:
    (tmp_path / "ductwork.yaml").write_text(sample_config())
    return tmp_path


@pytest.fixture
async def dw(product_dir: Path):
    async with Ductwork(Config.load(product_dir / "ductwork.yaml"), env="dev") as client:
        yield client


PG = os.environ.get("DUCTWORK_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


async def pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """A Postgres database of its own, dropped after (the machine's Postgres is required:
    .ci/services.sh starts it, and none fails the run)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(pg_admin(f"CREATE DATABASE {name}"))
    try:
        yield f"{PG}/{name}"
    finally:
        asyncio.run(pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def private_pg() -> Iterator[str]:
    """The URL of a Postgres database of this test's own."""
    with pg_database("dw_test") as url:
        yield url


@pytest.fixture(scope="session")
def _folder_databases() -> Iterator[tuple[ExitStack, dict[str, str]]]:
    with ExitStack() as stack:
        yield stack, {}


@pytest.fixture
def pg_url(
    request: pytest.FixtureRequest, _folder_databases: tuple[ExitStack, dict[str, str]]
) -> str:
    """The Postgres database of this test's folder, made on first use and kept for the session.

    One per folder (``dw_engine_…``, ``dw_sessions_…``): a suite that wipes its tables between
    tests never shares a database with another suite.
    """
    stack, made = _folder_databases
    folder = re.sub(r"[^a-z0-9]+", "_", request.path.parent.name.lower())
    if folder not in made:
        made[folder] = stack.enter_context(pg_database(f"dw_{folder}"))
    return made[folder]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A run store's URL: an SQLite file of this test's own, then the folder's Postgres."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/engine.db"
    return str(request.getfixturevalue("pg_url"))
