"""Shared fixtures: a product folder on the embedded providers; a private Postgres database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
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


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def private_pg() -> Iterator[str]:
    """The URL of a Postgres database of this test's own (the machine's Postgres is required)."""
    name = f"dw_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name}"))
    yield f"{PG}/{name}"
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
