"""One-trip SQLite writes: the group commit many concurrent writers share."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from ductwork.engine import direct
from ductwork.engine.store import Store


@pytest.fixture
async def store(sqlite_url: str):
    opened = await Store.open(sqlite_url)
    yield opened
    await opened.close()


async def test_concurrent_writers_share_commits_and_a_failing_one_rolls_back_alone(
    store, monkeypatch
):
    await direct.write(store, lambda conn: conn.execute("CREATE TABLE t (v INTEGER UNIQUE)"))
    commits: list[int] = []
    transactions = 0
    write = direct.write

    async def counted(*args, **kwargs):
        nonlocal transactions
        transactions += 1
        return await write(*args, **kwargs)

    monkeypatch.setattr(direct, "write", counted)

    def insert(value: int) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
            if value == 7:
                conn.execute("INSERT INTO t (v) VALUES (?)", (value,))  # its own duplicate
            commits.append(conn.total_changes)
            return value

        return fn

    results = await asyncio.gather(
        *(direct.batched(store, insert(i)) for i in range(50)), return_exceptions=True
    )
    assert isinstance(results[7], sqlite3.IntegrityError)
    assert [r for i, r in enumerate(results) if i != 7] == [i for i in range(50) if i != 7]
    assert len(commits) == 49
    # submitted together, before the first commit began: one transaction took them all
    assert transactions == 1
    rows = await write(
        store, lambda conn: [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]
    )
    assert rows == [i for i in range(50) if i != 7]  # 7's first insert was rolled back too
