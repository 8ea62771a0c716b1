"""Feature runs vs DBOS Transact: three-step no-op workflows/s and per-step overhead, one run.

Both sides run the same workflow: three steps, each an async no-op, checkpointed.

* SQLite, one process: N workflows (ductwork: runs enqueued first, then one in-process worker
  with 32 slots executes them; DBOS: N workflows started at once in one process). Clock from
  the start of execution to the last completion.
* Per-step overhead (one process): workflows run one at a time; each ``await`` of a step is
  timed inside the workflow body (the step's call plus its checkpoint), p50 and p99; SQLite
  on disk, SQLite on tmpfs (``/dev/shm``, where the commit's fsync costs nothing and what is
  left is the software's own overhead), and Postgres (local, over TCP).
* Postgres, two processes: ductwork: N runs enqueued, two worker processes; DBOS: two
  processes each start N/2 workflows (DBOS executes a workflow where it is started). Clock
  from a shared "go" signal, given once both processes are ready, to the last completion.

Rounds alternate ductwork, DBOS (each round in fresh processes, on a fresh database), and the
figures are medians with the ratio ductwork/DBOS (> 1: ductwork faster).

    uv run --with dbos python benchmarks/bench_features.py [--runs 2000] [--rounds 3]
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
from pathlib import Path
from typing import Any

PG = "postgresql://postgres@127.0.0.1:5432"
SHM = Path("/dev/shm")  # tmpfs: the same SQLite without the disk's fsync cost
HERE = Path(__file__).resolve()
STEP_TIMES: list[float] = []


# -- the workflows ---------------------------------------------------------------------------


async def noop() -> None:
    return None


def define_ductwork() -> None:
    from ductwork.features.code import FeatureContext, feature

    @feature("bench3")
    async def bench3(ctx: FeatureContext, input: Any) -> None:
        for name in ("one", "two", "three"):
            started = time.perf_counter()
            await ctx.step(name, noop)
            STEP_TIMES.append(time.perf_counter() - started)


def define_dbos() -> Any:
    from dbos import DBOS

    @DBOS.step()
    async def one() -> None:
        return None

    @DBOS.step()
    async def two() -> None:
        return None

    @DBOS.step()
    async def three() -> None:
        return None

    @DBOS.workflow()
    async def bench3() -> None:
        for step in (one, two, three):
            started = time.perf_counter()
            await step()
            STEP_TIMES.append(time.perf_counter() - started)

    return bench3


# -- ductwork children -----------------------------------------------------------------------


def _client(url: str, folder: Path) -> Any:
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config

    return Ductwork(
        Config.from_dict(
            {
                "product": "bench",
                "environments": ["dev"],
                "engine": {"dev": {"url": url}},
            },
            root=folder,
        ),
        env="dev",
    )


async def _enqueue(dw: Any, n: int) -> None:
    from ductwork.engine.store import NewRun, now_ms
    from ductwork.features.plan import RUN_RETRY

    store = await dw.jobs.store()
    for start in range(0, n, 500):
        await store.enqueue_many(
            [
                NewRun("feature", "bench3", "bench3", "dev", {"input": {}}, now_ms(), RUN_RETRY)
                for _ in range(min(500, n - start))
            ]
        )


async def _succeeded(store: Any) -> int:
    from ductwork.engine.schema import run
    from sqlalchemy import func, select

    async with store.engine.connect() as conn:
        query = select(func.count()).select_from(run).where(run.c.status == "succeeded")
        return int((await conn.execute(query)).scalar_one())


async def dw_throughput(url: str, n: int, folder: Path) -> dict[str, Any]:
    from ductwork.engine.worker import Worker

    define_ductwork()
    async with _client(url, folder) as dw:
        await _enqueue(dw, n)
        store = await dw.jobs.store()
        worker = Worker(dw, store, concurrency=32, poll_interval=0.01, scheduler=False)
        started = time.perf_counter()
        task = asyncio.create_task(worker.run())
        while await _succeeded(store) < n:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        worker.stop()
        await task
    return {"rate": n / elapsed}


async def dw_latency(url: str, n: int, folder: Path) -> dict[str, Any]:
    define_ductwork()
    async with _client(url, folder) as dw:
        for _ in range(n):
            await dw.features.run("bench3")
    return {"steps": STEP_TIMES}


async def dw_worker(url: str, folder: Path, go: Path) -> None:
    from ductwork.engine.worker import Worker

    define_ductwork()
    async with _client(url, folder) as dw:
        store = await dw.jobs.store()
        (folder / f"ready-{os.getpid()}").write_text("")
        while not go.exists():
            await asyncio.sleep(0.005)
        worker = Worker(
            dw, store, concurrency=32, poll_interval=0.01, scheduler=False, listen_url=url
        )
        await worker.serve()


# -- DBOS children ---------------------------------------------------------------------------


def _dbos(url: str) -> Any:
    from dbos import DBOS

    workflow = define_dbos()
    DBOS(config={"name": "bench", "system_database_url": url, "log_level": "ERROR"})
    DBOS.launch()
    return workflow


async def dbos_throughput(url: str, n: int, go: Path | None) -> dict[str, Any]:
    from dbos import DBOS

    workflow = _dbos(url)
    if go is not None:
        Path(str(go) + f".ready-{os.getpid()}").write_text("")
        while not go.exists():
            await asyncio.sleep(0.005)
    started = time.perf_counter()
    for start in range(0, n, 500):
        # started concurrently (each start commits the workflow's row before it returns)
        handles = await asyncio.gather(
            *(DBOS.start_workflow_async(workflow) for _ in range(min(500, n - start)))
        )
        await asyncio.gather(*(h.get_result() for h in handles))
    elapsed = time.perf_counter() - started
    DBOS.destroy()
    return {"rate": n / elapsed, "ended": time.time()}


async def dbos_latency(url: str, n: int) -> dict[str, Any]:
    from dbos import DBOS

    workflow = _dbos(url)
    for _ in range(n):
        await workflow()
    DBOS.destroy()
    return {"steps": STEP_TIMES}


# -- the parent ------------------------------------------------------------------------------


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE), "--child", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _pg(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def pg_round(system: str, n: int, folder: Path) -> float:
    name = f"bench_features_{uuid.uuid4().hex[:8]}"
    _pg(f"CREATE DATABASE {name}")
    url = f"{PG}/{name}"
    go = folder / "go"
    try:
        if system == "ductwork":
            asyncio.run(_prepare_pg(url, n, folder))
            procs = [
                subprocess.Popen(
                    [sys.executable, str(HERE), "--child", "dw-worker", url, str(folder), str(go)]
                )
                for _ in range(2)
            ]
            while len(list(folder.glob("ready-*"))) < 2:
                time.sleep(0.01)
            go.write_text("")
            started = time.perf_counter()
            asyncio.run(_wait_pg(url, n, folder))
            elapsed = time.perf_counter() - started
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            return n / elapsed
        procs = [
            subprocess.Popen(
                [sys.executable, str(HERE), "--child", "dbos-pg", url, str(n // 2), str(go)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        while len(list(folder.glob("go.ready-*"))) < 2:
            time.sleep(0.01)
        go.write_text("")
        started_wall = time.time()
        ends = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
        return (n // 2 * 2) / (max(e["ended"] for e in ends) - started_wall)
    finally:
        for leftover in folder.glob("*"):
            leftover.unlink()
        _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_latency(mode: str, n: int, folder: str) -> list[float]:
    name = f"bench_features_{uuid.uuid4().hex[:8]}"
    _pg(f"CREATE DATABASE {name}")
    try:
        got = child(f"{mode}-latency", f"{PG}/{name}", str(n), folder)
    finally:
        _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return list(got["steps"])


async def _prepare_pg(url: str, n: int, folder: Path) -> None:
    async with _client(url, folder) as dw:
        await _enqueue(dw, n)


async def _wait_pg(url: str, n: int, folder: Path) -> None:
    async with _client(url, folder) as dw:
        store = await dw.jobs.store()
        while await _succeeded(store) < n:
            await asyncio.sleep(0.01)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--latency-runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {}
    steps: dict[str, list[float]] = {}
    for round_no in range(args.rounds):
        for system in ("ductwork", "dbos"):
            with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
                folder = Path(tmp)
                db = f"sqlite:///{folder}/{system}.db"
                mode = "dw" if system == "ductwork" else "dbos"
                got = child(f"{mode}-throughput", db, str(args.runs), tmp)
                rates.setdefault(f"sqlite {system}", []).append(got["rate"])
                for where, base in (("disk", folder), ("tmpfs", SHM)):
                    db = f"sqlite:///{base}/{system}-{uuid.uuid4().hex[:6]}-latency.db"
                    got = child(f"{mode}-latency", db, str(args.latency_runs), tmp)
                    steps.setdefault(f"{where} {system}", []).extend(got["steps"])
                    for leftover in Path(base).glob(f"{system}-*-latency.db*"):
                        leftover.unlink()
                rates.setdefault(f"postgres {system}", []).append(
                    pg_round(system, args.runs, folder)
                )
                steps.setdefault(f"postgres {system}", []).extend(
                    pg_latency(mode, args.latency_runs, tmp)
                )
        print(f"round {round_no + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()))
    print(f"\nthree-step no-op workflows, {args.runs} per round, median of {args.rounds} rounds")
    for where in ("sqlite", "postgres"):
        dw_rate = statistics.median(rates[f"{where} ductwork"])
        dbos_rate = statistics.median(rates[f"{where} dbos"])
        procs = "1 process" if where == "sqlite" else "2 processes"
        print(
            f"  {where:<8} ({procs}): ductwork {dw_rate:7.0f} runs/s   DBOS {dbos_rate:7.0f} "
            f"runs/s   ratio {dw_rate / dbos_rate:.2f}"
        )
    print("per-step overhead (one workflow at a time, the step's await):")
    for where in ("disk", "tmpfs", "postgres"):
        dw_steps, dbos_steps = steps[f"{where} ductwork"], steps[f"{where} dbos"]
        print(
            f"  {where:<8} ductwork p50 {pct(dw_steps, 0.5):.3f} ms p99 {pct(dw_steps, 0.99):.3f}"
            f" ms   DBOS p50 {pct(dbos_steps, 0.5):.3f} ms p99 {pct(dbos_steps, 0.99):.3f} ms"
            f"   ratio p50 DBOS/ductwork {pct(dbos_steps, 0.5) / pct(dw_steps, 0.5):.2f}"
        )


def run_child(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    if mode == "dw-worker":
        asyncio.run(dw_worker(url, Path(argv[2]), Path(argv[3])))
        return
    if mode == "dbos-pg":
        result = asyncio.run(dbos_throughput(url, int(argv[2]), Path(argv[3])))
    else:
        n, folder = int(argv[2]), Path(argv[3])
        result = asyncio.run(
            {
                "dw-throughput": lambda: dw_throughput(url, n, folder),
                "dw-latency": lambda: dw_latency(url, n, folder),
                "dbos-throughput": lambda: dbos_throughput(url, n, None),
                "dbos-latency": lambda: dbos_latency(url, n),
            }[mode]()
        )
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_child(sys.argv[2:])
    else:
        main()
