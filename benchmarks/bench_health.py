"""Health reads: ``dw.health.healthy(tag)`` as a quota asks it on every call.

Three calls, alternating rounds, medians reported:

- ``healthy`` served from the client's cache (``max_age`` 1 s: the normal case);
- ``healthy`` reading the store each time (``max_age = 0``);
- the anchor: one SQLAlchemy Core ``SELECT`` of the check's row on a held connection of the
  same store — the least a read of shared state can cost.

SQLite store in a temporary folder; with ``--pg URL`` a Postgres database too (its tables are
created there).

    uv run python benchmarks/bench_health.py [--n 2000] [--rounds 5] [--pg postgresql://…/db]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine.schema import health
from ductwork.health.monitor import install, record
from ductwork.health.probes import ProbeResult
from sqlalchemy import select


def product(root: Path, url: str) -> Config:
    return Config.from_dict(
        {
            "product": "bench",
            "environments": ["dev"],
            "engine": {"dev": {"url": url}},
            "storage": {"files": {"dev": {"provider": "local", "path": str(root / "files")}}},
            "healthchecks": {"files": {"probe": {"storage": "files"}}},
        },
        root=root,
    )


async def rate(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await fn()
    return n / (time.perf_counter() - started)


async def bench(url: str, root: Path, n: int, rounds: int) -> None:
    async with Ductwork(product(root, url)) as dw:
        await install(dw)
        store = await dw.jobs.store()
        defn = dw.config.product.healthchecks["files"]
        await record(store, "dev", "files", defn, ProbeResult(True, 0.001), slot=1)
        uncached = Ductwork(dw.config)
        uncached.health.max_age = 0
        uncached.jobs._stores["dev"] = store  # the same store and pool
        query = select(health).where(health.c.env == "dev", health.c.tag == "files")

        async with store.engine.connect() as conn:

            async def raw() -> Any:
                return (await conn.execute(query)).first()

            states = {"files": "healthy"}

            async def lookup() -> bool:  # the floor: a dictionary lookup in a coroutine
                return states.get("files") != "unhealthy"

            calls = {
                "coroutine + dict lookup (floor)": lookup,
                "healthy, cached": lambda: dw.health.healthy("files"),
                "healthy, store each call": lambda: uncached.health.healthy("files"),
                "raw SELECT (held connection)": raw,
            }
            results: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(rounds):
                for name, fn in calls.items():
                    results[name].append(await rate(fn, n))
        anchor = statistics.median(results["raw SELECT (held connection)"])
        print(f"\n{store.dialect} ({n} calls x {rounds} rounds, medians)")
        for name, rates in results.items():
            median = statistics.median(rates)
            print(f"  {name:32} {median:>12,.0f}/s  {median / anchor:8.2f}x raw")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg", default=None, help="a Postgres database URL to measure too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        asyncio.run(bench(f"sqlite:///{root}/engine.db", root, args.n, args.rounds))
        if args.pg:
            asyncio.run(bench(args.pg, root, args.n, args.rounds))


if __name__ == "__main__":
    main()
