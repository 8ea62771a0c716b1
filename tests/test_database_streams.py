"""Streams and max_rows on the builtin sqlite database, through the client and the CLI."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ductwork import ConfigError, TooManyRowsError, ValidationError
from ductwork.client import Ductwork
from ductwork.config.loader import Config

SERIES = (
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
    "SELECT i AS id, 'name-' || i AS name, i * 7 AS score FROM s"
)
ACTIONS = {
    "series": {"query": SERIES, "input": {"n": "int"}},
    "capped": {"query": SERIES, "input": {"n": "int"}, "max_rows": 100},
}


def product(tmp_path: Path, actions: dict[str, object] = ACTIONS) -> Path:
    data = {
        "product": "p",
        "environments": ["dev"],
        "databases": {
            "main": {"dev": {"provider": "sqlite", "path": "main.db"}, "actions": actions}
        },
    }
    file = tmp_path / "ductwork.yaml"
    file.write_text(yaml.safe_dump(data))
    return file


async def test_action_stream_yields_every_row_and_max_rows_refuses_more(tmp_path):
    async with Ductwork(Config.load(product(tmp_path)), env="dev") as dw:
        ids = [r["id"] async for r in dw.databases.action.stream("main", "series", {"n": 2500})]
        assert ids == list(range(1, 2501))
        assert len(await dw.databases.action.execute("main", "capped", {"n": 100})) == 100
        with pytest.raises(TooManyRowsError, match=r"'main' action 'capped'.*max_rows=100"):
            await dw.databases.action.execute("main", "capped", {"n": 10**6})
        seen = []
        with pytest.raises(TooManyRowsError) as info:
            async for row in dw.databases.action.stream("main", "capped", {"n": 101}):
                seen.append(row["id"])
        assert info.value.limit == 100
        assert seen == list(range(1, 101))
        async with dw.databases.transaction("main") as tx:
            await tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            await tx.execute("INSERT INTO t (id) VALUES (1), (2), (3)")
            assert [r["id"] async for r in tx.stream("SELECT id FROM t ORDER BY id")] == [1, 2, 3]
            with pytest.raises(TooManyRowsError):
                await tx.action("capped", {"n": 200})
            rows = [r async for r in tx.stream_action("series", {"n": 5}, batch_size=2)]
            assert [r["score"] for r in rows] == [7, 14, 21, 28, 35]
        raw = [r async for r in dw.databases.stream("main", "SELECT id FROM t", batch_size=1)]
        assert raw == [{"id": 1}, {"id": 2}, {"id": 3}]


async def test_stream_refuses_bad_input_and_batch_size_at_the_call(tmp_path):
    async with Ductwork(Config.load(product(tmp_path)), env="dev") as dw:
        with pytest.raises(ValidationError, match="invalid input"):
            dw.databases.action.stream("main", "series", {"n": "many"})
        with pytest.raises(ValidationError, match="batch_size"):
            dw.databases.action.stream("main", "series", {"n": 3}, batch_size=0)


def test_max_rows_only_with_result_rows(tmp_path):
    bad = {"one": {"query": "SELECT 1 AS x", "result": "one", "max_rows": 5}}
    with pytest.raises(ConfigError, match="max_rows applies to result: rows"):
        Config.load(product(tmp_path, bad))


def _cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ductwork", *args, "--config", str(config), "--env", "dev"]


async def test_cli_writes_json_lines_piped_and_stops_quietly_when_the_reader_does(tmp_path):
    config = product(tmp_path)
    command = _cli(
        config, "db", "action", "main", "series", "-i", '{"n": 3000}', "--format", "jsonl"
    )
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [{"id": i, "name": f"name-{i}", "score": 7 * i} for i in range(1, 3001)]

    script = f"set -o pipefail; {shlex.join(command)} | head -2"
    head = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(head.communicate(), 60)
    assert head.returncode == 0, err.decode()
    assert [json.loads(line)["id"] for line in out.splitlines()] == [1, 2]
    assert err == b""

    sql = _cli(config, "db", "exec", "main", "SELECT 1 AS a, 'x' AS b", "--format", "jsonl")
    done = await asyncio.create_subprocess_exec(*sql, stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(done.communicate(), 60)
    assert json.loads(out) == {"a": 1, "b": "x"}
