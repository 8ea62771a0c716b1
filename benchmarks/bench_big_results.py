"""Big results on Postgres: ``action.execute`` and ``action.stream`` vs asyncpg ``fetch``/cursor.

Run: ``uv run python benchmarks/bench_big_results.py [--rows N] [--rounds R] [--batch B]
[--url URL]``. Uses the machine's PostgreSQL (``postgresql://postgres@127.0.0.1:5432/test``
unless ``--url`` or ``DUCTWORK_BENCH_POSTGRES_URL``). Every contender reads the same N rows
(``generate_series``: an int, a text, an int) per round; rounds are interleaved and alternate
who goes first. Reported: median rows/s (wall) and client CPU seconds per round, and each
ductwork contender's ratio to its raw counterpart.

- ductwork execute: ``dw.databases.action.execute`` through the client (config, validation,
  the provider's boundary, rows as a list of dicts).
- asyncpg fetch: ``conn.fetch`` on one held connection (a list of Records, no dicts).
- ductwork stream: ``async for row in dw.databases.action.stream(…, batch_size=B)``.
- asyncpg cursor: ``cursor.fetch(B)`` in a transaction on one held connection, each Record
  touched in a loop as the stream's rows are.

Not a test: never collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import yaml
from ductwork.client import Ductwork
from ductwork.config.loader import Config

QUERY = "SELECT i AS id, 'name-' || i AS name, i * 7 AS score FROM generate_series(1, {n}) AS i"


async def _timed(op: Callable[[], Awaitable[int]], rows: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    got = await op()
    assert got == rows, (got, rows)
    return rows / (time.perf_counter() - start), time.process_time() - cpu


async def main(url: str, rows: int, rounds: int, batch: int) -> None:
    folder = Path(tempfile.mkdtemp())
    param_query = QUERY.format(n=":n")
    config = {
        "product": "bench",
        "environments": ["bench"],
        "databases": {
            "main": {
                "bench": {"provider": "postgres", "url": url},
                "actions": {"series": {"query": param_query, "input": {"n": "int"}}},
            }
        },
    }
    (folder / "ductwork.yaml").write_text(yaml.safe_dump(config))
    raw_query = QUERY.format(n="$1::int")
    held = await asyncpg.connect(url)
    async with Ductwork(Config.load(folder / "ductwork.yaml"), env="bench") as dw:

        async def execute() -> int:
            return len(await dw.databases.action.execute("main", "series", {"n": rows}))

        async def fetch() -> int:
            return len(await held.fetch(raw_query, rows))

        async def stream() -> int:
            count = 0
            async for _row in dw.databases.action.stream(
                "main", "series", {"n": rows}, batch_size=batch
            ):
                count += 1
            return count

        async def cursor() -> int:
            count = 0
            async with held.transaction():
                cur = await held.cursor(raw_query, rows)
                while records := await cur.fetch(batch):
                    for _record in records:
                        count += 1
            return count

        contenders: dict[str, Callable[[], Awaitable[int]]] = {
            "ductwork execute": execute,
            "asyncpg fetch": fetch,
            "ductwork stream": stream,
            "asyncpg cursor": cursor,
        }
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        cpus: dict[str, list[float]] = {name: [] for name in contenders}
        for r in range(rounds):
            order = list(contenders.items())
            if r % 2:
                order.reverse()
            for name, op in order:
                rate, cpu = await _timed(op, rows)
                rates[name].append(rate)
                cpus[name].append(cpu)
        print(f"postgres, {rows:,} rows x {rounds} rounds, batch {batch}")
        for name in contenders:
            each = " ".join(f"{v / 1e3:6.0f}k" for v in rates[name])
            print(
                f"  {name:17s} median {statistics.median(rates[name]) / 1e3:6.0f}k rows/s, "
                f"client CPU {statistics.median(cpus[name]):5.2f} s/round   rounds: {each}"
            )
        for ours, theirs in (
            ("ductwork execute", "asyncpg fetch"),
            ("ductwork stream", "asyncpg cursor"),
        ):
            per_round = [a / b for a, b in zip(rates[ours], rates[theirs], strict=True)]
            ratio = statistics.median(rates[ours]) / statistics.median(rates[theirs])
            cpu = statistics.median(cpus[theirs]) / statistics.median(cpus[ours])
            print(
                f"  ratio {ours}/{theirs}: {ratio:.2f} (per-round median "
                f"{statistics.median(per_round):.2f}; by client CPU {cpu:.2f})"
            )
    await held.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "DUCTWORK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.rows, args.rounds, args.batch))
