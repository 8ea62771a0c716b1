"""Retention: finished runs pruned by age in bounded batches, references kept, crash-safe."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ductwork.engine.retention import prune, prune_round
from ductwork.engine.schema import run, run_event, step
from ductwork.engine.spec import RetryPolicy
from ductwork.engine.store import NewRun, Store, now_ms
from ductwork.engine.worker import Worker
from sqlalchemy import event, func, select, update

from .conftest import HERE, eventually

DAY = 86_400_000
AGES: dict[str, float | None] = {"succeeded": 7 * 86400.0, "failed": 30 * 86400.0}


def _new() -> NewRun:
    return NewRun("noop", "t", "t", "dev", {}, now_ms(), RetryPolicy())


async def make(
    store: Store, n: int, status: str, age_days: float, *, steps: bool = True, **values: Any
) -> list[str]:
    """n runs of ``status`` finished ``age_days`` ago, each with 2 events and (maybe) 2 steps."""
    ids = await store.enqueue_many([_new() for _ in range(n)])
    finished = None if status in ("queued", "running", "waiting", "paused") else now_ms()
    async with store.tx() as conn:
        await conn.execute(
            update(run)
            .where(run.c.id.in_(ids))
            .values(
                status=status,
                finished_at=None if finished is None else finished - int(age_days * DAY),
                **values,
            )
        )
        await conn.execute(
            run_event.insert(),
            [
                {"run_id": i, "at": 1, "event": e, "attempt": 1}
                for i in ids
                for e in ("started", status)
            ],
        )
        if steps:
            await conn.execute(
                step.insert(),
                [{"run_id": i, "step_key": k, "status": "succeeded"} for i in ids for k in "ab"],
            )
    return ids


async def rows(store: Store) -> dict[str, tuple[int, int]]:
    """Every run id -> (its events, its steps)."""
    async with store.engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(select(run.c.id))]
        events = dict(
            (await conn.execute(select(run_event.c.run_id, func.count()).group_by("run_id"))).all()
        )
        steps = dict(
            (await conn.execute(select(step.c.run_id, func.count()).group_by("run_id"))).all()
        )
    assert set(events) <= set(ids), "events left behind by a pruned run"
    assert set(steps) <= set(ids), "steps left behind by a pruned run"
    return {i: (events.get(i, 0), steps.get(i, 0)) for i in ids}


async def test_prunes_by_age_per_status_with_events_and_steps(store):
    old_ok = await make(store, 5, "succeeded", 10)
    new_ok = await make(store, 3, "succeeded", 1)
    old_failed = await make(store, 2, "failed", 10)  # failed: kept 30 days
    very_old_failed = await make(store, 2, "failed", 40)
    cancelled = await make(store, 2, "cancelled", 400)  # not in AGES: kept for ever
    live = await make(store, 1, "queued", 0) + await make(store, 1, "waiting", 0)
    live += await make(store, 1, "running", 0) + await make(store, 1, "paused", 0)

    assert await prune(store, AGES, dry_run=True) == {"succeeded": 5, "failed": 2}
    assert len(await rows(store)) == 18  # a dry run removes nothing
    assert await prune(store, AGES) == {"succeeded": 5, "failed": 2}
    left = await rows(store)
    assert set(left) == {*new_ok, *old_failed, *cancelled, *live}
    assert all(left[i] == (2, 2) for i in left)  # the kept keep their timeline and steps
    assert not set(left) & {*old_ok, *very_old_failed}
    assert await prune(store, AGES) == {"succeeded": 0, "failed": 0}


async def test_runs_something_references_are_kept(store):
    # a schedule's slots: the newest is its current run, the older ones go
    slots = [
        (await make(store, 1, "succeeded", 10, schedule_id="sch_x", scheduled_for=s))[0]
        for s in (1000, 2000, 3000)
    ]
    # a feature run's parent with a live child stays; with a finished child it goes
    parent = (await make(store, 1, "succeeded", 10))[0]
    child = (await make(store, 1, "waiting", 0, parent_run_id=parent))[0]
    done_parent = (await make(store, 1, "succeeded", 10))[0]
    done_child = (await make(store, 1, "succeeded", 1, parent_run_id=done_parent))[0]
    # a run a replay copies from, while the replay has not finished
    replayed = (await make(store, 1, "failed", 40))[0]
    replay = (await make(store, 1, "queued", 0, forked_from=replayed))[0]

    assert sum((await prune(store, AGES)).values()) == 3
    left = await rows(store)
    assert set(left) == {slots[2], parent, child, done_child, replayed, replay}
    # once the child and the replay have finished (and aged), nothing holds the others
    async with store.tx() as conn:
        await conn.execute(
            update(run)
            .where(run.c.id.in_([child, replay]))
            .values(status="succeeded", finished_at=1)
        )
    assert await prune(store, AGES) == {"succeeded": 3, "failed": 1}
    assert set(await rows(store)) == {slots[2], done_child}


async def test_batches_are_bounded_each_its_own_transaction(store):
    await make(store, 23, "succeeded", 10)
    kept = await make(store, 2, "succeeded", 1)
    deleted: list[int] = []
    commits: list[int] = []

    def after(conn, cursor, statement, params, context, executemany):
        if statement.startswith("DELETE FROM ductwork_run "):
            deleted.append(cursor.rowcount)

    sync = store.engine.sync_engine
    event.listen(sync, "after_cursor_execute", after)
    event.listen(sync, "commit", lambda conn: commits.append(1))
    try:
        assert await prune(store, {"succeeded": 7 * 86400.0}, batch=5) == {"succeeded": 23}
    finally:
        event.remove(sync, "after_cursor_execute", after)
    assert deleted == [5, 5, 5, 5, 3]
    assert len(commits) == 5  # one transaction per batch
    assert set(await rows(store)) == set(kept)


async def test_two_pruners_never_prune_the_same_rows(store, url):
    old = await make(store, 60, "succeeded", 10, steps=False)
    kept = await make(store, 3, "succeeded", 1, steps=False)
    other = await Store.open(url)
    try:
        ages = {"succeeded": 7 * 86400.0}
        first, second = await asyncio.gather(
            prune(store, ages, batch=7), prune(other, ages, batch=7)
        )
        assert first["succeeded"] + second["succeeded"] == len(old)
        more = await make(store, 40, "succeeded", 10, steps=False)
        # the workers' rounds: whoever finds the lock taken leaves the round to the other
        done = await asyncio.gather(
            prune_round(store, ages, 6), prune_round(other, ages, 6), prune_round(store, ages, 6)
        )
        assert sum(done) == len(more)
    finally:
        await other.close()
    assert set(await rows(store)) == set(kept)


async def test_a_crash_mid_prune_loses_nothing_that_should_stay(store, url):
    old = await make(store, 120, "succeeded", 10)
    kept = await make(store, 10, "succeeded", 1) + await make(store, 5, "failed", 10)
    script = str(HERE / "prune_proc.py")
    proc = subprocess.Popen([sys.executable, script, url, "--batch", "5", "--pause", "0.2"])
    try:

        async def some_pruned() -> bool:
            return len(await rows(store)) < 130 - 5

        await eventually(some_pruned, what="the pruner's first batches")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = await rows(store)
    assert set(kept) <= set(left)
    assert 0 < len(set(old) & set(left)) < len(old)  # it died mid-way
    assert all(v == (2, 2) for v in left.values())  # no run left without events or steps
    assert await prune(store, AGES) == {"succeeded": len(set(old) & set(left)), "failed": 0}
    assert set(await rows(store)) == set(kept)


async def test_a_worker_prunes_with_its_retention(store):
    await make(store, 12, "succeeded", 10)
    kept = await make(store, 2, "succeeded", 1)
    worker = Worker(
        None, store, retention=AGES, prune_every=0.05, prune_batch=5, poll_interval=0.05
    )
    task = asyncio.create_task(worker.run())
    try:

        async def pruned() -> bool:
            return worker.pruned == 12

        await eventually(pruned, what="the worker's pruner")
    finally:
        worker.stop()
        await task
    assert set(await rows(store)) == set(kept)


async def test_unfinished_statuses_cannot_be_pruned(store):
    from ductwork.errors import ValidationError

    with pytest.raises(ValidationError, match="queued"):
        await prune(store, {"queued": 1.0})


def test_retention_config_durations_and_forever():
    from ductwork.config.models import EngineSettings

    settings = EngineSettings.model_validate(
        {"retention": {"succeeded": "2d", "failed": "forever"}}
    )
    assert settings.retention.ages() == {
        "succeeded": 172800.0,
        "failed": None,
        "cancelled": 7 * 86400.0,
    }
    assert EngineSettings().retention.ages()["failed"] == 30 * 86400.0
    with pytest.raises(ValueError, match="forever"):
        EngineSettings.model_validate({"retention": {"succeeded": "a week"}})


def test_jobs_prune_cli(product_dir: Path):
    import json

    from click.testing import CliRunner
    from ductwork.cli.app import cli

    config = product_dir / "ductwork.yaml"
    url = f"sqlite:///{product_dir}/.ductwork/engine.db"

    async def fill() -> None:
        (product_dir / ".ductwork").mkdir(exist_ok=True)
        store = await Store.open(url)
        try:
            await make(store, 4, "succeeded", 10)
            await make(store, 3, "failed", 10)
            await make(store, 2, "succeeded", 1)
        finally:
            await store.close()

    asyncio.run(fill())

    def invoke(*args: str, code: int = 0):
        result = CliRunner().invoke(cli, ["--config", str(config), "--env", "dev", *args])
        assert result.exit_code == code, result.output
        return result.output

    # the env's retention (defaults: succeeded 7d, failed 30d)
    assert (
        invoke("jobs", "prune", "--dry-run")
        == "would prune 4 run(s) (succeeded 4, failed 0, cancelled 0)\n"
    )
    out = json.loads(invoke("--json", "jobs", "prune", "--status", "failed", "--older-than", "5d"))
    assert out == {"dry_run": False, "pruned": 3, "by_status": {"failed": 3}}
    assert invoke("jobs", "prune").startswith("pruned 4 run(s)")
    assert "--status: queued is not a finished status" in invoke(
        "jobs", "prune", "--status", "succeeded,queued", code=1
    )
    assert "--older-than" in invoke("jobs", "prune", "--older-than", "soon", code=1)
    assert invoke("jobs", "prune", "--older-than", "0s").startswith("pruned 2 run(s)")
