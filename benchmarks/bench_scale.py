"""Jobs engine at scale: claim latency as the backlog grows, drain rate as history grows.

One run, Postgres (the machine's; private databases created and dropped here) and SQLite
(files in a temporary folder):

- **claim**: ``Store.claim(worker, 32)`` timed alone at a queued backlog of 1k, 10k, 100k, 1M,
  each sample alternated with the same claim on a store holding 1k (the ratio big/small comes
  from the same minutes), and on Postgres with Procrastinate's fetch (32 single
  ``procrastinate_fetch_job_v2`` calls) on a database holding the same backlog. Claimed rows
  are put back (untimed) so the backlog stays the same.
- **drain**: two worker processes (32 concurrent each) drain N no-op jobs on an empty store and
  on one that holds 1M finished runs with their events; rounds alternate.

Rows are inserted with bulk SQL shaped like the engine's own (ids, events per run), then the
tables are analysed. ``--explain`` prints the plans of the per-cycle queries on a store with 1M
queued and 1M finished runs.

    uv run --with procrastinate python benchmarks/bench_scale.py
        [--sizes 1000,10000,100000,1000000] [--history 1000000] [--drain-jobs 10000]
        [--only claim|drain|explain] [--db postgres|sqlite] [--random-ids] [--count-runs]

The engine before this version (schema 2, random ids) is measured by putting its sources
first on the path: ``git archive <rev> core/ductwork | tar -x -C /tmp/base`` then
``PYTHONPATH=/tmp/base/core … --random-ids`` (worker processes inherit it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from ductwork.engine.schema import run, run_event
from ductwork.engine.spec import RetryPolicy
from ductwork.engine.store import Store, now_ms
from sqlalchemy import func, select, text, update

try:
    from ductwork.engine.schema import status_is
except ImportError:  # the engine before schema version 3 (to measure it: PYTHONPATH, below)

    def status_is(name: str) -> Any:
        return run.c.status == name


PG = "postgresql://postgres@127.0.0.1:5432"
RANDOM_IDS = False  # --random-ids: ids as uuid4().hex (the engine before creation-order ids)
COUNT_RUNS = False  # --count-runs: poll as bench_engine.py does (count every succeeded run)
DAY = 86_400_000
WORKER = """
import asyncio, sys
from ductwork.engine.store import Store
from ductwork.engine.worker import Worker
async def main():
    store = await Store.open(sys.argv[1])
    listen = sys.argv[1] if sys.argv[1].startswith("postgresql") else None
    await Worker(object(), store, concurrency=32, poll_interval=0.2, listen_url=listen).serve()
    await store.close()
asyncio.run(main())
"""
_COLS = (
    "id, kind, target, tag, env, input, status, attempt, max_attempts, retry, run_at, priority,"
    " queue, lease_epoch, cancel_requested, created_at, started_at, finished_at, result"
)
_RETRY = json.dumps(RetryPolicy().to_dict())


# -- stores ---------------------------------------------------------------------------------


class PgDatabase:
    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.url = f"{PG}/{self.name}"

    async def create(self) -> str:
        import asyncpg

        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f"CREATE DATABASE {self.name}")
        await admin.close()
        return self.url

    async def drop(self) -> None:
        import asyncpg

        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        await admin.close()


async def fill(store: Store, n: int, status: str, start: int) -> None:
    """Insert n runs of ``status`` (with their events: none if queued, 2 if finished), bulk."""
    finished = status != "queued"
    step = 50_000 if store.dialect == "postgresql" else 100_000
    for lo in range(0, n, step):
        count = min(step, n - lo)
        t0 = start + lo
        # ids as the engine makes them: 'run_', the creation time (12 hex), 20 random hex
        if store.dialect == "postgresql":
            ident = (
                "'run_' || lpad(to_hex(CAST(:t0 AS BIGINT) + i), 12, '0')"
                " || substr(md5(random()::text || i::text), 1, 20)"
            )
            if RANDOM_IDS:
                ident = "'run_' || md5(random()::text || i::text)"
            series = "generate_series(1, :n) AS g(i)"
            prefix = ""
        else:
            ident = "'run_' || printf('%012x', :t0 + i) || lower(hex(randomblob(10)))"
            if RANDOM_IDS:
                ident = "'run_' || lower(hex(randomblob(16)))"
            series = "s"
            prefix = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
        started = "CAST(:t0 AS BIGINT) + i + 1" if finished else "NULL"
        ended = "CAST(:t0 AS BIGINT) + i + 2" if finished else "NULL"
        values = (
            f"{ident}, 'noop', 'bench', 'bench', 'dev', '{{}}', :status, :attempt, 4, :retry,"
            " CAST(:t0 AS BIGINT) + i, 0, 'default', :attempt, false, CAST(:t0 AS BIGINT) + i,"
            f" {started}, {ended}, NULL"
        )
        sql = f"{prefix}INSERT INTO ductwork_run ({_COLS}) SELECT {values} FROM {series}"
        # as the engine writes them: a run's "enqueued" event is its created_at, not a row
        names = ["started", status]
        events = " UNION ALL ".join(f"SELECT '{e}' AS e, {k + 1} AS k" for k, e in enumerate(names))
        ev_sql = (
            "INSERT INTO ductwork_run_event (run_id, at, event, attempt, worker, detail)"
            f" SELECT r.id, r.created_at + ev.k, ev.e, 1, NULL, NULL FROM ductwork_run r,"
            f" ({events}) AS ev"
            " WHERE r.created_at BETWEEN CAST(:t0 AS BIGINT) + 1 AND CAST(:t0 AS BIGINT) + :n"
            " AND r.status = :status"
        )
        params = {"n": count, "status": status, "attempt": int(finished), "retry": _RETRY, "t0": t0}
        async with store.tx() as conn:
            await conn.execute(text(sql), params)
            if finished:
                await conn.execute(text(ev_sql), {"t0": t0, "n": count, "status": status})


async def analyze(store: Store) -> None:
    if store.dialect == "postgresql":
        async with store.engine.connect() as conn:
            ac = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await ac.execute(text("VACUUM ANALYZE"))
    else:
        async with store.tx() as conn:
            await conn.execute(text("ANALYZE"))


async def last_event(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.max(run_event.c.id)))).scalar() or 0)


async def succeeded_since(store: Store, since: int) -> int:
    """Successes recorded after event ``since`` (a range of the events' primary key, cheap on
    every schema version: counting succeeded runs would read the whole history at each poll
    and slow the store it measures)."""
    async with store.engine.connect() as conn:
        q = (
            select(func.count())
            .select_from(run_event)
            .where(run_event.c.id > since, run_event.c.event == "succeeded")
        )
        return int((await conn.execute(q)).scalar_one())


async def put_back(store: Store) -> None:
    """Claimed runs back to the queue (untimed), so the backlog stays the same."""
    async with store.tx() as conn:
        await conn.execute(
            update(run)
            .where(status_is("running"))
            .values(status="queued", lease_owner=None, lease_expires_at=None)
        )


# -- Procrastinate ----------------------------------------------------------------------------


class Procrastinate:
    """A Procrastinate schema in its own database, filled with n ``todo`` jobs."""

    def __init__(self) -> None:
        self.db = PgDatabase("pc_scale")
        self.conn: Any = None
        self.size = 0

    async def open(self) -> None:
        import asyncpg
        import procrastinate

        await self.db.create()
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=self.db.url))
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
        self.conn = await asyncpg.connect(self.db.url)
        self.worker = await self.conn.fetchval("SELECT * FROM procrastinate_register_worker_v1()")

    async def grow(self, size: int) -> None:
        # triggers off while filling (they would log one event per row); on for the fetches
        await self.conn.execute("ALTER TABLE procrastinate_jobs DISABLE TRIGGER USER")
        await self.conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, priority)"
            " SELECT 'default', 'noop', '{}', 'todo', 0 FROM generate_series(1, $1)",
            size - self.size,
        )
        await self.conn.execute("ALTER TABLE procrastinate_jobs ENABLE TRIGGER USER")
        await self.conn.execute("VACUUM ANALYZE procrastinate_jobs")
        self.size = size

    async def fetch32(self) -> float:
        t0 = time.perf_counter()
        for _ in range(32):
            await self.conn.fetchval(
                "SELECT id FROM procrastinate_fetch_job_v2(NULL::varchar[], $1)", self.worker
            )
        took = time.perf_counter() - t0
        await self.conn.execute(
            "UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL WHERE status = 'doing'"
        )
        return took

    async def close(self) -> None:
        await self.conn.close()
        await self.db.drop()


# -- claim latency ----------------------------------------------------------------------------


async def claim32(store: Store) -> float:
    t0 = time.perf_counter()
    got = await store.claim("bench", 32)
    took = time.perf_counter() - t0
    assert len(got) == 32, len(got)
    await put_back(store)
    return took


async def open_store(kind: str, tmp: str, name: str, cleanup: list[Any]) -> Store:
    if kind == "postgres":
        db = PgDatabase(f"dw_scale_{name}")
        cleanup.append(db)
        return await Store.open(await db.create())
    return await Store.open(f"sqlite:///{tmp}/{name}.db")


async def bench_claims(kind: str, sizes: list[int], samples: int, tmp: str) -> list[dict]:
    cleanup: list[Any] = []
    rows: list[dict] = []
    small = await open_store(kind, tmp, "small", cleanup)
    big = await open_store(kind, tmp, "big", cleanup)
    pc = Procrastinate() if kind == "postgres" else None
    try:
        start = now_ms() - 60 * DAY
        await fill(small, sizes[0], "queued", start)
        await analyze(small)
        if pc is not None:
            await pc.open()
        have = 0
        for size in sizes:
            t = time.perf_counter()
            await fill(big, size - have, "queued", start + have)
            have = size
            await analyze(big)
            if pc is not None:
                await pc.grow(size)
            filled = time.perf_counter() - t
            for store in (small, big):  # warm up: caches, prepared statements
                await claim32(store)
            got: dict[str, list[float]] = {"small": [], "big": [], "pc": []}
            for _ in range(samples):
                got["small"].append(await claim32(small))
                got["big"].append(await claim32(big))
                if pc is not None:
                    got["pc"].append(await pc.fetch32())
            med = {k: statistics.median(v) * 1000 for k, v in got.items() if v}
            row = {"db": kind, "backlog": size, "fill_s": filled, **med}
            rows.append(row)
            pc_txt = f", procrastinate 32 fetches {med['pc']:.1f} ms" if "pc" in med else ""
            print(
                f"{kind} claim(32) p50 at {size:>9,} queued: {med['big']:.1f} ms"
                f" (1k store in the same minutes: {med['small']:.1f} ms,"
                f" ratio {med['big'] / med['small']:.2f}){pc_txt}  [filled in {filled:.0f}s]",
                flush=True,
            )
    finally:
        for store in (small, big):
            await store.close()
        if pc is not None and pc.conn is not None:
            await pc.close()
        for db in cleanup:
            await db.drop()
    return rows


# -- drain rate -------------------------------------------------------------------------------


_STATIO = text(
    "SELECT indexrelname, idx_blks_read, idx_blks_hit FROM pg_statio_user_indexes"
    " UNION ALL SELECT relname, heap_blks_read, heap_blks_hit FROM pg_statio_user_tables"
)


async def statio(store: Store) -> dict[str, tuple[int, int]]:
    """Postgres: blocks read from outside shared buffers and found in them, per table/index."""
    if store.dialect != "postgresql":
        return {}
    async with store.engine.connect() as conn:
        return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in await conn.execute(_STATIO)}


async def count_succeeded(store: Store) -> int:
    """Every succeeded run: what bench_engine.py polls (it reads the whole history each time)."""
    async with store.engine.connect() as conn:
        q = select(func.count()).select_from(run).where(run.c.status == "succeeded")
        return int((await conn.execute(q)).scalar_one())


def io_profile(before: dict, after: dict, jobs: int) -> str:
    """The relations whose blocks a drain touched most, per job: read (missed) / hit."""
    per = {
        k: ((after[k][0] - before[k][0]) / jobs, (after[k][1] - before[k][1]) / jobs)
        for k in after
        if k in before
    }
    top = sorted(per.items(), key=lambda kv: -(kv[1][0] * 10 + kv[1][1]))[:6]
    return ", ".join(f"{k} {r:.2f}/{h:.1f}" for k, (r, h) in top)


async def drain_round(store: Store, url: str, jobs: int) -> tuple[float, float]:
    """Enqueue ``jobs`` no-op runs, start two workers, time until all succeeded."""
    await fill(store, jobs, "queued", now_ms() - DAY)
    await analyze(store)
    cmd = [sys.executable, "-c", WORKER, url]
    since = await last_event(store)
    base = await count_succeeded(store) if COUNT_RUNS else 0

    async def progress() -> int:
        if COUNT_RUNS:
            return await count_succeeded(store) - base
        return await succeeded_since(store, since)

    io_before = await statio(store)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd) for _ in range(2)]
    first: tuple[float, int] | None = None
    try:
        while (done := await progress()) < jobs:
            if first is None and done:
                first = (time.perf_counter(), done)
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker process exited early")
            if time.perf_counter() - t0 > 600:
                raise TimeoutError(f"only {done}/{jobs} drained in 600 s")
            await asyncio.sleep(0.02)
        end = time.perf_counter()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    t1, d1 = first or (t0, 0)
    if io_before:
        print(f"  blocks per job, read/hit: {io_profile(io_before, await statio(store), jobs)}")
    return jobs / (end - t0), (jobs - d1) / (end - t1)


async def bench_drain(kind: str, history: int, jobs: int, rounds: int, tmp: str) -> dict:
    cleanup: list[Any] = []
    empty = await open_store(kind, tmp, "empty", cleanup)
    full = await open_store(kind, tmp, "history", cleanup)
    urls = {
        "empty": empty.engine.url.render_as_string(hide_password=False),
        "history": full.engine.url.render_as_string(hide_password=False),
    }
    urls = {k: u.replace("+asyncpg", "").replace("+aiosqlite", "") for k, u in urls.items()}
    try:
        t = time.perf_counter()
        await fill(full, history, "succeeded", now_ms() - 300 * DAY)
        await analyze(full)
        print(f"{kind}: {history:,} finished runs filled in {time.perf_counter() - t:.0f}s")
        got: dict[str, list[tuple[float, float]]] = {"empty": [], "history": []}
        for r in range(rounds):
            order = [("empty", empty), ("history", full)]
            for name, store in order if r % 2 == 0 else order[::-1]:  # ABBA: no order bias
                rate, steady = await drain_round(store, urls[name], jobs)
                got[name].append((rate, steady))
                print(
                    f"{kind} drain round {r + 1} {name:>7}: {jobs:,} jobs, {rate:,.0f}/s"
                    f" (from the first success: {steady:,.0f}/s)",
                    flush=True,
                )
        med = {
            f"{k}_{i}": statistics.median(v[i] for v in vs) for k, vs in got.items() for i in (0, 1)
        }
        print(
            f"{kind} drain median: empty {med['empty_0']:,.0f}/s ({med['empty_1']:,.0f}/s steady),"
            f" with {history:,} finished {med['history_0']:,.0f}/s"
            f" ({med['history_1']:,.0f}/s steady): ratio {med['history_0'] / med['empty_0']:.2f}"
            f" ({med['history_1'] / med['empty_1']:.2f} steady)",
            flush=True,
        )
        return med
    finally:
        await empty.close()
        await full.close()
        for db in cleanup:
            await db.drop()


# -- plans ------------------------------------------------------------------------------------


async def explain(kind: str, size: int, tmp: str) -> None:
    from ductwork.engine.retention import _candidates

    cleanup: list[Any] = []
    store = await open_store(kind, tmp, "explain", cleanup)
    try:
        await fill(store, size, "succeeded", now_ms() - 300 * DAY)
        await fill(store, size, "queued", now_ms() - 100 * DAY)
        await analyze(store)
        now = now_ms()
        queries = {
            "claim": select(run.c.id)
            .where(status_is("queued"), run.c.run_at <= now)
            .order_by(run.c.priority.desc(), run.c.run_at, run.c.id)
            .limit(32),
            "queue limit": select(func.count())
            .select_from(run)
            .where(status_is("running"), run.c.queue == "mail"),
            "reap": select(run.c.id).where(status_is("running"), run.c.lease_expires_at < now),
            "wake": select(run.c.id).where(status_is("waiting"), run.c.run_at <= now),
            "prune": _candidates("succeeded", now - 7 * DAY).limit(500),
            "jobs ls": select(run.c.id).order_by(run.c.created_at.desc(), run.c.id).limit(50),
        }
        prefix = "EXPLAIN QUERY PLAN " if kind == "sqlite" else "EXPLAIN (ANALYZE, COSTS OFF) "
        async with store.engine.connect() as conn:
            for name, q in queries.items():
                sql = str(q.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
                print(f"-- {kind} {name}")
                for r in (await conn.execute(text(prefix + sql))).all():
                    print("  ", r[-1])
    finally:
        await store.close()
        for db in cleanup:
            await db.drop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--drain-jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=["claim", "drain", "explain"], default=None)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default=None)
    parser.add_argument("--random-ids", action="store_true", help="fill with uuid4-style ids")
    parser.add_argument("--count-runs", action="store_true", help="poll by counting all runs")
    args = parser.parse_args()
    global RANDOM_IDS, COUNT_RUNS
    RANDOM_IDS, COUNT_RUNS = args.random_ids, args.count_runs
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [args.db] if args.db else ["postgres", "sqlite"]
    with tempfile.TemporaryDirectory(prefix="dw-scale-") as tmp:
        for kind in kinds:
            if args.only in (None, "claim"):
                asyncio.run(bench_claims(kind, sizes, args.samples, tmp))
            if args.only in (None, "drain"):
                asyncio.run(bench_drain(kind, args.history, args.drain_jobs, args.rounds, tmp))
            if args.only == "explain":
                asyncio.run(explain(kind, sizes[-1], tmp))
            for f in os.listdir(tmp):
                os.unlink(os.path.join(tmp, f))


if __name__ == "__main__":
    main()
