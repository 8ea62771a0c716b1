"""A product with a session tag, on SQLite (a file per test) and on the machine's Postgres."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ductwork.client import Ductwork

sys.path.insert(0, str(Path(__file__).parent))  # sessions_app, session_fns

from sessions_app import KEY_1, KEY_2, client, product

PG = os.environ.get("DUCTWORK_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> Any:
    name = f"dw_sessions_{uuid.uuid4().hex[:10]}"
    # The machine's Postgres is a required service: none fails the run.
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    yield f"{PG}/{name}"
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: Any, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/engine.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_KEY_1", KEY_1)
    monkeypatch.setenv("SESSION_KEY_2", KEY_2)


@pytest.fixture
async def dw(url: str, tmp_path: Path) -> AsyncIterator[Ductwork]:
    async with client(product(url), tmp_path) as found:
        yield found
