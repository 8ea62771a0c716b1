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


@pytest.fixture
def transactions(monkeypatch) -> list[None]:
    """One entry per transaction the store's thread commits (``direct.write``) from now on."""
    made: list[None] = []
    write = direct.write

    async def counted(*args, **kwargs):
        made.append(None)
        return await write(*args, **kwargs)

    monkeypatch.setattr(direct, "write", counted)
    return made


async def test_concurrent_writers_share_commits_and_a_failing_one_rolls_back_alone(
    store, transactions
):
    await direct.write(store, lambda conn: conn.execute("CREATE TABLE t (v INTEGER UNIQUE)"))
    transactions.clear()
    commits: list[int] = []

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
    assert len(transactions) == 1
    rows = await direct.write(
        store, lambda conn: [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]
    )
    assert rows == [i for i in range(50) if i != 7]  # 7's first insert was rolled back too


async def test_concurrent_dispatches_share_commits_and_keep_their_dedupe_keys(store, transactions):
    from ductwork.engine.records import ACTIVE
    from ductwork.engine.schema import run
    from ductwork.engine.spec import RetryPolicy
    from ductwork.engine.store import NewRun
    from sqlalchemy import func, select

    def new(i: int) -> NewRun:
        # the even runs come in pairs sharing a dedupe key: one of each pair is stored
        key = f"k{i // 4}" if i % 2 == 0 else None
        return NewRun("noop", "t", "t", "dev", {"i": i}, 0, RetryPolicy(), dedupe_key=key)

    made = await asyncio.gather(*(store.enqueue(new(i)) for i in range(200)))

    # the first went alone; the rest arrived while it was writing and rode group commits
    assert len(transactions) < 20
    async with store.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(run))).scalar_one()
    keyed = {f"k{i // 4}" for i in range(0, 200, 2)}
    assert count == 100 + len(keyed)  # the 100 unkeyed runs, and one run per key
    by_key: dict[str, set[str]] = {}
    for i, (row, _created) in enumerate(made):
        assert row["status"] in ACTIVE
        if i % 2 == 0:
            assert row["dedupe_key"] == f"k{i // 4}"
            by_key.setdefault(row["dedupe_key"], set()).add(row["id"])
    # each key's callers all got the one run stored for it, created for exactly one of them
    assert all(len(ids) == 1 for ids in by_key.values())
    created = [c for i, (_row, c) in enumerate(made) if i % 2 == 0]
    assert sum(created) == len(keyed)
