"""Crash and fault tests with real worker processes (loopback only, bounded in time)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ductwork.engine import admin
from ductwork.engine.scheduler import add_schedule
from ductwork.engine.schema import run, run_event
from ductwork.engine.spec import RetryPolicy, parse_schedule
from ductwork.engine.store import NewRun, Store, now_ms
from ductwork.testing.sql_servers import postgres_server
from sqlalchemy import func, select, update

from .conftest import clean, eventually, worker_command


def sleep_run(seconds: float = 0.0, **extra) -> NewRun:
    return NewRun(
        "test.sleep",
        "t",
        "t",
        "dev",
        {"seconds": seconds, **extra},
        now_ms(),
        RetryPolicy(max_retries=5, backoff=0.01, cap=0.05),
    )


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self, url: str, *args: str) -> subprocess.Popen:
        fd, name = tempfile.mkstemp(prefix="dw-worker-", suffix=".log")
        proc = subprocess.Popen(worker_command(url, *args), stdout=fd, stderr=fd)
        os.close(fd)
        self.logs.append(Path(name))
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.unlink(missing_ok=True)

    def output(self) -> str:
        texts = (log.read_text() for log in self.logs)
        keep = ("/core/", "/tests/", "Error", "Traceback", "exception")
        return "\n".join(
            "\n".join(
                ln for ln in t.splitlines() if "retrying" not in ln and any(k in ln for k in keep)
            )
            for t in texts
        )


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.stop_all()


async def _counts(store: Store, name: str) -> dict[str, int]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(run_event.c.run_id, func.count())
            .where(run_event.c.event == name)
            .group_by(run_event.c.run_id)
        )
        return {r[0]: r[1] for r in rows}


async def _status_count(store: Store, status: str) -> int:
    async with store.engine.connect() as conn:
        q = select(func.count()).select_from(run).where(run.c.status == status)
        return (await conn.execute(q)).scalar_one()


async def test_kill_9_mid_job_another_worker_completes_it_once(store, url, procs, tmp_path):
    marker = tmp_path / "started"
    row, _ = await store.enqueue(sleep_run(1.0, marker=str(marker)))
    first = procs.start(url, "--lease", "1", "--heartbeat", "0.2")

    async def started() -> bool:
        return marker.exists()

    await eventually(started, what="the job to start")
    assert marker.read_text() == str(first.pid)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = procs.start(url, "--lease", "1", "--heartbeat", "0.2")

    async def succeeded() -> bool:
        return (await admin.get(store, row["id"])).status == "succeeded"

    await eventually(succeeded, what="the second worker to finish the job")
    job = await admin.get(store, row["id"])
    # attempt 2, or later if a loaded machine delayed the second worker's heartbeat past its
    # one-second lease (it is then re-claimed): what matters is who finished it, and once
    assert job.result == {"pid": second.pid} and job.attempt >= 2
    assert (await _counts(store, "succeeded")) == {row["id"]: 1}


async def _history(store: Store) -> dict[str, list[tuple[str, str | None]]]:
    """Each run's (event, worker) pairs, oldest first."""
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(run_event.c.run_id, run_event.c.event, run_event.c.worker).order_by(
                run_event.c.id
            )
        )
        out: dict[str, list[tuple[str, str | None]]] = {}
        for run_id, name, worker in rows:
            out.setdefault(run_id, []).append((name, worker))
        return out


async def _prefill(store: Store) -> tuple[list[str], list[str]]:
    """A store that has been in use: 2,000 runs finished a year ago (with their events, due
    for pruning) and a backlog of 1,000 queued jobs; the ids of both."""
    history = await store.enqueue_many([sleep_run() for _ in range(2000)])
    async with store.tx() as conn:
        await conn.execute(
            update(run)
            .where(run.c.id.in_(history))
            .values(status="succeeded", attempt=1, finished_at=now_ms() - 365 * 86_400_000)
        )
    backlog = await store.enqueue_many([sleep_run() for _ in range(1000)])
    return history, backlog


@pytest.mark.parametrize("prefilled", [False, True], ids=["empty", "prefilled"])
async def test_kill_9_one_of_n_workers_mid_run_none_lost_none_twice(
    pg_url, procs, tmp_path, prefilled
):
    """4 workers x 600 jobs on Postgres; one worker is killed -9 while it holds runs.

    Prefilled: the store already holds old history (pruned by the workers meanwhile, one
    pruner at a time) and a backlog of 1,000 jobs that must also all succeed exactly once.
    """
    store = await Store.open(pg_url)
    await clean(store)
    old: list[str] = []
    backlog: list[str] = []
    if prefilled:
        old, backlog = await _prefill(store)
    pruning = ("--retention", "30", "--prune-every", "0.2") if prefilled else ()
    try:
        # The victim holds its claims under a 1 s lease so they are rescued quickly; the
        # survivors keep the default 30 s lease, so no other run's lease can expire here.
        ready = [tmp_path / f"ready-{n}" for n in range(4)]
        short_lease = ("--lease", "1", "--heartbeat", "0.2")
        victim = procs.start(
            pg_url,
            "--concurrency",
            "8",
            *short_lease,
            *pruning,
            "--id",
            "victim",
            "--ready",
            str(ready[0]),
        )
        for n in range(1, 4):
            procs.start(
                pg_url,
                "--concurrency",
                "8",
                *pruning,
                "--id",
                f"survivor-{n}",
                "--ready",
                str(ready[n]),
            )

        async def all_ready() -> bool:
            return all(r.exists() for r in ready)

        # enqueue once every worker is up, so all four take their share from the start
        await eventually(all_ready, timeout=60, what="four workers to start")
        # every 20th job never finishes in the victim: it is certain to die holding some
        hangs = {i for i in range(600) if i % 20 == 0}
        ids = await store.enqueue_many(
            [sleep_run(0.002, hang_pid=victim.pid if i in hangs else None) for i in range(600)]
        )
        hang_ids = {ids[i] for i in hangs}
        ids += backlog

        held: set[str] = set()  # jobs the victim holds and can never finish

        async def victim_busy() -> bool:
            async with store.engine.connect() as conn:
                owned = await conn.execute(
                    select(run.c.id).where(run.c.status == "running", run.c.lease_owner == "victim")
                )
                done = await conn.execute(
                    select(func.count())
                    .select_from(run_event)
                    .where(run_event.c.event == "succeeded", run_event.c.worker == "victim")
                )
                held.update({r[0] for r in owned} & hang_ids)
                return bool(held) and done.scalar_one() > 0

        # mid-run: the victim has finished some jobs and holds others that are not done
        await eventually(victim_busy, what="the victim to finish some runs and hold others")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()

        async def finished() -> bool:
            async with store.engine.connect() as conn:
                q = (
                    select(func.count())
                    .select_from(run)
                    .where(run.c.status == "succeeded", run.c.id.in_(ids))
                )
                return (await conn.execute(q)).scalar_one() == len(ids)

        await eventually(finished, timeout=90, what="every job")
        history = await _history(store)
        assert set(ids) <= set(history)  # nothing lost
        if prefilled:  # and the workers pruned only the old history, none of the new runs

            async def pruned() -> bool:
                return await _status_count(store, "succeeded") == len(ids)

            await eventually(pruned, timeout=60, what="the old history to be pruned")
            assert not set(old) & set(await _history(store))
        rescued = set()
        for run_id in ids:
            events = history[run_id]
            names = [name for name, _ in events]
            assert names.count("succeeded") == 1, events  # none recorded succeeded twice
            starts = [w for name, w in events if name == "started"]
            # executed again only after a lease expired, and only the victim's leases expired
            assert names.count("lease_expired") == len(starts) - 1, events
            assert all(w == "victim" for w in starts[:-1]), events
            if len(starts) > 1:
                rescued.add(run_id)
        assert held <= rescued
        for run_id in held:
            job = await admin.get(store, run_id)
            assert job.result["pid"] != victim.pid and job.attempt >= 2
        assert all(p.poll() is None for p in procs.procs if p is not victim), procs.output()
    finally:
        await store.close()


async def test_three_schedulers_fire_each_slot_once(store, url, procs):
    now = datetime.now(UTC)
    cron = parse_schedule(
        {"cron": "* * * * *", "start_at": now - timedelta(minutes=30), "misfire": "all"}, now
    )
    every = parse_schedule({"every": "100ms", "limit": 25}, now)
    base = {
        "kind": "noop",
        "target": "t",
        "tag": "t",
        "env": "dev",
        "input": {},
        "retry": RetryPolicy(),
    }
    by_cron = await add_schedule(store, spec=cron, **base)
    by_every = await add_schedule(store, spec=every, **base)
    for _ in range(3):
        procs.start(url, "--scheduler-only")

    async def slots(schedule_id: str) -> list[int]:
        async with store.engine.connect() as conn:
            q = select(run.c.scheduled_for).where(run.c.schedule_id == schedule_id)
            return [r[0] for r in await conn.execute(q)]

    async def done() -> bool:
        return (await admin.get(store, by_every["id"])).status == "completed" and len(
            await slots(by_cron["id"])
        ) >= 30

    await eventually(done, timeout=30, what="both schedules to fire")
    every_slots = sorted(await slots(by_every["id"]))
    assert len(every_slots) == len(set(every_slots)) == 25
    assert all(b - a == 100 for a, b in itertools.pairwise(every_slots))
    cron_slots = await slots(by_cron["id"])
    assert len(cron_slots) == len(set(cron_slots))
    assert all(s % 60_000 == 0 for s in cron_slots)


# -- Postgres restarted under load: a private cluster started by the test ---------------------


@pytest.fixture
def private_pg():
    with postgres_server() as pg:
        yield pg


async def test_workers_reconnect_after_a_postgres_restart(private_pg, procs):
    url = private_pg.url
    store = await Store.open(url)
    try:
        ids = await store.enqueue_many([sleep_run(0.01) for _ in range(400)])
        for _ in range(2):
            procs.start(url, "--concurrency", "4", "--lease", "5", "--heartbeat", "0.5")

        async def some_done() -> bool:
            return await _status_count(store, "succeeded") >= 40

        await eventually(some_done, what="work to be under way")
        private_pg.restart()
        await store.engine.dispose()  # our own pool's connections died too

        async def all_done() -> bool:
            try:
                return await _status_count(store, "succeeded") == len(ids)
            except Exception as exc:
                print("check failed:", type(exc).__name__, exc)
                return False

        try:
            await eventually(all_done, timeout=60, what="every job after the restart")
        except AssertionError:
            print(procs.output())
            for st in ("queued", "running", "succeeded", "failed"):
                print(st, await _status_count(store, st))
            raise
        assert set((await _counts(store, "succeeded")).values()) == {1}
        assert all(p.poll() is None for p in procs.procs), procs.output()  # they survived
    finally:
        await store.close()
