"""Postgres select-by-key: ductwork's ``postgres`` provider vs raw SQLAlchemy Core vs asyncpg.

Run: ``uv run python benchmarks/bench_sql.py [--ops N] [--rounds R] [--url URL]``. Uses the
machine's PostgreSQL (``postgresql://postgres@127.0.0.1:5432/test`` unless ``--url`` or
``DUCTWORK_BENCH_POSTGRES_URL``). One serial task; each contender does ``--ops`` selects of one
row by primary key per round, rounds interleaved (A, B, C, D, A, B, …) so machine noise hits all
alike. Reported: median ops/s and client CPU per op for each contender, and ductwork's ratio to
each raw client (CPU per op is steadier than ops/s when other processes share the machine).

- ductwork: ``await db.execute(sql, {"id": k})`` (a pooled connection per call, rows as dicts;
  a lone statement runs as a prepared statement on the pooled asyncpg connection).
- sqlalchemy: an engine with the same settings; per op ``async with engine.connect()``, execute
  a prebuilt ``text()`` statement, ``.all()`` (a pooled connection per op, the cheapest idiom).
- sqlalchemy autocommit: the same on ``engine.execution_options(isolation_level="AUTOCOMMIT")``
  (no BEGIN/ROLLBACK round trips): the best SQLAlchemy Core does for a lone statement, and what
  the provider still runs when its direct path is off (listeners, ``echo``, caching disabled).
- asyncpg pool: ``async with pool.acquire(): fetch`` (a pooled connection per op). On release
  asyncpg resets the session (``RESET ALL``, ``UNLISTEN *``, advisory locks...): a second round
  trip per op, which SQLAlchemy's pool (a rollback, none needed in autocommit) does not make.
- asyncpg pool no reset: the same pool with a no-op ``reset``, so one round trip per op like
  ductwork: the like-for-like raw pool.
- asyncpg held: ``fetch`` on one held connection (the floor: no pool at all).

Not a test: never collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from ductwork_sql.postgres import PostgresDatabase
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

ROWS = 1000
POOL = 5


async def _rate(op: Callable[[int], Awaitable[object]], keys: list[int]) -> tuple[float, float]:
    """Ops per second (wall clock) and client CPU microseconds per op."""
    start, cpu = time.perf_counter(), time.process_time()
    for k in keys:
        await op(k)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return len(keys) / wall, cpu / len(keys) * 1e6


async def main(url: str, ops: int, rounds: int) -> None:
    table = f"bench_{uuid.uuid4().hex[:10]}"
    select = f"SELECT id, name, score FROM {table} WHERE id = :id"
    db = PostgresDatabase.from_options(url=url, pool_size=POOL)
    await db.open()
    # The same settings the provider's engine gets (pool, timeouts, TLS off, hidden params).
    engine = create_async_engine(
        db.url,
        pool_size=POOL,
        max_overflow=10,
        pool_timeout=30,
        hide_parameters=True,
        connect_args=db.connect_args(),
    )
    dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL, ssl=False)

    async def no_reset(conn: asyncpg.Connection) -> None:
        pass  # asyncpg still rolls back an open transaction; nothing else between uses

    bare_pool = await asyncpg.create_pool(
        dsn, min_size=POOL, max_size=POOL, ssl=False, reset=no_reset
    )
    held = await asyncpg.connect(dsn, ssl=False)
    try:
        await db.execute(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(200), score INTEGER)"
        )
        async with db.transaction() as tx:
            for i in range(ROWS):
                await tx.execute(
                    f"INSERT INTO {table} VALUES (:id, :name, :score)",
                    {"id": i, "name": f"name-{i}", "score": i * 7},
                )

        stmt = text(select)
        raw_sql = f"SELECT id, name, score FROM {table} WHERE id = $1"

        async def ductwork_op(k: int) -> object:
            return (await db.execute(select, {"id": k})).rows

        async def sqlalchemy_op(k: int) -> object:
            async with engine.connect() as conn:
                return (await conn.execute(stmt, {"id": k})).all()

        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

        async def sqlalchemy_autocommit_op(k: int) -> object:
            async with autocommit.connect() as conn:
                return (await conn.execute(stmt, {"id": k})).all()

        async def asyncpg_pool_op(k: int) -> object:
            async with pool.acquire() as conn:
                return await conn.fetch(raw_sql, k)

        async def asyncpg_bare_pool_op(k: int) -> object:
            async with bare_pool.acquire() as conn:
                return await conn.fetch(raw_sql, k)

        async def asyncpg_held_op(k: int) -> object:
            return await held.fetch(raw_sql, k)

        contenders: dict[str, Callable[[int], Awaitable[object]]] = {
            "ductwork": ductwork_op,
            "sqlalchemy": sqlalchemy_op,
            "sqlalchemy autocommit": sqlalchemy_autocommit_op,
            "asyncpg pool": asyncpg_pool_op,
            "asyncpg pool no reset": asyncpg_bare_pool_op,
            "asyncpg held": asyncpg_held_op,
        }
        assert (await ductwork_op(3)) == [{"id": 3, "name": "name-3", "score": 21}]
        rng = random.Random(7)
        warm = [rng.randrange(ROWS) for _ in range(200)]
        for op in contenders.values():  # warm pools and prepared-statement caches
            await _rate(op, warm)

        rates: dict[str, list[float]] = {name: [] for name in contenders}
        cpus: dict[str, list[float]] = {name: [] for name in contenders}
        for r in range(rounds):
            keys = [rng.randrange(ROWS) for _ in range(ops)]
            order = list(contenders.items())
            if r % 2:  # alternate who goes first as well
                order.reverse()
            for name, op in order:
                rate, cpu = await _rate(op, keys)
                rates[name].append(rate)
                cpus[name].append(cpu)

        med = {name: statistics.median(values) for name, values in rates.items()}
        print(f"postgres select by key, {ops} ops x {rounds} rounds, serial, pool {POOL}")
        for name, values in rates.items():
            each = " ".join(f"{v:7.0f}" for v in values)
            print(
                f"  {name:21s} median {med[name]:7.0f} ops/s, "
                f"client CPU {statistics.median(cpus[name]):5.0f} us/op   rounds: {each}"
            )
        for raw in [name for name in contenders if name != "ductwork"]:
            per_round = [d / s for d, s in zip(rates["ductwork"], rates[raw], strict=True)]
            print(
                f"  ratio ductwork/{raw:21s} {med['ductwork'] / med[raw]:.3f} "
                f"(per-round median {statistics.median(per_round):.3f}; client CPU per op "
                f"{statistics.median(cpus['ductwork']) / statistics.median(cpus[raw]):.2f}x)"
            )
    finally:
        await db.execute(f"DROP TABLE IF EXISTS {table}")
        await held.close()
        await pool.close()
        await bare_pool.close()
        await engine.dispose()
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "DUCTWORK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.ops, args.rounds))
