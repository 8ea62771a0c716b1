"""A product with a session tag, on SQLite (a file per test) and on the machine's Postgres."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.sessions.tokens import keygen

PG = os.environ.get("DUCTWORK_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
# One pair of keys for the whole run, given the way a product gives them: as secrets.
KEY_1, KEY_2 = keygen(), keygen()


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


def product(
    url: str,
    *,
    keys: tuple[str, ...] = ("k1",),
    product_name: str = "shop",
    extra: dict[str, Any] | None = None,
    session: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config with session tag ``users`` (and ``admins``, same keys) on the store ``url``."""
    key_list = [{"id": k, "key": f"${{secret:SESSION_KEY_{k[1:]}}}"} for k in keys]
    users = {
        "selector": "user_id",
        "data": {"user_id": "str", "plan": "str", "seats": "int?"},
        "expiry": "1h",
        "refresh_expiry": "30d",
        "keys": key_list,
        **(session or {}),
    }
    return {
        "product": product_name,
        "environments": ["dev"],
        "engine": {"dev": {"url": url}},
        "sessions": {"users": users, "admins": {**users, "revocation_cache": None}},
        **(extra or {}),
    }


def client(config: dict[str, Any], root: Path) -> Ductwork:
    return Ductwork(Config.from_dict(config, root=root), env="dev")


@pytest.fixture
async def dw(url: str, tmp_path: Path) -> AsyncIterator[Ductwork]:
    async with client(product(url), tmp_path) as found:
        yield found
