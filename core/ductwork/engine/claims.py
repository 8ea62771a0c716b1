"""Claims and leases: take due runs under a fresh lease, heartbeat, release, reap.

Each function takes the :class:`~ductwork.engine.store.Store` (whose methods of the same
names call them). The claim reads the partial index ``ductwork_run_claim`` — queued runs in
exactly the claim's order ``(priority DESC, run_at, id)`` — so it stops after the first rows it
can take whatever the backlog (O(log backlog)); the reaper reads ``ductwork_run_running``,
which holds only running runs, so history never slows either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select, text, update

from ductwork.engine.records import Claimed, event_row, now_ms
from ductwork.engine.schema import run, status_is, worker

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ductwork.engine.store import Store

__all__ = ["claim", "heartbeat", "reap", "release", "remove_worker", "taken"]


async def claim(
    store: Store,
    worker_id: str,
    n: int,
    *,
    queues: Sequence[str] | None = None,
    lease: float = 30.0,
    limits: Mapping[str, int] | None = None,
) -> list[Claimed]:
    """Take up to ``n`` due runs (highest priority, then oldest) under a fresh lease."""
    if n <= 0:
        return []
    limits = limits or {}
    now = now_ms()
    claimed: list[Claimed] = []
    async with store.tx() as conn:
        limited = [q for q in limits if queues is None or q in queues]
        for queue in limited:
            if store.dialect == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"dw:q:{queue}"}
                )
            busy = (
                await conn.execute(
                    select(func.count())
                    .select_from(run)
                    .where(status_is("running"), run.c.queue == queue)
                )
            ).scalar_one()
            room = min(n - len(claimed), limits[queue] - busy)
            if room > 0:
                claimed += await _claim(store, conn, worker_id, room, [queue], None, lease, now)
        if len(claimed) < n:
            claimed += await _claim(
                store, conn, worker_id, n - len(claimed), queues, limited, lease, now
            )
        await store._events(
            conn, [event_row(c.id, "started", now, c.attempt, worker_id) for c in claimed]
        )
    return claimed


def taken(worker_id: str, lease: float, now: int) -> dict[str, Any]:
    """What a claim writes on a queued run: running, under a fresh lease, one attempt more.

    The epoch bump fences out whoever held it before (see the store's docstring).
    """
    return {
        "status": "running",
        "lease_owner": worker_id,
        "lease_expires_at": now + int(lease * 1000),
        "lease_epoch": run.c.lease_epoch + 1,
        "attempt": run.c.attempt + 1,
        "started_at": now,
    }


async def _claim(
    store: Store,
    conn: AsyncConnection,
    worker_id: str,
    n: int,
    queues: Sequence[str] | None,
    exclude: Sequence[str] | None,
    lease: float,
    now: int,
) -> list[Claimed]:
    due = select(run.c.id).where(status_is("queued"), run.c.run_at <= now)
    if queues is not None:
        due = due.where(run.c.queue.in_(list(queues)))
    if exclude:
        due = due.where(run.c.queue.not_in(list(exclude)))
    due = due.order_by(run.c.priority.desc(), run.c.run_at, run.c.id).limit(n)
    # A materialised CTE joined once: an IN (subquery) may be re-run by the planner and
    # claim more than n rows under SKIP LOCKED.
    chosen = due.with_for_update(skip_locked=True).cte("due")
    chosen = chosen.prefix_with("MATERIALIZED", dialect="postgresql")
    stmt = (
        update(run)
        .where(run.c.id == chosen.c.id, run.c.status == "queued")
        .values(taken(worker_id, lease, now))
        .returning(
            run.c.id,
            run.c.kind,
            run.c.target,
            run.c.env,
            run.c.input,
            run.c.attempt,
            run.c.max_attempts,
            run.c.retry,
            run.c.timeout,
            run.c.lease_epoch,
            run.c.queue,
            run.c.priority,
            run.c.run_at,
        )
    )
    rows = sorted((await conn.execute(stmt)).all(), key=lambda r: (-r.priority, r.run_at, r.id))
    return [Claimed.from_row(r) for r in rows]


async def heartbeat(
    store: Store,
    worker_id: str,
    lease: float,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 0,
    held: Sequence[str] = (),
) -> dict[str, tuple[int, bool]]:
    """Record the worker alive and extend its leases; return its runs' (epoch, cancel)."""
    now = now_ms()
    async with store.tx() as conn:
        values = {"heartbeat_at": now}
        done = await conn.execute(update(worker).where(worker.c.id == worker_id).values(values))
        if done.rowcount == 0:
            await conn.execute(
                worker.insert().values(
                    id=worker_id,
                    started_at=now,
                    heartbeat_at=now,
                    queues=json.dumps(list(queues) if queues else None),
                    concurrency=concurrency,
                )
            )
        if not held:
            return {}
        # Only the runs this worker knows it holds: a claim whose reply was lost (the
        # connection dropped after commit) must expire and be reaped, not be kept alive.
        rows = await conn.execute(
            update(run)
            .where(
                run.c.lease_owner == worker_id,
                run.c.status == "running",
                run.c.id.in_(list(held)),
            )
            .values(lease_expires_at=now + int(lease * 1000))
            .returning(run.c.id, run.c.lease_epoch, run.c.cancel_requested)
        )
        return {r.id: (r.lease_epoch, bool(r.cancel_requested)) for r in rows}


async def remove_worker(store: Store, worker_id: str) -> None:
    """Forget a worker that stopped cleanly."""
    async with store.tx() as conn:
        await conn.execute(worker.delete().where(worker.c.id == worker_id))


async def release(store: Store, worker_id: str, runs: Iterable[tuple[str, int]]) -> int:
    """Give runs back to the queue unfinished (graceful shutdown); not counted as attempts."""
    now = now_ms()
    count = 0
    async with store.tx() as conn:
        for run_id, epoch in runs:
            done = await conn.execute(
                update(run)
                .where(run.c.id == run_id, run.c.lease_epoch == epoch, run.c.status == "running")
                .values(
                    status="queued",
                    lease_owner=None,
                    lease_expires_at=None,
                    lease_epoch=epoch + 1,
                    attempt=run.c.attempt - 1,
                    run_at=now,
                )
            )
            if done.rowcount:
                count += 1
                await store._events(conn, [event_row(run_id, "released", now, 0, worker_id)])
    return count


async def reap(store: Store) -> list[str]:
    """Re-queue runs whose lease expired (bumping the epoch); fail those out of attempts."""
    now = now_ms()
    out_of_attempts = run.c.attempt >= run.c.max_attempts
    async with store.tx() as conn:
        rows = (
            await conn.execute(
                update(run)
                .where(status_is("running"), run.c.lease_expires_at < now)
                .values(
                    status=case((out_of_attempts, "failed"), else_="queued"),
                    finished_at=case((out_of_attempts, now), else_=None),
                    dedupe_key=case((out_of_attempts, None), else_=run.c.dedupe_key),
                    lease_owner=None,
                    lease_expires_at=None,
                    lease_epoch=run.c.lease_epoch + 1,
                    run_at=now,
                    last_error="lease expired: the worker stopped heartbeating",
                )
                .returning(run.c.id, run.c.status, run.c.attempt)
            )
        ).all()
        await store._events(
            conn,
            [event_row(r.id, "lease_expired", now, r.attempt, None, r.status) for r in rows],
        )
    return [r.id for r in rows]
