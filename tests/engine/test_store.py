"""The run store on SQLite and Postgres: claims, leases, fencing, retries, dedupe, admin."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ductwork.engine import admin
from ductwork.engine.executors import register_executor
from ductwork.engine.schema import worker as worker_table
from ductwork.engine.spec import RetryPolicy
from ductwork.engine.store import NewRun, Store, now_ms
from ductwork.engine.worker import Worker
from ductwork.errors import AuthenticationError, NotFoundError, ValidationError
from sqlalchemy import select

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


async def _row(store: Store, run_id: str):
    from ductwork.engine.schema import run
    from sqlalchemy import select

    async with store.engine.connect() as conn:
        return (await conn.execute(select(run).where(run.c.id == run_id))).one()


async def test_fail_many_fences_each_run_retries_with_backoff_and_ends_the_rest(store):
    from ductwork.engine.store import Failure

    retrying = RetryPolicy(max_retries=2, backoff=60.0, cap=90.0)
    retry_row, _ = await store.enqueue(new(retry=retrying, dedupe_key="keep-me"))
    final_row, _ = await store.enqueue(new(retry=retrying, dedupe_key="free-me"))
    last_row, _ = await store.enqueue(new(retry=RetryPolicy(max_retries=0)))
    stale_row, _ = await store.enqueue(new(retry=retrying))
    cancel_row, _ = await store.enqueue(new(retry=retrying))
    custom_row, _ = await store.enqueue(new(retry=RetryPolicy(3, non_retryable=("Boom",))))
    got = {c.id: c for c in await store.claim("w1", 10)}
    assert len(got) == 6
    # the stale run's lease expires and another worker claims it under a new epoch
    stale = got[stale_row["id"]]
    await store.heartbeat("w1", -1.0, held=[stale.id])
    assert await store.reap() == [stale.id]
    (fresh,) = await store.claim("w2", 1)
    assert fresh.id == stale.id and fresh.epoch > stale.epoch

    before = now_ms()
    batch = [
        Failure(got[retry_row["id"]], "ConnectionError", "try again"),
        Failure(got[final_row["id"]], "ValidationError", "bad input"),
        Failure(got[last_row["id"]], "ProviderError", "out of attempts"),
        Failure(stale, "ProviderError", "too late"),
        Failure(got[cancel_row["id"]], "Cancelled", "cancelled", cancelled=True),
        Failure(got[custom_row["id"]], "Boom", "declared non-retryable"),
    ]
    statuses = await store.fail_many("w1", batch)
    after = now_ms()
    assert statuses == ["queued", "failed", "failed", None, "cancelled", "failed"]

    retried = await _row(store, retry_row["id"])
    assert retried.status == "queued" and retried.attempt == 1
    assert retried.last_error == "ConnectionError: try again"
    assert retried.lease_owner is None and retried.finished_at is None
    assert retried.dedupe_key == "keep-me"  # still active: dispatching again returns it
    # attempt 1 waits uniform(0, min(cap, backoff * 2**0)) = up to 60 s, full jitter
    assert before <= retried.run_at <= after + 60_000
    for ended, status in (
        (final_row, "failed"),
        (last_row, "failed"),
        (cancel_row, "cancelled"),
        (custom_row, "failed"),
    ):
        row = await _row(store, ended["id"])
        assert row.status == status and row.dedupe_key is None
        assert before <= row.finished_at <= after and row.lease_owner is None
    # the stale writer changed nothing: the run is still the new owner's
    kept = await _row(store, stale.id)
    assert kept.status == "running" and kept.lease_owner == "w2"
    assert kept.last_error.startswith("lease expired")  # the reaper's, not "too late"
    assert kept.lease_epoch == fresh.epoch

    expected = {
        retry_row["id"]: ("retry", "ConnectionError: try again"),
        final_row["id"]: ("failed", "ValidationError: bad input"),
        last_row["id"]: ("failed", "ProviderError: out of attempts"),
        cancel_row["id"]: ("cancelled", "Cancelled: cancelled"),
        custom_row["id"]: ("failed", "Boom: declared non-retryable"),
    }
    for run_id, (name, detail) in expected.items():
        events = await admin.timeline(store, run_id)
        assert [(e["event"], e["detail"], e["worker"]) for e in events[2:]] == [
            (name, detail, "w1")
        ]
    assert [e["event"] for e in await admin.timeline(store, stale.id)] == [
        "enqueued",
        "started",
        "lease_expired",
        "started",
    ]
    # recorded once: the same batch again matches nothing
    assert await store.fail_many("w1", batch) == [None] * len(batch)
    assert await store.fail_many("w1", []) == []
    # the new owner's outcome still lands
    assert await store.succeed_many("w2", [(fresh, "mine")]) == [True]


async def test_batched_retries_back_off_by_attempt_with_full_jitter(store):
    from ductwork.engine.schema import run
    from ductwork.engine.store import Failure
    from sqlalchemy import update

    policy = RetryPolicy(max_retries=5, backoff=40.0, cap=1000.0)
    ids = await store.enqueue_many([new(retry=policy) for _ in range(40)])

    async def fail_all(attempt: int) -> list[int]:
        claimed = await store.claim("w", 40)
        assert len(claimed) == 40 and {c.attempt for c in claimed} == {attempt}
        failures = [Failure(c, "ProviderError", "again") for c in claimed]
        assert await store.fail_many("w", failures) == ["queued"] * 40
        delays = []
        for run_id in ids:
            row = await _row(store, run_id)
            retry = (await admin.timeline(store, run_id))[-1]  # recorded at the failure's time
            assert retry["event"] == "retry" and retry["attempt"] == attempt
            delays.append(row.run_at - round(retry["at"].timestamp() * 1000))
        async with store.tx() as conn:  # make them due again without waiting out the backoff
            await conn.execute(update(run).where(run.c.id.in_(ids)).values(run_at=now_ms()))
        return delays

    first, second = await fail_all(1), await fail_all(2)
    # full jitter: uniform over [0, backoff * 2**(attempt-1)] — 40 s, then 80 s. The chance that
    # 40 draws all land in one half is 2**-40, so these hold whenever the policy is followed.
    assert 0 <= min(first) < 20_000 and max(first) <= 40_000
    assert 0 <= min(second) < 40_000 < max(second) <= 80_000


async def test_complete_many_records_successes_and_failures_in_one_transaction(store):
    from ductwork.engine.store import Failure

    rows = [(await store.enqueue(new(retry=RetryPolicy(max_retries=0))))[0] for _ in range(4)]
    got = {c.id: c for c in await store.claim("w", 4)}
    a, b, c, d = (got[r["id"]] for r in rows)
    oks, statuses = await store.complete_many(
        "w", [(a, 1), (b, 2)], [Failure(c, "ProviderError", "x"), Failure(d, "Y", "y")]
    )
    assert oks == [True, True] and statuses == ["failed", "failed"]
    ats = set()
    for run_id in (a.id, b.id, c.id, d.id):
        last = (await admin.timeline(store, run_id))[-1]
        assert last["event"] in ("succeeded", "failed")
        ats.add(last["at"])
    assert len(ats) == 1  # one flush: one transaction, one timestamp
    assert await store.complete_many("w", [], []) == ([], [])


async def test_worker_flushes_failures_in_one_batch_with_successes(store):
    """Outcomes that are ready together are recorded together, and each is still right."""
    gate = asyncio.Event()
    waiting: list[str] = []

    async def gated(dw, target, data, env):
        waiting.append(target)
        await gate.wait()
        if data["outcome"] == "fatal":
            raise ValidationError("refused")
        if data["outcome"] == "flaky":
            raise ConnectionError("dropped")
        return target

    register_executor("test.gated", gated)
    fast = RetryPolicy(max_retries=1, backoff=0.001, cap=0.001)
    plan = ["ok"] * 6 + ["fatal"] * 5 + ["flaky"] * 5
    runs = [
        NewRun("test.gated", f"t{i}", "t", "dev", {"outcome": o}, now_ms(), fast)
        for i, o in enumerate(plan)
    ]
    ids = await store.enqueue_many(runs)
    worker = Worker(object(), store, concurrency=16, poll_interval=0.02)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:

        async def all_waiting() -> bool:
            return len(waiting) == 16

        await eventually(all_waiting, what="16 runs in flight")
        gate.set()  # every run ends in the same loop iteration: one flush records them all

        async def all_ended() -> bool:
            jobs = [await admin.get(store, i) for i in ids]
            return all(j.status in ("succeeded", "failed") for j in jobs)

        await eventually(all_ended, what="every run to end")
    finally:
        worker.stop()
        await task
    first_outcomes = []
    for run_id, outcome in zip(ids, plan, strict=True):
        job = await admin.get(store, run_id)
        events = await admin.timeline(store, run_id)
        names = [e["event"] for e in events]
        if outcome == "ok":
            assert job.status == "succeeded" and job.attempt == 1
            assert names == ["enqueued", "started", "succeeded"]
        elif outcome == "fatal":  # non-retryable: final at once
            assert job.status == "failed" and job.attempt == 1
            assert job.last_error == "ValidationError: refused"
            assert names == ["enqueued", "started", "failed"]
        else:  # retried once after backoff, then out of attempts
            assert job.status == "failed" and job.attempt == 2
            assert names == ["enqueued", "started", "retry", "started", "failed"]
        first_outcomes.append(events[2]["at"])
    assert len(set(first_outcomes)) == 1, "the 16 outcomes were not recorded in one flush"
    assert worker.executed == 6


async def test_a_worker_whose_login_is_revoked_stops_with_an_authentication_error():
    from ..conftest import PG
    from ..conftest import pg_admin as _admin

    role = f"dw_role_{uuid.uuid4().hex[:8]}"
    await _admin(f"CREATE ROLE {role} LOGIN")
    await _admin(f"CREATE DATABASE {role} OWNER {role}")  # its own: the role owns every table
    url = PG.replace("postgresql://postgres@", f"postgresql://{role}:hunter22@") + f"/{role}"
    store = await Store.open(url)
    worker = Worker(object(), store, poll_interval=0.02, heartbeat=0.1, tick=0.1)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:

        async def registered() -> bool:
            query = select(worker_table.c.id).where(worker_table.c.id == worker.id)
            async with store.tx() as conn:
                return (await conn.execute(query)).first() is not None

        await eventually(registered, what="the worker to register")
        # the credentials are rotated away: no new login, and the open sessions are cut
        await _admin(f"ALTER ROLE {role} NOLOGIN")
        await _admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )
        with pytest.raises(AuthenticationError) as caught:
            await asyncio.wait_for(task, 30)  # it stops; it does not retry forever
        message = str(caught.value)
        assert f"{role}:***@" in message and "hunter22" not in message
    finally:
        task.cancel()
        await store.close()
        await _admin(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)")
        await _admin(f"DROP ROLE {role}")


async def test_enqueue_returns_the_row_as_stored(store):
    from ductwork.engine.schema import run

    made, created = await store.enqueue(new(priority=3, input={"a": [1, 2]}, dedupe_key="row"))
    again, created_again = await store.enqueue(new(dedupe_key="row"))
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(run).where(run.c.id == made["id"]))).one()._mapping
    assert created and not created_again
    assert dict(made) == dict(stored) == dict(again)


@pytest.mark.parametrize("checked", [True, False], ids=["known-closed", "retry"])
async def test_a_dispatch_survives_its_connections_being_cut(pg_url, checked, monkeypatch):
    """Connections kept for enqueues (and pooled ones) are not pinged before use. A cut one is
    passed over when its socket is known closed; else its statement fails, and the enqueue
    retries it once on a fresh connection (``retry``: the closed-socket checks are taken away
    to get there)."""
    import asyncpg
    from ductwork.engine import connect
    from sqlalchemy import event

    from ..conftest import pg_admin as _admin

    store = await Store.open(pg_url)
    try:
        await store.enqueue(new())  # the dispatch lane holds a connection now
        database = store.engine.url.database
        await _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        with monkeypatch.context() as patch:
            if not checked:
                event.remove(store.engine.sync_engine, "checkout", connect.check_out)
                patch.setattr(asyncpg.Connection, "is_closed", lambda self: False)
            row, created = await store.enqueue(new(input={"after": "cut"}))
        assert created
        assert (await admin.get(store, row["id"])).status == "queued"
        again, created = await store.enqueue(new(input={"and": "after"}))  # the lane refilled
        assert created and (await admin.get(store, again["id"])).status == "queued"
    finally:
        await store.close()


async def test_a_heartbeat_judges_only_the_runs_it_asked_about(store):
    """A run claimed while a heartbeat waited for the write lock is not in that beat's answer:
    it must not be taken for lost (it was cancelled, and sat unrun until its lease expired)."""
    row, _ = await store.enqueue(new())
    [claimed] = await store.claim("w1", 1)
    worker = Worker(object(), store)  # type: ignore[arg-type]
    task = asyncio.create_task(asyncio.Event().wait())
    worker._inflight[row["id"]] = (claimed, task)
    try:
        worker._judge({}, {})  # a beat sent before this run was claimed
        await asyncio.sleep(0)
        assert not task.cancelled() and row["id"] not in worker._reasons
        worker._judge({row["id"]: claimed}, {})  # a beat that asked, and the store disowned it
        await asyncio.sleep(0)
        assert task.cancelled() and worker._reasons[row["id"]] == "lost"
    finally:
        task.cancel()


def test_ids_made_in_quick_succession_only_grow():
    from ductwork.engine import records

    made = [records.new_id("run") for _ in range(20_000)]  # many share a millisecond
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {len(i) for i in made} == {len("run_") + 32}
    records._last = (records._last[0], (1 << 80) - 1)  # the random part at its end
    after = records.new_id("run")
    assert after > made[-1] and len(after) == len("run_") + 32


async def test_a_runs_enqueued_event_is_its_creation(store):
    """No event row is written on enqueue: the timeline's first event is the run's
    created_at. A run made by an earlier version also has it as a row; it shows once."""
    from ductwork.engine.records import event_row
    from ductwork.engine.schema import run_event

    row, _ = await store.enqueue(new(schedule_id="sch_x", scheduled_for=1234))
    legacy, _ = await store.enqueue(new())
    async with store.tx() as conn:
        assert (await conn.execute(select(run_event.c.id))).first() is None
        await conn.execute(run_event.insert(), [event_row(legacy["id"], "enqueued", 5)])
    [first] = await admin.timeline(store, row["id"])
    assert first["event"] == "enqueued" and first["detail"] == "slot 1234"
    assert first["at"] == (await admin.get(store, row["id"])).created_at
    assert [e["event"] for e in await admin.timeline(store, legacy["id"])] == ["enqueued"]
    assert await admin.timeline(store, "run_unknown") == []


async def test_concurrent_dispatches_wait_their_turn_outside_the_pool(pg_url, monkeypatch):
    """More dispatches at once than the pool holds queue in arrival order in the lane, never
    in the pool's queue (where a late caller can take a returned connection first), and all
    are stored."""
    from ductwork.engine import lane
    from ductwork.engine.schema import run

    in_flight = most = 0
    fetchval = lane.Lane._fetchval

    async def counted(self, statement, args):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await fetchval(self, statement, args)
        finally:
            in_flight -= 1

    monkeypatch.setattr(lane.Lane, "_fetchval", counted)
    store = await Store.open(pg_url, pool_size=4)
    try:
        made = await asyncio.gather(*(store.enqueue(new(input={"i": i})) for i in range(60)))
        async with store.engine.connect() as conn:
            ids = {r.id for r in await conn.execute(select(run.c.id))}
    finally:
        await store.close()
    assert {row["id"] for row, _ in made} <= ids and len(made) == 60
    assert most == 4  # the pool's size: the gate was full, and never more
