"""Migrations and database actions through ``Ductwork`` on PostgreSQL and MariaDB.

Each test gets a database of its own, created and dropped here.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import yaml
from ductwork import ConfigError, ProviderError
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MIGRATIONS = [
    {
        "tag": "people",
        "up": ["CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(200))"],
        "down": ["DROP TABLE people"],
    },
    {
        "tag": "email",
        "up": ["ALTER TABLE people ADD COLUMN email VARCHAR(200)"],
        "down": ["ALTER TABLE people DROP COLUMN email"],
    },
]
ACTIONS = {
    "add": {
        "query": "INSERT INTO people (id, name) VALUES (:id, :name)",
        "input": {"id": "int", "name": "str"},
        "result": "count",
    },
    "get": {
        "query": "SELECT id, name FROM people WHERE id = :id",
        "input": {"id": "int"},
        "result": "one",
    },
}


def product(tmp_path: Path, provider: str, url: str, migrations=MIGRATIONS) -> Path:
    data = {
        "product": "p",
        "environments": ["test"],
        "databases": {
            "main": {
                "test": {"provider": provider, "url": url},
                "migrations": migrations,
                "actions": ACTIONS,
            }
        },
    }
    file = tmp_path / "ductwork.yaml"
    file.write_text(yaml.safe_dump(data))
    return file


async def test_migrations_run_roll_back_and_report(tmp_path, database_url):
    provider, url = database_url
    async with Ductwork(Config.load(product(tmp_path, provider, url)), env="test") as dw:
        assert await dw.databases.migration.run("main") == ["people", "email"]
        assert all(s.applied for s in await dw.databases.migration.status("main"))
        await dw.databases.execute(
            "main", "INSERT INTO people (id, name, email) VALUES (1, 'a', 'e')"
        )
        assert await dw.databases.migration.rollback("main") == ["email"]
        assert [s.applied for s in await dw.databases.migration.status("main")] == [True, False]
        assert await dw.databases.migration.run("main") == ["email"]
        assert await dw.databases.migration.rollback("main", to="people") == ["email"]


async def test_a_tampered_migration_is_refused(tmp_path, database_url):
    provider, url = database_url
    async with Ductwork(Config.load(product(tmp_path, provider, url)), env="test") as dw:
        await dw.databases.migration.run("main")
    tampered = [MIGRATIONS[0], {**MIGRATIONS[1], "up": ["ALTER TABLE people ADD COLUMN x INTEGER"]}]
    async with Ductwork(Config.load(product(tmp_path, provider, url, tampered)), env="test") as dw:
        with pytest.raises(ConfigError, match="'email' has changed"):
            await dw.databases.migration.run("main")


async def test_a_failing_migration_is_reported_and_not_recorded(tmp_path, database_url):
    provider, url = database_url
    broken = [
        MIGRATIONS[0],
        {
            "tag": "broken",
            "up": ["CREATE TABLE half (id INTEGER)", "INSERT INTO nowhere VALUES (1)"],
        },
    ]
    async with Ductwork(Config.load(product(tmp_path, provider, url, broken)), env="test") as dw:
        with pytest.raises(ProviderError, match="cannot apply migration 'broken'") as info:
            await dw.databases.migration.run("main")
        assert [s.applied for s in await dw.databases.migration.status("main")] == [True, False]
        half = await dw.databases.execute(
            "main", "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name = 'half'"
        )
        if provider == "postgres":  # transactional DDL: as it was
            assert "as it was" in str(info.value)
            assert half.scalar() == 0
        else:  # MariaDB committed the CREATE; the error says so
            assert "may remain" in str(info.value)


async def test_two_concurrent_migrate_commands_apply_each_once(tmp_path, database_url):
    provider, url = database_url
    many = [
        {"tag": f"m{i}", "up": [f"CREATE TABLE t{i} (id INTEGER)"], "down": [f"DROP TABLE t{i}"]}
        for i in range(6)
    ]
    config = product(tmp_path, provider, url, many)
    command = [
        sys.executable,
        "-m",
        "ductwork",
        "--config",
        str(config),
        "--env",
        "test",
        "--json",
        "db",
        "migrate",
        "main",
    ]
    procs = [
        await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    applied = sorted(tag for out, _ in outputs for tag in json.loads(out)["applied"])
    assert applied == sorted(m["tag"] for m in many)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # rows are cleared per example
@given(name=st.text(max_size=60).filter(lambda s: "\x00" not in s))
async def test_actions_bind_hostile_input(tmp_path, database_url, name):
    provider, url = database_url
    async with Ductwork(Config.load(product(tmp_path, provider, url)), env="test") as dw:
        await dw.databases.migration.run("main")
        await dw.databases.execute("main", "DELETE FROM people")
        assert await dw.databases.action.execute("main", "add", {"id": 1, "name": name}) == 1
        row = await dw.databases.action.execute("main", "get", {"id": 1})
        assert row == {"id": 1, "name": name}
        assert (
            await dw.databases.execute("main", "SELECT COUNT(*) AS n FROM people")
        ).scalar() == 1
