"""The run store on SQLite and Postgres: claims, leases, fencing, retries, dedupe, admin."""

from __future__ import annotations

import asyncio

import pytest
from ductwork.engine import admin
from ductwork.engine.executors import register_executor
from ductwork.engine.spec import RetryPolicy
from ductwork.engine.store import NewRun, Store, now_ms
from ductwork.engine.worker import Worker
from ductwork.errors import NotFoundError, ValidationError

from .conftest import eventually


def new(kind="noop", *, run_at=None, retry=None, **kw) -> NewRun:
    return NewRun(
        kind=kind,
        target="t",
        tag="t",
        env="dev",
        input=kw.pop("input", {}),
        run_at=now_ms() if run_at is None else run_at,
        retry=retry or RetryPolicy(),
        **kw,
    )


async def test_migration_is_idempotent_and_versioned(url):
    first = await Store.open(url)
    second = await Store.open(url)  # a second opener finds the schema current
    await first.close()
    await second.close()


async def test_claim_takes_due_runs_by_priority_and_fences_stale_writers(store):
    low, _ = await store.enqueue(new(priority=0))
    high, _ = await store.enqueue(new(priority=5))
    later, _ = await store.enqueue(new(run_at=now_ms() + 60_000))
    got = await store.claim("w1", 10)
    assert [c.id for c in got] == [high["id"], low["id"]]  # not the one due later
    assert await store.claim("w2", 10) == []
    claimed = got[0]
    # the lease expires: the reaper re-queues it with a bumped epoch
    await store.heartbeat("w1", -1.0, held=[c.id for c in got])
    assert set(await store.reap()) == {high["id"], low["id"]}
    again = {c.id: c for c in await store.claim("w2", 10)}
    assert again[high["id"]].epoch > claimed.epoch
    assert await store.succeed(claimed, "w1", "stale") is False  # fenced out
    assert await store.succeed(again[high["id"]], "w2", "fresh") is True
    job = await admin.get(store, high["id"])
    assert job.status == "succeeded" and job.result == "fresh"
    events = [e["event"] for e in await admin.timeline(store, high["id"])]
    assert events.count("succeeded") == 1 and "lease_expired" in events
    assert (await admin.get(store, later["id"])).status == "scheduled"


async def test_failures_retry_with_backoff_then_fail_and_non_retryable_fail_at_once(store):
    row, _ = await store.enqueue(new(retry=RetryPolicy(max_retries=1, backoff=0.001, cap=0.001)))
    (c,) = await store.claim("w", 1)
    assert await store.fail(c, "w", "ProviderError", "boom") == "queued"
    await eventually(lambda: _claimable(store))
    (c,) = await store.claim("w", 1)
    assert c.attempt == 2
    assert await store.fail(c, "w", "ProviderError", "boom again") == "failed"
    job = await admin.get(store, row["id"])
    assert job.status == "failed" and "boom again" in job.last_error
    row2, _ = await store.enqueue(new())
    (c,) = await store.claim("w", 1)
    assert await store.fail(c, "w", "ValidationError", "bad input") == "failed"
    retried = await admin.retry(store, row2["id"])
    assert retried.status == "queued" and retried.attempt == 0


async def _claimable(store: Store) -> bool:
    async with store.engine.connect() as conn:
        from ductwork.engine.schema import run
        from sqlalchemy import func, select

        due = (
            select(func.count())
            .select_from(run)
            .where(run.c.status == "queued", run.c.run_at <= now_ms())
        )
        return (await conn.execute(due)).scalar_one() > 0


def test_backoff_is_full_jitter_under_a_cap():
    policy = RetryPolicy(max_retries=10, backoff=1.0, cap=5.0)
    delays = [policy.delay(a) for a in range(1, 12) for _ in range(50)]
    assert all(0 <= d <= 5.0 for d in delays)
    assert max(policy.delay(1) for _ in range(200)) <= 1.0


async def test_dedupe_key_returns_the_active_run_until_it_ends(store):
    first, created = await store.enqueue(new(dedupe_key="k"))
    second, created2 = await store.enqueue(new(dedupe_key="k"))
    assert created and not created2 and second["id"] == first["id"]
    (c,) = await store.claim("w", 1)
    await store.succeed(c, "w", None)
    third, created3 = await store.enqueue(new(dedupe_key="k"))
    assert created3 and third["id"] != first["id"]


async def test_queue_filter_and_per_queue_concurrency_limit(store):
    for _ in range(3):
        await store.enqueue(new(queue="mail"))
    await store.enqueue(new(queue="other"))
    got = await store.claim("w", 10, queues=["mail"], limits={"mail": 2})
    assert len(got) == 2 and {c.queue for c in got} == {"mail"}
    assert await store.claim("w2", 10, queues=["mail"], limits={"mail": 2}) == []
    rest = await store.claim("w3", 10, limits={"mail": 2})
    assert [c.queue for c in rest] == ["other"]


async def test_cancel_pause_resume(store):
    row, _ = await store.enqueue(new())
    assert (await admin.pause(store, row["id"])).status == "paused"
    assert await store.claim("w", 1) == []
    assert (await admin.resume(store, row["id"])).status == "queued"
    assert (await admin.cancel(store, row["id"])).status == "cancelled"
    with pytest.raises(ValidationError, match="cannot pause"):
        await admin.pause(store, row["id"])
    with pytest.raises(NotFoundError):
        await admin.get(store, "run_nope")
    assert [j.job_id for j in await admin.list_jobs(store, status="cancelled")] == [row["id"]]


async def test_worker_runs_jobs_retries_and_honours_cancel_of_a_running_job(store):
    attempts: dict[str, int] = {}

    async def flaky(dw, target, data, env):
        attempts[target] = attempts.get(target, 0) + 1
        if attempts[target] < 2:
            raise ConnectionError("transient")
        return attempts[target]

    async def slow(dw, target, data, env):
        await asyncio.sleep(30)

    register_executor("test.flaky", flaky)
    register_executor("test.slow", slow)
    ok, _ = await store.enqueue(
        NewRun("test.flaky", "a", "a", "dev", {}, now_ms(), RetryPolicy(3, 0.001, 0.001))
    )
    hang, _ = await store.enqueue(NewRun("test.slow", "b", "b", "dev", {}, now_ms(), RetryPolicy()))
    worker = Worker(object(), store, poll_interval=0.02, heartbeat=0.1, tick=0.1)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:

        async def done() -> bool:
            return (await admin.get(store, ok["id"])).status == "succeeded"

        await eventually(done, what="the flaky job to succeed")
        assert (await admin.get(store, ok["id"])).attempt == 2

        async def running() -> bool:
            return (await admin.get(store, hang["id"])).status == "running"

        await eventually(running)
        await admin.cancel(store, hang["id"])

        async def cancelled() -> bool:
            return (await admin.get(store, hang["id"])).status == "cancelled"

        await eventually(cancelled, what="the running job to be cancelled")
    finally:
        worker.stop()
        await task


async def test_graceful_stop_releases_in_flight_runs(store):
    async def slow(dw, target, data, env):
        await asyncio.sleep(30)

    register_executor("test.slow", slow)
    row, _ = await store.enqueue(NewRun("test.slow", "b", "b", "dev", {}, now_ms(), RetryPolicy()))
    worker = Worker(object(), store, poll_interval=0.02, grace=0.1)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())

    async def running() -> bool:
        return (await admin.get(store, row["id"])).status == "running"

    await eventually(running)
    worker.stop()
    await task
    job = await admin.get(store, row["id"])
    assert job.status == "queued" and job.attempt == 0


async def test_succeed_many_fences_each_run_by_its_own_epoch(store):
    rows = [(await store.enqueue(new()))[0] for _ in range(3)]
    got = {c.id: c for c in await store.claim("w1", 3)}
    stale = got[rows[0]["id"]]
    # the first run's lease expires and another worker claims it under a new epoch
    await store.heartbeat("w1", -1.0, held=[stale.id])
    assert await store.reap() == [stale.id]
    (fresh,) = await store.claim("w2", 1)
    assert fresh.id == stale.id and fresh.epoch > stale.epoch
    batch = [(got[r["id"]], {"n": i}) for i, r in enumerate(rows)]
    assert await store.succeed_many("w1", batch) == [False, True, True]
    assert await store.succeed_many("w1", batch) == [False, False, False]  # never twice
    assert await store.succeed_many("w2", [(fresh, "fresh")]) == [True]
    for i, r in enumerate(rows):
        job = await admin.get(store, r["id"])
        assert job.status == "succeeded"
        assert job.result == ("fresh" if i == 0 else {"n": i})
        events = [e["event"] for e in await admin.timeline(store, r["id"])]
        assert events.count("succeeded") == 1
    assert await store.succeed_many("w1", []) == []


async def test_worker_drains_many_runs_with_batched_completions(store):
    ids = set(await store.enqueue_many([new() for _ in range(200)]))
    worker = Worker(object(), store, concurrency=16, poll_interval=0.05)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:

        async def all_done() -> bool:
            jobs = await admin.list_jobs(store, status="succeeded", limit=500)
            return {j.job_id for j in jobs} >= ids

        await eventually(all_done, what="200 runs succeeded")
    finally:
        worker.stop()
        await task
    assert worker.executed == 200
    for run_id in list(ids)[:20]:
        events = [e["event"] for e in await admin.timeline(store, run_id)]
        assert events.count("succeeded") == 1 and events.count("started") == 1


async def test_open_waits_for_an_unreachable_database_then_gives_up():
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{port}/nothing"
    t0 = time.monotonic()
    with pytest.raises(OSError):
        await Store.open(url, wait=0.5)
    assert 0.3 <= time.monotonic() - t0 < 5
