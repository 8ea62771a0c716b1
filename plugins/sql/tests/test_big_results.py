"""Big results on PostgreSQL and MariaDB: streamed in bounded memory, refused past max_rows.

Each test gets a database of its own (``database_url`` in conftest). The 2M-row tests run the
stream in a child process and read its peak RSS (``VmHWM``): the rows never sit in memory
together, so the child stays far below what the list of 2M dicts takes (~860 MB).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from ductwork import TooManyRowsError
from ductwork.client import Ductwork
from ductwork.config.loader import Config

BIG = 2_000_000
MAX_RSS_MB = 150
# Rows id 1..n with a name and a score: generate_series on Postgres; on MySQL/MariaDB a table
# seeded by ``seed`` (a CTE of that size would be materialised for every query).
SERIES = {
    "postgres": "SELECT i AS id, 'name-' || i AS name, i * 7 AS score "
    "FROM generate_series(1, :n) AS i",
    "mysql": "SELECT i AS id, CONCAT('name-', i) AS name, i * 7 AS score FROM nums WHERE i <= :n",
}
DIGITS = " UNION ALL ".join(f"SELECT {d} AS n" for d in range(10))


async def seed(dw: Ductwork, provider: str, n: int) -> None:
    """On MySQL/MariaDB, the table ``nums`` of 1..n (a cross join of digits, server-side)."""
    if provider != "mysql":
        return
    places = len(str(n - 1)) if n > 1 else 1
    joins = " CROSS JOIN ".join(f"({DIGITS}) AS d{k}" for k in range(places))
    value = " + ".join(f"{10**k} * d{k}.n" for k in range(places))
    await dw.databases.execute("main", "CREATE TABLE nums (i INTEGER PRIMARY KEY)")
    await dw.databases.execute(
        "main", f"INSERT INTO nums (i) SELECT 1 + {value} FROM {joins} WHERE {value} < :n", {"n": n}
    )


def product(tmp_path: Path, provider: str, url: str) -> Path:
    data = {
        "product": "p",
        "environments": ["test"],
        "databases": {
            "main": {
                "test": {"provider": provider, "url": url},
                "actions": {
                    "series": {"query": SERIES[provider], "input": {"n": "int"}},
                    "capped": {
                        "query": SERIES[provider],
                        "input": {"n": "int"},
                        "max_rows": 1000,
                    },
                },
            }
        },
    }
    file = tmp_path / "ductwork.yaml"
    file.write_text(yaml.safe_dump(data))
    return file


def expected_sum(n: int) -> int:
    """The checksum of rows 1..n: the sum of id + score (= 8 * id) over them."""
    return 8 * n * (n + 1) // 2


async def test_max_rows_refuses_a_larger_result_naming_database_action_and_limit(
    tmp_path, database_url
):
    provider, url = database_url
    async with Ductwork(Config.load(product(tmp_path, provider, url)), env="test") as dw:
        await seed(dw, provider, 5000)
        rows = await dw.databases.action.execute("main", "capped", {"n": 1000})
        assert sorted(r["id"] for r in rows) == list(range(1, 1001))
        # Far larger than the limit: refused after reading max_rows + 1 rows, not all of them.
        with pytest.raises(TooManyRowsError) as info:
            await dw.databases.action.execute("main", "capped", {"n": 5000})
        assert "database 'main' action 'capped'" in str(info.value)
        assert "max_rows=1000" in str(info.value)
        assert info.value.limit == 1000
        assert info.value.resource == "databases.main"
        async with dw.databases.transaction("main") as tx:
            with pytest.raises(TooManyRowsError):
                await tx.action("capped", {"n": 1001})
            assert len(await tx.action("capped", {"n": 3})) == 3
        streamed = []
        with pytest.raises(TooManyRowsError):
            async for row in dw.databases.action.stream("main", "capped", {"n": 5000}):
                streamed.append(row["id"])
        assert len(set(streamed)) == 1000  # every row up to the limit, then the error
        assert await dw.databases.execute("main", "SELECT 1 AS one") is not None


async def test_stream_inside_a_transaction_and_leaving_early(tmp_path, database_url):
    provider, url = database_url
    async with Ductwork(Config.load(product(tmp_path, provider, url)), env="test") as dw:
        await seed(dw, provider, 10**5)
        await dw.databases.execute("main", "CREATE TABLE seen (id INTEGER PRIMARY KEY)")
        async with dw.databases.transaction("main") as tx:
            total = 0
            async for row in tx.stream_action("series", {"n": 5000}, batch_size=700):
                total += row["id"]
            assert total == 5000 * 5001 // 2
            async for row in tx.stream_action("series", {"n": 5000}, batch_size=100):
                if row["id"] == 50:
                    break  # the rest is not read; the transaction goes on
            await tx.execute("INSERT INTO seen (id) VALUES (1)")
            ids = [r["id"] async for r in tx.stream("SELECT id FROM seen")]
            assert ids == [1]
        # Leaving lone streams early, more often than the pool has connections, then a call.
        for _ in range(20):
            async for _row in dw.databases.action.stream("main", "series", {"n": 10**5}):
                break
        assert [r["id"] async for r in dw.databases.stream("main", "SELECT id FROM seen")] == [1]


async def test_a_cancelled_stream_gives_its_connection_back(tmp_path, database_url):
    provider, url = database_url
    config = product(tmp_path, provider, url)
    # A pool of one: the next call can only run if the cancelled stream let its connection go.
    data = yaml.safe_load(config.read_text())
    data["databases"]["main"]["test"].update(pool_size=1, max_overflow=0, pool_timeout=10)
    config.write_text(yaml.safe_dump(data))
    async with Ductwork(Config.load(config), env="test") as dw:
        await seed(dw, provider, 10**5)
        reading = asyncio.Event()

        async def read() -> None:
            async for _row in dw.databases.action.stream(
                "main", "series", {"n": 10**5}, batch_size=100
            ):
                reading.set()
                await asyncio.Event().wait()  # held open until cancelled

        task = asyncio.create_task(read())
        await asyncio.wait_for(reading.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rows = await dw.databases.action.execute("main", "series", {"n": 3})
        assert sorted(rows, key=lambda r: r["id"]) == [
            {"id": i, "name": f"name-{i}", "score": 7 * i} for i in (1, 2, 3)
        ]


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config

    async def main(path, n):
        async with Ductwork(Config.load(path), env="test") as dw:
            rows = total = 0
            async for row in dw.databases.action.stream(
                "main", "series", {"n": n}, batch_size=5000
            ):
                rows += 1
                total += row["id"] + row["score"]
        # VmHWM: this process's own peak (ru_maxrss keeps the parent's across exec)
        with open("/proc/self/status") as status:
            peak = int(status.read().split("VmHWM:")[1].split()[0])  # KiB
        print(json.dumps({"rows": rows, "sum": total, "peak_kib": peak}))

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_two_million_rows_stream_in_bounded_memory(tmp_path, database_url):
    provider, url = database_url
    config = product(tmp_path, provider, url)
    async with Ductwork(Config.load(config), env="test") as dw:
        await seed(dw, provider, BIG)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(config),
        str(BIG),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 280)
    assert proc.returncode == 0, err.decode()
    got = json.loads(out)
    assert got["rows"] == BIG
    assert got["sum"] == expected_sum(BIG)
    assert got["peak_kib"] < MAX_RSS_MB * 1024, f"peak RSS {got['peak_kib'] // 1024} MiB"


async def test_cli_streams_json_lines_through_a_pipe(tmp_path, database_url):
    provider, url = database_url
    config = product(tmp_path, provider, url)
    n = 20_000
    async with Ductwork(Config.load(config), env="test") as dw:
        await seed(dw, provider, n)
    command = [
        sys.executable,
        "-m",
        "ductwork",
        "db",
        "action",
        "main",
        "series",
        "--input",
        json.dumps({"n": n}),
        "--format",
        "jsonl",
        "--batch-size",
        "500",
        "--config",
        str(config),
        "--env",
        "test",
    ]
    env = dict(os.environ)
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    count = total = 0
    assert proc.stdout is not None
    async for line in proc.stdout:
        row = json.loads(line)
        count += 1
        total += row["id"] + row["score"]
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert (count, total) == (n, expected_sum(n))

    # A reader that stops early (``| head -1``): the command ends quietly, exit status 0.
    script = f"set -o pipefail; {shlex.join(command)} | head -1"
    head = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(head.communicate(), 120)
    assert head.returncode == 0, err.decode()
    first = json.loads(out)
    assert first == {"id": first["id"], "name": f"name-{first['id']}", "score": 7 * first["id"]}
    assert b"Traceback" not in err
