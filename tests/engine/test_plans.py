"""Every per-cycle query reads an index that holds only the rows it can return.

The statements are captured as the store runs them (claim with a queue limit, reap, waking
parked runs, a pruning batch), then explained on the same connection: SQLite's plan must name
the index and sort nothing; Postgres (its tables here are tiny, so sequential scans are turned
off for the check) likewise. The benchmark (benchmarks/bench_scale.py --only explain) shows
the same plans on a store with a million queued and a million finished runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from ductwork.engine.retention import prune
from ductwork.engine.schema import RUN_INDEXES, SCHEMA_VERSION, metadata, run
from ductwork.engine.spec import RetryPolicy
from ductwork.engine.steps import wake_due
from ductwork.engine.store import NewRun, Store, now_ms
from sqlalchemy import event, inspect, text

from .conftest import clean, plan_of

EXPECTED = {
    "claim": "ductwork_run_claim",
    "limit": "ductwork_run_running",
    "reap": "ductwork_run_running",
    "wake": "ductwork_run_waiting",
    "prune": "ductwork_run_finished",
}


def _kind(statement: str) -> str | None:
    s = " ".join(statement.split())
    if "ORDER BY ductwork_run.priority DESC" in s:
        return "claim"
    if s.startswith("SELECT count(*)") and "'running'" in s:
        return "limit"
    if s.startswith("UPDATE ductwork_run SET status=") and "lease_expires_at <" in s:
        return "reap"
    if "status = 'waiting'" in s:
        return "wake"
    if "ORDER BY ductwork_run.finished_at" in s:
        return "prune"
    return None


async def _captured(store: Store) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {}

    def before(conn, cursor, statement, params, context, executemany):
        kind = _kind(statement)
        if kind and kind not in found:
            found[kind] = (statement, params)

    sync = store.engine.sync_engine
    event.listen(sync, "before_cursor_execute", before)
    try:
        await store.enqueue_many(
            [NewRun("noop", "t", "t", "dev", {}, now_ms(), RetryPolicy()) for _ in range(3)]
        )
        await store.claim("w", 2, limits={"default": 1})
        await store.reap()
        await wake_due(store)
        await prune(store, {"succeeded": 1.0})
    finally:
        event.remove(sync, "before_cursor_execute", before)
    return found


async def test_per_cycle_queries_read_their_partial_index(store):
    found = await _captured(store)
    assert set(found) == set(EXPECTED)
    for kind, (statement, params) in found.items():
        plan = await plan_of(store, statement, params)
        if store.dialect == "sqlite":
            assert "TEMP B-TREE" not in plan, (kind, plan)  # nothing sorted
        else:
            assert "Sort" not in plan, (kind, plan)
        assert EXPECTED[kind] in plan, (kind, plan)


async def test_a_version_2_store_is_migrated_to_the_partial_indexes(url):
    store = await Store.open(url)
    try:
        async with store.tx() as conn:
            for index in RUN_INDEXES:
                await conn.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
            # the indexes of version 1 and 2: over every run, in no query's order
            await conn.execute(
                text(
                    "CREATE INDEX ductwork_run_due"
                    " ON ductwork_run (status, queue, priority, run_at)"
                )
            )
            await conn.execute(
                text("CREATE INDEX ductwork_run_lease ON ductwork_run (status, lease_expires_at)")
            )
            await conn.execute(text("DELETE FROM ductwork_engine_version WHERE version > 2"))
    finally:
        await store.close()
    store = await Store.open(url)
    try:
        async with store.engine.connect() as conn:
            names = await conn.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes(run.name)}
            )
            version = (
                await conn.execute(text("SELECT max(version) FROM ductwork_engine_version"))
            ).scalar()
        assert version == SCHEMA_VERSION
        assert {i.name for i in RUN_INDEXES} <= names
        assert not {"ductwork_run_due", "ductwork_run_lease"} & names
        assert metadata.tables[run.name] is run
    finally:
        await store.close()


_NEW_UNIQUE = ("ductwork_run_dedupe", "ductwork_run_schedule_slot")


async def _to_version_6(store: Store) -> None:
    """Give the run table version 6's shape: unique constraints over every run."""
    async with store.tx() as conn:
        for name in _NEW_UNIQUE:
            await conn.execute(text(f"DROP INDEX {name}"))
        if store.dialect == "postgresql":
            await conn.execute(
                text(
                    "ALTER TABLE ductwork_run ADD CONSTRAINT ductwork_run_dedupe_key_key"
                    " UNIQUE (dedupe_key), ADD CONSTRAINT ductwork_run_slot"
                    " UNIQUE (schedule_id, scheduled_for)"
                )
            )
        else:
            ddl = (
                await conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"),
                    {"t": run.name},
                )
            ).scalar_one()
            kept = [i for i in RUN_INDEXES if i.name not in _NEW_UNIQUE]
            for index in kept:
                await conn.execute(text(f"DROP INDEX {index.name}"))
            await conn.execute(text("ALTER TABLE ductwork_run RENAME TO old_run"))
            old = ddl.rstrip().removesuffix(")") + (
                ", UNIQUE (dedupe_key), CONSTRAINT ductwork_run_slot"
                " UNIQUE (schedule_id, scheduled_for))"
            )
            await conn.execute(text(old))
            await conn.execute(text("INSERT INTO ductwork_run SELECT * FROM old_run"))
            await conn.execute(text("DROP TABLE old_run"))
            for index in kept:
                await conn.run_sync(index.create)
        await conn.execute(text("DELETE FROM ductwork_engine_version WHERE version > 6"))


async def _unique_constraints(store: Store) -> list[str]:
    async with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            query = (
                "SELECT conname FROM pg_constraint"
                " WHERE conrelid = 'ductwork_run'::regclass AND contype = 'u'"
            )
            return [r[0] for r in await conn.execute(text(query))]
        listed = await conn.execute(text("PRAGMA index_list(ductwork_run)"))
        return [r[1] for r in listed if r[3] == "u"]


async def test_a_version_6_store_keeps_its_runs_and_rules_with_partial_unique_indexes(url):
    """Version 7 indexes dedupe keys and schedule slots only for runs that have them; every
    run survives the change (SQLite rebuilds the table) and both rules still hold."""
    from ductwork.engine.records import run_values
    from sqlalchemy.exc import IntegrityError

    def new(**kw: Any) -> NewRun:
        return NewRun("noop", "t", "t", "dev", {"n": 1}, now_ms(), RetryPolicy(), **kw)

    store = await Store.open(url)
    try:
        await clean(store)
        keyed, _ = await store.enqueue(new(dedupe_key="k"))
        plain = await store.enqueue_many([new() for _ in range(5)])
        await _to_version_6(store)
        assert len(await _unique_constraints(store)) == 2
        async with store.engine.connect() as conn:
            before = sorted(tuple(r) for r in await conn.execute(run.select()))
    finally:
        await store.close()
    store = await Store.open(url)  # migrates to version 7
    try:
        assert await _unique_constraints(store) == []
        async with store.engine.connect() as conn:
            after = sorted(tuple(r) for r in await conn.execute(run.select()))
            names = await conn.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes(run.name)}
            )
            version = (
                await conn.execute(text("SELECT max(version) FROM ductwork_engine_version"))
            ).scalar()
        assert after == before and len(after) == 1 + len(plain)
        assert version == SCHEMA_VERSION == 7
        assert {i.name for i in RUN_INDEXES} <= names
        again, created = await store.enqueue(new(dedupe_key="k"))  # the key is still one run's
        assert not created and again["id"] == keyed["id"]
        slot = new(schedule_id="sch_1", scheduled_for=1)
        async with store.tx() as conn:
            await conn.execute(run.insert().values(run_values(slot, now_ms())))
        with pytest.raises(IntegrityError):  # the same slot again: refused
            async with store.tx() as conn:
                await conn.execute(run.insert().values(run_values(slot, now_ms())))
        assert len(await _unique_constraints(store)) == 0
    finally:
        await store.close()
