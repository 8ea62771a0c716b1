"""Run stores on SQLite (a file per test) and on the machine's Postgres (``url`` and
``pg_url``, tests/conftest.py: a database of this folder's own)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ductwork.engine.schema import metadata
from ductwork.engine.store import Store

HERE = Path(__file__).parent


async def clean(store: Store) -> None:
    async with store.tx() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "ductwork_engine_version":
                await conn.execute(table.delete())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/engine.db"


@pytest.fixture
async def store(url: str):
    opened = await Store.open(url)
    await clean(opened)
    yield opened
    await opened.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def plan_of(store: Store, statement: str, params: Any) -> str:
    """The query plan of ``statement``: SQLite's, or Postgres's with sequential and bitmap
    scans off (test tables are tiny: an index must be usable, not merely chosen)."""
    async with store.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        if store.dialect == "sqlite":
            cur = await driver.execute("EXPLAIN QUERY PLAN " + statement, params)
            return "\n".join(str(r[-1]) for r in await cur.fetchall())
        await driver.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        try:
            rows = await driver.fetch("EXPLAIN " + statement, *params)
        finally:
            await driver.execute("RESET enable_seqscan; RESET enable_bitmapscan")
        return "\n".join(r[0] for r in rows)


def worker_command(url: str, *args: str) -> list[str]:
    return [sys.executable, str(HERE / "worker_proc.py"), url, *args]
