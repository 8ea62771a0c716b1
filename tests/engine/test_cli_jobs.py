"""``ductwork jobs …`` as a user runs it: full ids, real attempt counts, a dead store fails fast."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from pathlib import Path
from unittest.mock import patch

import pytest
from click.testing import CliRunner
from ductwork.cli import output
from ductwork.cli.app import cli
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine import admin
from ductwork.engine.scheduler import fire_due
from ductwork.engine.schema import schedule
from ductwork.engine.store import Store, now_ms
from ductwork.errors import AuthenticationError, ConnectionFailedError
from sqlalchemy import update

ID = re.compile(r"\b(?:run|sch)_[0-9a-f]{32}\b")


def _invoke(config: Path, *args: str, columns: int = 80, code: int = 0, terminal: bool = True):
    # CliRunner's output is no terminal; as if it were one, rich lays tables out in COLUMNS
    with patch.object(output, "is_terminal", lambda: terminal):
        result = CliRunner().invoke(
            cli,
            ["--config", str(config), "--env", "dev", *args],
            env={"COLUMNS": str(columns)},
            catch_exceptions=False,
        )
    assert result.exit_code == code, result.output
    return result


async def _dispatch_run_and_schedule(config: Path) -> tuple[str, str]:
    async with Ductwork(Config.load(config), env="dev") as dw:
        one = await dw.events.dispatch("bus", "user_created", {"id": 1}, retries=2)
        every = await dw.storage.dispatch(
            "files", "tick.txt", b"x", schedule={"cron": "* * * * *"}, retries={"max": 4}
        )
        return one.job_id, every.job_id


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_jobs_ls_prints_every_id_in_full_on_one_line(product_dir, columns):
    config = product_dir / "ductwork.yaml"
    run_id, sched_id = asyncio.run(_dispatch_run_and_schedule(config))
    out = _invoke(config, "jobs", "ls", columns=columns).output
    lines = out.splitlines()
    assert len(lines) == 3  # a header and one line per job, whatever the width
    assert [ID.findall(line) for line in lines[1:]] == [[sched_id], [run_id]]
    assert all(len(line.rstrip()) <= columns for line in lines)
    # copied from the listing, the id works in the other commands
    shown = json.loads(_invoke(config, "jobs", "show", ID.findall(lines[1])[0]).stdout)
    assert shown["job_id"] == sched_id and shown["max_attempts"] == 5
    assert "-/5" in lines[1] and "0/3" in lines[2]  # attempts: a schedule's are per run


def test_jobs_ls_wide_never_shortens_a_column(product_dir):
    config = product_dir / "ductwork.yaml"
    run_id, sched_id = asyncio.run(_dispatch_run_and_schedule(config))
    narrow = _invoke(config, "jobs", "ls", columns=80).output
    assert "…" in narrow and {run_id, sched_id} <= set(ID.findall(narrow))
    wide = _invoke(config, "jobs", "ls", "--wide", columns=80).output
    assert "…" not in wide and max(len(line) for line in wide.splitlines()) > 80
    for text in (run_id, sched_id, "events.publish", "storage.save", "bus:user_created"):
        assert text in wide


def test_jobs_ls_to_a_pipe_prints_whole_values_tab_separated(product_dir):
    config = product_dir / "ductwork.yaml"
    run_id, sched_id = asyncio.run(_dispatch_run_and_schedule(config))
    lines = _invoke(config, "jobs", "ls", columns=40, terminal=False).output.splitlines()
    assert lines[0].split("\t") == ["job", "status", "kind", "target", "when", "attempts"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [(r[0], r[2], r[3], r[5]) for r in rows] == [
        (sched_id, "storage.save", "files", "-/5"),
        (run_id, "events.publish", "bus:user_created", "0/3"),
    ]


def test_jobs_ls_on_a_new_project_creates_the_store(product_dir):
    config = product_dir / "ductwork.yaml"
    assert not (product_dir / ".ductwork" / "engine.db").exists()
    assert json.loads(_invoke(config, "--json", "jobs", "ls").stdout) == []
    assert (product_dir / ".ductwork" / "engine.db").exists()


async def test_a_schedule_reports_the_attempts_its_runs_get(dw):
    job = await dw.storage.dispatch(
        "files", "t.txt", b"x", schedule={"cron": "* * * * *"}, retries={"max": 4}
    )
    assert job.max_attempts == 5
    assert (await dw.jobs.get(job.job_id)).max_attempts == 5
    store = await dw.jobs.store()
    async with store.tx() as conn:  # its first slot is due now
        await conn.execute(update(schedule).values(next_fire_at=now_ms() - 1))
    assert await fire_due(store) == 1
    fired = await admin.list_jobs(store, schedule_id=job.job_id)
    assert [j.max_attempts for j in fired] == [5]
    default = await dw.storage.dispatch("files", "u.txt", b"x", schedule={"every": "1h"})
    assert default.max_attempts == 4  # 3 retries unless told otherwise


def _dead_port() -> int:
    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jobs_commands_fail_fast_on_an_unreachable_store(product_dir, monkeypatch):
    import asyncpg  # noqa: F401 - imported now, so the timing below is the commands' own

    port = _dead_port()
    config = product_dir / "ductwork.yaml"
    config.write_text(config.read_text() + "\nengine:\n  dev: {url: '${env:ENGINE_URL}'}\n")
    monkeypatch.setenv("ENGINE_URL", f"postgresql://jobs:hunter22@127.0.0.1:{port}/jobs")
    for args in (["jobs", "ls"], ["jobs", "show", "run_x"], ["jobs", "cancel", "run_x"]):
        started = time.monotonic()
        result = _invoke(config, *args, code=1)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"{args} took {elapsed:.1f}s"  # a worker would wait 10 s
        error = " ".join(result.stderr.split())  # rich may wrap the line
        assert error.startswith("error: ConnectionFailedError: cannot reach the jobs")
        assert f"postgresql://jobs:***@127.0.0.1:{port}/jobs" in error
        assert "(1 attempt in " in error and "ConnectionRefusedError" in error
        assert "hunter22" not in result.output


async def test_store_open_waits_then_names_the_url_without_its_password():
    url = f"postgresql://jobs:hunter22@127.0.0.1:{_dead_port()}/nothing"
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError) as caught:
        await Store.open(url, wait=0.5)
    assert 0.3 <= time.monotonic() - started < 5  # it kept trying for about `wait` seconds
    message = str(caught.value)
    assert "hunter22" not in message and "postgresql://jobs:***@127.0.0.1:" in message
    assert re.search(r"\(\d+ attempts in \d+\.\ds\)", message), message
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_missing_database_is_named_by_the_driver(pg_url):
    url = pg_url.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(ConnectionFailedError, match="InvalidCatalogNameError: database"):
        await Store.open(url, wait=0)


async def test_a_refused_login_fails_at_once_naming_the_url_without_its_password(pg_url):
    # Trust auth on this machine accepts any password, but not a role that does not exist:
    # SQLSTATE 28000, the same class a wrong password gets.
    url = pg_url.replace("postgresql://postgres@", "postgresql://no_such_role:hunter22@")
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as caught:
        await Store.open(url, wait=30)
    assert time.monotonic() - started < 10  # not the 30 s of waiting an outage gets
    message = str(caught.value)
    assert "no_such_role:***@" in message and "hunter22" not in message
    assert "(1 attempt in " in message


async def _burst_backlog(config: Path) -> tuple[list[str], str, str]:
    async with Ductwork(Config.load(config), env="dev") as dw:
        due = [(await dw.storage.dispatch("files", f"b{i}.txt", b"x")).job_id for i in range(3)]
        later = await dw.storage.dispatch(
            "files", "later.txt", b"x", schedule={"start_at": now_ms() + 3_600_000}
        )
        every = await dw.storage.dispatch("files", "tick.txt", b"x", schedule={"every": "1h"})
        store = await dw.jobs.store()
        async with store.tx() as conn:  # the schedule's first slot becomes due while it runs
            await conn.execute(update(schedule).values(next_fire_at=now_ms() - 1))
        return due, later.job_id, every.job_id


async def _statuses(config: Path, *ids: str) -> list[str]:
    async with Ductwork(Config.load(config), env="dev") as dw:
        return [(await dw.jobs.get(i)).status for i in ids]


def test_worker_burst_runs_what_is_due_then_exits(product_dir):
    config = product_dir / "ductwork.yaml"
    due, later, every = asyncio.run(_burst_backlog(config))
    out = _invoke(config, "worker", "--burst").output
    assert "stopped after 4 run(s)" in out  # three dispatched, one schedule slot fired
    assert (
        asyncio.run(_statuses(config, *due, later, every)) == ["succeeded"] * 3 + ["scheduled"] * 2
    )
    assert sorted(p.name for p in (product_dir / ".ductwork" / "files").glob("*.txt")) == [
        "b0.txt",
        "b1.txt",
        "b2.txt",
        "tick.txt",
    ]
    assert "stopped after 0 run(s)" in _invoke(config, "worker", "--burst").output
