"""The store's Postgres pool replaces connections the server ended before handing them out."""

from __future__ import annotations

import asyncio

import asyncpg
from ductwork.engine.store import Store
from sqlalchemy import text


async def _backends(admin: asyncpg.Connection, database: str) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return [row["pid"] for row in rows]


async def test_a_terminated_backend_does_not_fail_the_next_call(pg_url):
    store = await Store.open(pg_url)
    database = pg_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", timeout=5)
    try:
        # Several pooled connections, all checked in again.
        async def one() -> int:
            async with store.tx() as conn:
                return int((await conn.execute(text("SELECT 1"))).scalar_one())

        assert await asyncio.gather(*(one() for _ in range(4))) == [1, 1, 1, 1]
        pids = await _backends(admin, database)
        assert pids
        for pid in pids:  # the timeout makes the server wait until each backend is gone
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
        # Every pooled connection is dead: each call gets a fresh one and succeeds.
        assert await asyncio.gather(*(one() for _ in range(4))) == [1, 1, 1, 1]
        assert await one() == 1
    finally:
        await admin.close()
        await store.close()
