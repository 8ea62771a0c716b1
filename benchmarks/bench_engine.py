"""Jobs engine: enqueue and execute throughput, dispatch-to-start latency, on this machine.

No-op jobs (kind ``noop``). SQLite: one in-process worker. Postgres (the machine's, a private
database created and dropped here): two worker processes. Latency is measured with idle
workers, one job at a time, from the run's ``created_at`` to its ``started_at`` (ms clock).

    uv run python benchmarks/bench_engine.py [--jobs 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from ductwork.engine.schema import run
from ductwork.engine.spec import RetryPolicy
from ductwork.engine.store import NewRun, Store, now_ms
from ductwork.engine.worker import Worker
from sqlalchemy import func, select

PG = "postgresql://postgres@127.0.0.1:5432"
WORKER = """
import asyncio, sys
from ductwork.engine.store import Store
from ductwork.engine.worker import Worker
async def main():
    store = await Store.open(sys.argv[1])
    await Worker(object(), store, concurrency=32, poll_interval=0.2, listen_url=sys.argv[1]).serve()
    await store.close()
asyncio.run(main())
"""


def noop() -> NewRun:
    return NewRun("noop", "bench", "bench", "dev", {}, now_ms(), RetryPolicy())


async def succeeded(store: Store) -> int:
    async with store.engine.connect() as conn:
        q = select(func.count()).select_from(run).where(run.c.status == "succeeded")
        return int((await conn.execute(q)).scalar_one())


async def wait_done(store: Store, n: int) -> None:
    while await succeeded(store) < n:
        await asyncio.sleep(0.01)


async def measure(store: Store, jobs: int, label: str) -> dict[str, float]:
    base = await succeeded(store)
    t0 = time.perf_counter()
    for _ in range(min(jobs, 1000)):
        await store.enqueue(noop())
    single = min(jobs, 1000) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, jobs, 500):
        await store.enqueue_many([noop() for _ in range(min(500, jobs - i))])
    batched = jobs / (time.perf_counter() - t0)
    t0 = time.perf_counter()  # execution overlaps enqueueing; this times the whole drain
    await wait_done(store, base + jobs + min(jobs, 1000))
    executed = (jobs + min(jobs, 1000)) / (time.perf_counter() - t0)
    lat = []
    for _ in range(200):
        n = await succeeded(store)
        row, _ = await store.enqueue(noop())
        await wait_done(store, n + 1)
        async with store.engine.connect() as conn:
            q = select(run.c.created_at, run.c.started_at).where(run.c.id == row["id"])
            created, started = (await conn.execute(q)).one()
        lat.append(started - created)
    lat.sort()
    out = {
        "enqueue_per_s": single,
        "enqueue_batched_per_s": batched,
        "executed_per_s": executed,
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[int(len(lat) * 0.99) - 1],
    }
    print(label, " ".join(f"{k}={v:,.1f}" for k, v in out.items()), flush=True)
    return out


async def sqlite(jobs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(f"sqlite:///{folder}/engine.db")
        worker = Worker(object(), store, concurrency=32, poll_interval=0.01)  # type: ignore[arg-type]
        task = asyncio.create_task(worker.run())
        await measure(store, jobs, "sqlite, 1 worker:")
        worker.stop()
        await task
        await store.close()


async def postgres(jobs: int) -> None:
    import asyncpg

    name = f"dw_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f"CREATE DATABASE {name}")
    url = f"{PG}/{name}"
    store = await Store.open(url)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url]) for _ in range(2)]
    try:
        await measure(store, jobs, "postgres, 2 worker processes:")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        await store.close()
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(sqlite(args.jobs))
    asyncio.run(postgres(args.jobs))


if __name__ == "__main__":
    main()
