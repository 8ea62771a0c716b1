"""Jobs engine vs Procrastinate: executed no-op jobs/s on the same Postgres, in one run.

Each round gets a fresh database on the machine's Postgres (created and dropped here). N no-op
jobs are enqueued first (batches of 500), then two worker processes are started (32 concurrent
jobs each for both engines) and the clock runs from their start until all N jobs are recorded
succeeded, so enqueueing and execution never overlap (worker start-up is inside the clock; the
rate from the first success onwards is printed too). Rounds alternate ductwork, Procrastinate.

    uv run --with procrastinate python benchmarks/bench_vs_procrastinate.py [--jobs 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import procrastinate

PG = "postgresql://postgres@127.0.0.1:5432"
CONCURRENCY = 32  # per worker process, for both engines
BATCH = 500
DEADLINE_S = 300.0
DSN_VAR = "BENCH_PROCRASTINATE_DSN"

logging.getLogger("procrastinate").setLevel(logging.ERROR)  # its 'app in __main__' notice
# The Procrastinate app: this module is also imported by its worker processes (--app=...).
app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get(DSN_VAR, f"{PG}/postgres"))
)


@app.task(name="noop", queue="default")
async def noop() -> None:
    return None


DW_WORKER = """
import asyncio, sys
from ductwork.engine.store import Store
from ductwork.engine.worker import Worker
async def main():
    store = await Store.open(sys.argv[1])
    await Worker(object(), store, concurrency=int(sys.argv[2]), poll_interval=0.2,
                 listen_url=sys.argv[1]).serve()
    await store.close()
asyncio.run(main())
"""


class Database:
    """A private database on the machine's Postgres, dropped on exit."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.url = f"{PG}/{self.name}"

    async def __aenter__(self) -> Database:
        import asyncpg

        self.admin = await asyncpg.connect(f"{PG}/postgres")
        await self.admin.execute(f"CREATE DATABASE {self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        await self.admin.close()


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


async def drain(
    procs: list[subprocess.Popen[bytes]], count: Callable[[], Awaitable[int]], n: int, t0: float
) -> tuple[float, float]:
    """Poll ``count()`` until it reaches n; jobs/s since t0 and since the first success."""
    first: tuple[float, int] | None = None
    while (done := await count()) < n:
        if first is None and done:
            first = (time.perf_counter(), done)
        if time.perf_counter() - t0 > DEADLINE_S:
            raise TimeoutError(f"only {done}/{n} jobs succeeded after {DEADLINE_S:.0f}s")
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker process exited early")
        await asyncio.sleep(0.01)
    end = time.perf_counter()
    t1, d1 = first or (t0, 0)
    return n / (end - t0), (n - d1) / (end - t1)


async def ductwork_round(jobs: int) -> tuple[float, float]:
    from ductwork.engine.schema import run
    from ductwork.engine.spec import RetryPolicy
    from ductwork.engine.store import NewRun, Store, now_ms
    from sqlalchemy import func, select

    async with Database("dw_vs") as db:
        store = await Store.open(db.url)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(0, jobs, BATCH):
                await store.enqueue_many(
                    [
                        NewRun("noop", "bench", "bench", "dev", {}, now_ms(), RetryPolicy())
                        for _ in range(min(BATCH, jobs - i))
                    ]
                )
            q = select(func.count()).select_from(run).where(run.c.status == "succeeded")

            async def count() -> int:
                async with store.engine.connect() as conn:
                    return int((await conn.execute(q)).scalar_one())

            t0 = time.perf_counter()
            cmd = [sys.executable, "-c", DW_WORKER, db.url, str(CONCURRENCY)]
            procs = [subprocess.Popen(cmd) for _ in range(2)]
            rates = await drain(procs, count, jobs, t0)
        finally:
            stop(procs)
            await store.close()
    return rates


async def procrastinate_round(jobs: int) -> tuple[float, float]:
    import asyncpg

    async with Database("pc_vs") as db:
        procs: list[subprocess.Popen[bytes]] = []
        conn = await asyncpg.connect(db.url)
        try:
            connector = procrastinate.PsycopgConnector(conninfo=db.url)
            with app.replace_connector(connector):
                async with app.open_async():
                    await app.schema_manager.apply_schema_async()
                    for i in range(0, jobs, BATCH):
                        await noop.batch_defer_async(*({} for _ in range(min(BATCH, jobs - i))))

            async def count() -> int:
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
                    )
                )

            env = {**os.environ, DSN_VAR: db.url}
            env["PYTHONPATH"] = os.pathsep.join(
                [str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")]
            )
            cmd = [sys.executable, "-m", "procrastinate", "--app=bench_vs_procrastinate.app"]
            cmd += ["worker", f"--concurrency={CONCURRENCY}"]
            t0 = time.perf_counter()
            procs = [
                subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(2)
            ]
            rates = await drain(procs, count, jobs, t0)
        finally:
            stop(procs)
            await conn.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"ductwork": [], "procrastinate": []}
    for r in range(1, args.rounds + 1):
        for name, fn in (("ductwork", ductwork_round), ("procrastinate", procrastinate_round)):
            rate, steady = asyncio.run(fn(args.jobs))
            results[name].append(rate)
            print(
                f"round {r} {name}: {args.jobs} jobs, executed {rate:,.0f}/s"
                f" (from the first success: {steady:,.0f}/s)",
                flush=True,
            )
    dw = statistics.median(results["ductwork"])
    pc = statistics.median(results["procrastinate"])
    print(f"median ductwork {dw:,.0f}/s, procrastinate {pc:,.0f}/s, ratio {dw / pc:.2f}")


if __name__ == "__main__":
    main()
