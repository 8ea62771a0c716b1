"""Migrations on the embedded SQLite database: run, roll back, status, tampering, concurrency.

The same behaviour on PostgreSQL and MariaDB is tested in plugins/sql.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys

import pytest
import yaml
from ductwork import ConfigError, NotFoundError, ProviderError
from ductwork.client import Ductwork
from ductwork.config.loader import Config

MIGRATIONS = [
    {
        "tag": "create_people",
        "up": ["CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(50))"],
        "down": ["DROP TABLE people"],
    },
    {
        "tag": "add_email",
        "up": ["ALTER TABLE people ADD COLUMN email VARCHAR(100)"],
        "down": ["ALTER TABLE people DROP COLUMN email"],
    },
    {
        "tag": "seed",
        "up": ["INSERT INTO people (id, name) VALUES (1, 'ada')"],
        "down": ["DELETE FROM people WHERE id = 1"],
    },
]


def write(product_dir, migrations):
    data = yaml.safe_load((product_dir / "ductwork.yaml").read_text())
    data["databases"]["main"]["migrations"] = migrations
    (product_dir / "ductwork.yaml").write_text(yaml.safe_dump(data))
    return product_dir / "ductwork.yaml"


async def tables(dw):
    rows = (
        await dw.databases.execute(
            "main", "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'people'"
        )
    ).rows
    return [r["name"] for r in rows]


async def test_run_rollback_and_status(product_dir):
    config = write(product_dir, MIGRATIONS)
    async with Ductwork(Config.load(config), env="dev") as dw:
        assert [s.applied for s in await dw.databases.migration.status("main")] == [False] * 3
        assert await dw.databases.migration.run("main", to="add_email") == [
            "create_people",
            "add_email",
        ]
        assert await dw.databases.migration.run("main") == ["seed"]
        assert await dw.databases.migration.run("main") == []
        status = await dw.databases.migration.status("main")
        assert all(s.applied and s.applied_at and not s.changed for s in status)
        assert await dw.databases.migration.rollback("main") == ["seed"]
        assert (
            await dw.databases.execute("main", "SELECT COUNT(*) AS n FROM people")
        ).scalar() == 0
        assert await dw.databases.migration.rollback("main", to="create_people") == ["add_email"]
        assert await dw.databases.migration.rollback("main") == ["create_people"]
        assert await tables(dw) == []
        with pytest.raises(NotFoundError):
            await dw.databases.migration.run("main", to="nope")


async def test_a_changed_applied_migration_is_refused_naming_it(product_dir):
    config = write(product_dir, MIGRATIONS)
    async with Ductwork(Config.load(config), env="dev") as dw:
        await dw.databases.migration.run("main")
    tampered = copy.deepcopy(MIGRATIONS)
    tampered[1]["up"] = ["ALTER TABLE people ADD COLUMN phone VARCHAR(20)"]
    tampered.append({"tag": "later", "up": ["CREATE TABLE later (id INTEGER)"]})
    config = write(product_dir, tampered)
    async with Ductwork(Config.load(config), env="dev") as dw:
        with pytest.raises(ConfigError, match="'add_email' has changed"):
            await dw.databases.migration.run("main")
        assert [s.changed for s in await dw.databases.migration.status("main")] == [
            False,
            True,
            False,
            False,
        ]
        later = await dw.databases.execute(
            "main", "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'later'"
        )
        assert later.scalar() == 0


async def test_a_failing_migration_leaves_the_database_as_it_was(product_dir):
    broken = [
        *MIGRATIONS[:1],
        {
            "tag": "broken",
            "up": ["CREATE TABLE half (id INTEGER)", "INSERT INTO nowhere VALUES (1)"],
        },
    ]
    config = write(product_dir, broken)
    async with Ductwork(Config.load(config), env="dev") as dw:
        with pytest.raises(ProviderError, match=r"cannot apply migration 'broken'.*as it was"):
            await dw.databases.migration.run("main")
        status = await dw.databases.migration.status("main")
        assert [s.applied for s in status] == [True, False]
        half = await dw.databases.execute(
            "main", "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'half'"
        )
        assert half.scalar() == 0


async def test_migrations_from_a_folder(product_dir):
    folder = product_dir / "migrations"
    folder.mkdir()
    (folder / "001_people.up.sql").write_text(
        "CREATE TABLE people (id INTEGER PRIMARY KEY);\nCREATE INDEX people_id ON people (id);\n"
    )
    (folder / "001_people.down.sql").write_text("DROP TABLE people;\n")
    (folder / "002_seed.up.sql").write_text("INSERT INTO people (id) VALUES (1);\n")
    config = write(product_dir, "migrations")
    async with Ductwork(Config.load(config), env="dev") as dw:
        assert await dw.databases.migration.run("main") == ["people", "seed"]
        defs = dw.databases.migration.definitions("main")
        assert defs[0].up == [
            "CREATE TABLE people (id INTEGER PRIMARY KEY)",
            "CREATE INDEX people_id ON people (id)",
        ]


async def test_two_concurrent_migrate_commands_apply_each_migration_once(product_dir):
    slow = [
        {"tag": f"m{i}", "up": [f"CREATE TABLE t{i} (id INTEGER)"], "down": [f"DROP TABLE t{i}"]}
        for i in range(8)
    ]
    config = write(product_dir, slow)
    command = [
        sys.executable,
        "-m",
        "ductwork",
        "--config",
        str(config),
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
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    applied = [json.loads(out)["applied"] for out, _ in outputs]
    assert sorted(applied[0] + applied[1]) == sorted(m["tag"] for m in slow)
    async with Ductwork(Config.load(config), env="dev") as dw:
        rows = (await dw.databases.execute("main", "SELECT tag FROM ductwork_migrations")).rows
        assert sorted(r["tag"] for r in rows) == sorted(m["tag"] for m in slow)
