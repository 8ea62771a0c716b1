"""Jobs as users see them: get, list, cancel, pause, resume, retry, and a run's timeline.

A job id names a run (``run_…``) or a recurring schedule (``sch_…``). Cancelling a running run
asks its worker to stop (it checks at each heartbeat); cancelling a schedule also cancels its
runs that have not started.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ductwork.engine.records import FINISHED
from ductwork.engine.scheduler import schedule_from_row
from ductwork.engine.schema import run, run_event, schedule
from ductwork.engine.spec import Job, parse_retries
from ductwork.engine.store import Store, _event, now_ms
from ductwork.errors import NotFoundError, ValidationError

__all__ = ["cancel", "get", "list_jobs", "pause", "resume", "retry", "timeline"]


def _dt(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def run_job(row: Any, now: int | None = None) -> Job:
    """A run row as a :class:`Job`."""
    now = now_ms() if now is None else now
    status = row.status
    if status == "queued" and row.run_at > now:
        status = "scheduled"
    created_at = _dt(row.created_at)
    slot = row.scheduled_for if row.scheduled_for is not None else row.run_at
    # a run dispatched for now was scheduled for its creation time: one datetime, not two
    scheduled_at = created_at if slot == row.created_at else _dt(slot)
    return Job._of(
        job_id=row.id,
        status=status,
        kind=row.kind,
        target=row.target,
        recurring=False,
        scheduled_at=scheduled_at,
        next_run_at=(scheduled_at if slot == row.run_at else _dt(row.run_at))
        if row.status == "queued"
        else None,
        env=row.env,
        queue=row.queue,
        priority=row.priority,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        last_error=row.last_error,
        result=json.loads(row.result) if row.result else None,
        schedule_id=row.schedule_id,
        created_at=created_at,
        finished_at=_dt(row.finished_at),
    )


def schedule_job(row: Any) -> Job:
    """A schedule row as a :class:`Job`."""
    status = {"active": "scheduled"}.get(row.status, row.status)
    spec = schedule_from_row(row)
    return Job(
        job_id=row.id,
        status=status,
        kind=row.kind,
        target=row.target,
        recurring=True,
        scheduled_at=spec.start_at or _dt(row.created_at),
        next_run_at=_dt(row.next_fire_at),
        env=row.env,
        queue=row.queue,
        priority=row.priority,
        # what each run it fires gets: the first execution and its retries
        max_attempts=parse_retries(json.loads(row.retry)).max_attempts,
        schedule_id=row.id,
        created_at=_dt(row.created_at),
        fired=row.fired,
        extra={k: v for k, v in json.loads(row.spec).items() if v is not None},
    )


async def get(store: Store, job_id: str) -> Job:
    """The job; :class:`NotFoundError` if there is none."""
    table = schedule if job_id.startswith("sch_") else run
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(table).where(table.c.id == job_id))).first()
    if row is None:
        raise NotFoundError(f"no job {job_id!r}")
    return schedule_job(row) if table is schedule else run_job(row)


async def list_jobs(
    store: Store,
    *,
    status: str | None = None,
    kind: str | None = None,
    tag: str | None = None,
    schedule_id: str | None = None,
    limit: int = 100,
) -> list[Job]:
    """Jobs newest first, filtered by status, kind (``storage.save`` …) or resource tag."""
    now = now_ms()
    jobs: list[Job] = []
    async with store.engine.connect() as conn:
        runs = select(run).order_by(run.c.created_at.desc(), run.c.id).limit(limit)
        if kind:
            runs = runs.where(run.c.kind == kind)
        if tag:
            runs = runs.where(run.c.tag == tag)
        if schedule_id:
            runs = runs.where(run.c.schedule_id == schedule_id)
        if status in ("scheduled", "queued"):
            runs = runs.where(run.c.status == "queued")
            runs = runs.where(run.c.run_at > now if status == "scheduled" else run.c.run_at <= now)
        elif status:
            runs = runs.where(run.c.status == status)
        jobs += [run_job(r, now) for r in (await conn.execute(runs)).all()]
        if not schedule_id:
            scheds = select(schedule).order_by(schedule.c.created_at.desc()).limit(limit)
            if kind:
                scheds = scheds.where(schedule.c.kind == kind)
            if tag:
                scheds = scheds.where(schedule.c.tag == tag)
            stored = {"scheduled": "active"}.get(status or "", status)
            if stored:
                scheds = scheds.where(schedule.c.status == stored)
            jobs += [schedule_job(r) for r in (await conn.execute(scheds)).all()]
    jobs.sort(key=lambda j: j.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return jobs[:limit]


async def timeline(store: Store, job_id: str) -> list[dict[str, Any]]:
    """A run's events, oldest first.

    The first, ``enqueued``, is not stored: it is the run's ``created_at`` (a dispatch writes
    only its run). Stores written before schema version 7 also hold it as a row, which is
    passed over so it shows once.
    """
    async with store.engine.connect() as conn:
        made = (
            await conn.execute(
                select(run.c.created_at, run.c.schedule_id, run.c.scheduled_for).where(
                    run.c.id == job_id
                )
            )
        ).first()
        rows = await conn.execute(
            select(run_event)
            .where(run_event.c.run_id == job_id, run_event.c.event != "enqueued")
            .order_by(run_event.c.id)
        )
        events = [
            {
                "at": _dt(r.at),
                "event": r.event,
                "attempt": r.attempt,
                "worker": r.worker,
                "detail": r.detail,
            }
            for r in rows
        ]
    if made is None:
        return events
    slot = None if made.schedule_id is None else f"slot {made.scheduled_for}"
    first = {"at": _dt(made.created_at), "event": "enqueued", "attempt": 0, "worker": None}
    return [{**first, "detail": slot}, *events]


async def _transition(
    store: Store,
    job_id: str,
    action: str,
    run_from: dict[str, str],
    sched_from: dict[str, str],
    extra: dict[str, Any] | None = None,
) -> Job:
    now = now_ms()
    job = await get(store, job_id)
    async with store.tx() as conn:
        if job.recurring:
            row = (await conn.execute(select(schedule).where(schedule.c.id == job_id))).one()
            if row.status not in sched_from:
                raise ValidationError(f"cannot {action} job {job_id}: it is {job.status}")
            values: dict[str, Any] = {"status": sched_from[row.status]}
            if action == "resume":  # slots missed while paused are skipped
                nxt = schedule_from_row(row).next_after(datetime.now(UTC))
                values.update(next_fire_at=None if nxt is None else int(nxt.timestamp() * 1000))
            await conn.execute(update(schedule).where(schedule.c.id == job_id).values(values))
            if action == "cancel":
                await conn.execute(
                    update(run)
                    .where(run.c.schedule_id == job_id, run.c.status.in_(("queued", "paused")))
                    .values(status="cancelled", finished_at=now, dedupe_key=None)
                )
        else:
            row = (await conn.execute(select(run).where(run.c.id == job_id))).one()
            if action == "cancel" and row.status not in FINISHED:
                await _cancel_descendants(conn, job_id, now)
            if action == "cancel" and row.status == "running":
                await conn.execute(
                    update(run).where(run.c.id == job_id).values(cancel_requested=True)
                )
            elif row.status not in run_from:
                raise ValidationError(f"cannot {action} job {job_id}: it is {job.status}")
            else:
                values = {"status": run_from[row.status], **(extra or {})}
                if values["status"] in ("cancelled",):
                    values.update(finished_at=now, dedupe_key=None)
                await conn.execute(
                    update(run).where(run.c.id == job_id, run.c.status == row.status).values(values)
                )
            await conn.execute(run_event.insert().values(_event(job_id, action, now)))
    return await get(store, job_id)


async def _cancel_descendants(conn: AsyncConnection, root: str, now: int) -> None:
    """Cancel the unfinished child runs of ``root``, and theirs, in the caller's transaction.

    A waiting or queued child is cancelled at once; a running one is asked to stop.
    """
    frontier = [root]
    while frontier:
        rows = (
            await conn.execute(
                select(run.c.id, run.c.status).where(
                    run.c.parent_run_id.in_(frontier), run.c.status.not_in(FINISHED)
                )
            )
        ).all()
        running = [r.id for r in rows if r.status == "running"]
        parked = [r.id for r in rows if r.status != "running"]
        if running:
            await conn.execute(
                update(run).where(run.c.id.in_(running)).values(cancel_requested=True)
            )
        if parked:
            await conn.execute(
                update(run)
                .where(run.c.id.in_(parked), run.c.status.not_in(("running", *FINISHED)))
                .values(status="cancelled", finished_at=now, dedupe_key=None)
            )
        ids = [r.id for r in rows]
        if ids:
            detail = f"its parent run {root} was cancelled"
            await conn.execute(
                run_event.insert(), [_event(i, "cancel", now, detail=detail) for i in ids]
            )
        frontier = ids


async def cancel(store: Store, job_id: str) -> Job:
    """Cancel a job that has not finished (a running run is asked to stop).

    A run's unfinished child runs (feature steps) are cancelled with it, to any depth.
    """
    return await _transition(
        store,
        job_id,
        "cancel",
        # waiting: a parked feature run (sleep, wait for a signal)
        {"queued": "cancelled", "paused": "cancelled", "waiting": "cancelled"},
        {"active": "cancelled", "paused": "cancelled"},
    )


async def pause(store: Store, job_id: str) -> Job:
    """Hold a waiting run, or a schedule's future slots."""
    return await _transition(store, job_id, "pause", {"queued": "paused"}, {"active": "paused"})


async def resume(store: Store, job_id: str) -> Job:
    """Release a paused run or schedule."""
    return await _transition(store, job_id, "resume", {"paused": "queued"}, {"paused": "active"})


async def retry(store: Store, job_id: str) -> Job:
    """Run a failed or cancelled run again, with a fresh set of attempts."""
    return await _transition(
        store,
        job_id,
        "retry",
        {"failed": "queued", "cancelled": "queued"},
        {},
        extra={"attempt": 0, "run_at": now_ms(), "finished_at": None, "cancel_requested": False},
    )
