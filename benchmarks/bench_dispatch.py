"""One ``dispatch`` from a web request: ductwork's public API vs Procrastinate vs a raw insert.

The hot path a request pays to hand work to the engine: one client, no workers, one call at a
time. Each contender gets a fresh database (Postgres) or file (SQLite), a warm-up, then rounds
of ``--ops`` calls, contenders alternating round by round. Reported per contender: p50 and p99
latency, calls/s, and ductwork's ratios.

- ductwork: ``await dw.events.dispatch("bus", "ping", {"i": i})`` through the public client
  (the config's validation, the payload's JSON, the run, the wake-up).
- ductwork store: the engine's own enqueue (``Store.enqueue`` of the same run), without the
  public client's checks, payload and ``Job``: what the client's work costs is the difference.
- procrastinate (Postgres): ``await task.defer_async(i=i)`` on its psycopg connector.
- raw insert: asyncpg ``INSERT`` of one row + ``pg_notify`` in one transaction (Postgres);
  sqlite3 ``INSERT`` of a four-column row + commit with ``synchronous=FULL`` in WAL mode
  (SQLite), run with ``asyncio.to_thread``. The floor any engine starts from.
- raw, run's row (SQLite): the same, inserting the row a dispatch stores (its columns, the
  engine's table and indexes): the floor for storing this job, without ductwork's own work.

With ``--tasks N``, N callers dispatch at once (a web server's concurrent requests); the raw
contenders hold one connection each, which takes one transaction at a time, so their callers
queue for it.

    uv run --with procrastinate python benchmarks/bench_dispatch.py [--ops 1000] [--rounds 5]
        [--tasks 1] [--backend both|postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

PG = "postgresql://postgres@127.0.0.1:5432"
Op = Callable[[int], Awaitable[object]]


async def _timed(op: Op, ops: int, tasks: int = 1) -> tuple[list[float], float]:
    """Each call's latency, and the seconds all took: ``tasks`` callers, ``ops`` calls in all."""
    took: list[float] = []

    async def caller(first: int) -> None:
        for i in range(first, ops, tasks):
            start = time.perf_counter()
            await op(i)
            took.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(caller(first) for first in range(tasks)))
    return took, time.perf_counter() - start


def _one_at_a_time(op: Op) -> Op:
    """``op`` on a single connection, which takes one transaction at a time: callers queue."""
    lock = asyncio.Lock()

    async def locked(i: int) -> object:
        async with lock:
            return await op(i)

    return locked


def _config(url: str) -> Any:
    from ductwork.config.loader import Config

    return Config.from_dict(
        {
            "product": "bench",
            "environments": ["dev"],
            "brokers": {"bus": {"dev": {"provider": "memory"}}},
            "engine": {"dev": {"url": url}},
        }
    )


async def ductwork_op(url: str) -> tuple[Op, Callable[[], Awaitable[None]]]:
    from ductwork.client import Ductwork

    dw = Ductwork(_config(url), env="dev")
    await dw.__aenter__()

    async def op(i: int) -> object:
        return await dw.events.dispatch("bus", "ping", {"i": i})

    await op(-1)  # opens the store, creates its tables
    return op, dw.close


async def store_op(url: str) -> tuple[Op, Callable[[], Awaitable[None]]]:
    from ductwork.client import Ductwork
    from ductwork.engine.records import NewRun
    from ductwork.engine.spec import RetryPolicy

    dw = Ductwork(_config(url), env="dev")
    await dw.__aenter__()
    store = await dw.jobs.store()
    retry = RetryPolicy()

    async def op(i: int) -> object:
        payload = {"key": None, "headers": {}, "message": {"i": i}}
        return await store.enqueue(
            NewRun("events.publish", "bus:ping", "bus", "dev", payload, 0, retry)
        )

    await op(-1)
    return op, dw.close


async def procrastinate_op(url: str) -> tuple[Op, Callable[[], Awaitable[None]]]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", queue="default")
    async def noop(i: int) -> None:
        return None

    await app.open_async()
    await app.schema_manager.apply_schema_async()

    async def op(i: int) -> object:
        return await noop.defer_async(i=i)

    return op, app.close_async


async def raw_pg_op(url: str) -> tuple[Op, Callable[[], Awaitable[None]]]:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url)
    await conn.execute(
        "CREATE TABLE jobs (id bigserial PRIMARY KEY, kind text, input jsonb, status text,"
        " run_at bigint, created_at timestamptz DEFAULT now())"
    )
    insert = await conn.prepare(
        "INSERT INTO jobs (kind, input, status, run_at) VALUES ($1, $2, 'queued', $3)"
    )

    async def op(i: int) -> object:
        async with conn.transaction():
            await insert.fetch("noop", f'{{"i": {i}}}', i)
            await conn.execute("SELECT pg_notify('jobs', 'default')")
        return None

    return _one_at_a_time(op), conn.close


def _sqlite_inserts(
    path: str, sql: str, row: Callable[[int], tuple[Any, ...]]
) -> tuple[Op, Callable[[], Awaitable[None]]]:
    """``sql`` with ``row(i)`` + commit per call, ``synchronous=FULL`` in WAL, via to_thread."""
    import sqlite3

    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")

    def insert(i: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute(sql, row(i))
        db.execute("COMMIT")

    async def op(i: int) -> object:
        return await asyncio.to_thread(insert, i)

    async def close() -> None:
        db.close()

    return _one_at_a_time(op), close


async def raw_sqlite_op(path: str) -> tuple[Op, Callable[[], Awaitable[None]]]:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind TEXT, input TEXT, run_at INT)")
    sql = "INSERT INTO jobs (kind, input, run_at) VALUES (?, ?, ?)"
    return _sqlite_inserts(path, sql, lambda i: ("noop", "{}", i))


async def raw_sqlite_row_op(path: str) -> tuple[Op, Callable[[], Awaitable[None]]]:
    """sqlite3 inserting the row a dispatch stores into the engine's own table and indexes."""
    from ductwork.engine.records import NewRun, run_values
    from ductwork.engine.schema import RUN_INDEXES, metadata
    from ductwork.engine.spec import RetryPolicy
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        metadata.create_all(conn)
        for index in RUN_INDEXES:
            index.create(conn, checkfirst=True)
    engine.dispose()
    payload = {"key": None, "headers": {}, "message": {"i": 0}}
    new = NewRun("events.publish", "bus:ping", "bus", "dev", payload, 0, RetryPolicy())
    columns = list(run_values(new, 0))
    marks = ", ".join("?" * len(columns))
    sql = f"INSERT INTO ductwork_run ({', '.join(columns)}) VALUES ({marks})"
    # a fresh id per call, as a dispatch makes one
    return _sqlite_inserts(path, sql, lambda i: tuple(run_values(new, i).values()))


async def _pg_database() -> tuple[str, Callable[[], Awaitable[None]]]:
    import asyncpg

    name = f"bench_dispatch_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f"CREATE DATABASE {name}")

    async def drop() -> None:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()

    return f"{PG}/{name}", drop


async def run(backend: str, ops: int, rounds: int, tasks: int) -> None:
    contenders: dict[str, tuple[Op, Callable[[], Awaitable[None]]]] = {}
    cleanup: list[Callable[[], Awaitable[None]]] = []
    folder = tempfile.TemporaryDirectory()
    try:
        if backend == "postgres":
            for name, make in (
                ("ductwork", ductwork_op),
                ("ductwork store", store_op),
                ("procrastinate", procrastinate_op),
                ("raw insert", raw_pg_op),
            ):
                if name == "procrastinate":
                    try:
                        import procrastinate  # noqa: F401
                    except ImportError:
                        print("(procrastinate not installed: uv run --with procrastinate …)")
                        continue
                url, drop = await _pg_database()
                cleanup.append(drop)
                if name.startswith("ductwork"):
                    url = url.replace("postgresql://", "postgresql+asyncpg://")
                contenders[name] = await make(url)
        else:
            engine = Path(folder.name) / "engine.db"
            contenders["ductwork"] = await ductwork_op(f"sqlite:///{engine}")
            store_db = Path(folder.name) / "store.db"
            contenders["ductwork store"] = await store_op(f"sqlite:///{store_db}")
            contenders["raw insert"] = await raw_sqlite_op(str(Path(folder.name) / "raw.db"))
            row_db = str(Path(folder.name) / "row.db")
            contenders["raw, run's row"] = await raw_sqlite_row_op(row_db)
        took: dict[str, list[float]] = {name: [] for name in contenders}
        spent = dict.fromkeys(contenders, 0.0)
        # SQLite: past the first WAL cycle (1,000 pages), after which commits overwrite the
        # WAL instead of growing the file; a one-page insert gets there last
        warm = 1500 if backend == "sqlite" else 200
        for op, _ in contenders.values():
            await _timed(op, warm, tasks)  # the pools grown to what the rounds use
        for _ in range(rounds):
            for name, (op, _) in contenders.items():
                latencies, seconds = await _timed(op, ops, tasks)
                took[name] += latencies
                spent[name] += seconds
        at_once = "one dispatch at a time" if tasks == 1 else f"{tasks} callers at once"
        print(f"{backend}: {at_once}, {ops} x {rounds} rounds, no workers")
        p50 = {name: statistics.median(t) for name, t in took.items()}
        for name, t in took.items():
            p99 = statistics.quantiles(t, n=100)[98]
            rate = len(t) / spent[name]
            print(
                f"  {name:15s} p50 {p50[name] * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms"
                f"  {rate:7.0f}/s"
            )
        for name in contenders:
            if name != "ductwork":
                by_rate = spent[name] / spent["ductwork"]
                print(
                    f"  ductwork rate / {name}: {p50[name] / p50['ductwork']:.2f} (by p50),"
                    f" {by_rate:.2f} (by calls/s)"
                )
        for _, close in contenders.values():
            await close()
    finally:
        for drop in cleanup:
            await drop()
        folder.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--tasks", type=int, default=1, help="callers at once (a web server's requests)"
    )
    parser.add_argument("--backend", choices=["postgres", "sqlite", "both"], default="both")
    args = parser.parse_args()
    for backend in ("postgres", "sqlite") if args.backend == "both" else (args.backend,):
        asyncio.run(run(backend, args.ops, args.rounds, args.tasks))


if __name__ == "__main__":
    main()
