"""Feature runs in the run store: step checkpoints, parking, waking and signals.

A feature run is an ordinary run (kind ``feature``) claimed, leased and fenced like every job.
Its steps' results live in ``ductwork_step`` keyed ``(run_id, step_key)``. Every write here is
fenced: it first touches the run row ``WHERE id = :run AND lease_epoch = :mine AND status =
'running'`` in the same transaction, so a worker that lost its lease writes nothing
(:class:`LeaseLost`) and stops.

A run that sleeps or waits for a signal is *parked*: status ``waiting``, ``run_at`` = when it
wakes (the sleep's end, the wait's timeout), no lease, its epoch bumped — no worker holds it.
:func:`wake_due` (every worker's ticker) re-queues parked runs that are due; signals are in
:mod:`ductwork.engine.signals`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, select, update

from ductwork.engine import checkpoints
from ductwork.engine.claims import taken
from ductwork.engine.schema import run, run_event, status_is, step
from ductwork.engine.signals import parked_on_pending, signal
from ductwork.engine.store import _event, _json, now_ms
from ductwork.errors import DuctworkError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ductwork.engine.store import Claimed, Store

__all__ = [
    "FAR_FUTURE",
    "CurrentRun",
    "LeaseLost",
    "Parked",
    "StepRow",
    "checkpoint",
    "claim_run",
    "copy_steps",
    "create_run",
    "current_run",
    "event",
    "forget_steps",
    "load_steps",
    "park",
    "signal",
    "wake",
    "wake_due",
]

FAR_FUTURE = 253_402_300_799_000  # 9999-12-31: a wait without timeout


class Parked(Exception):  # a control-flow signal to the worker, not an error
    """Raised by a feature run that parked itself: the worker records no outcome."""


class LeaseLost(DuctworkError):
    """The worker no longer holds the run (reaped, cancelled, parked): it must stop."""


@dataclass(frozen=True)
class CurrentRun:
    """The run a worker is executing, and the store it came from (set by the worker)."""

    store: Store
    claimed: Claimed
    worker_id: str


current_run: ContextVar[CurrentRun | None] = ContextVar("ductwork_current_run", default=None)


@dataclass(frozen=True)
class StepRow:
    """One stored step."""

    key: str
    status: str
    attempt: int
    output: Any
    error: str | None
    started_at: int | None
    finished_at: int | None
    wake_at: int | None
    signal: str | None


def _row(r: Any) -> StepRow:
    return StepRow(
        r.step_key,
        r.status,
        r.attempt,
        json.loads(r.output) if r.output is not None else None,
        r.error,
        r.started_at,
        r.finished_at,
        r.wake_at,
        r.signal,
    )


async def load_steps(conn: AsyncConnection, run_id: str) -> dict[str, StepRow]:
    """Every stored step of a run, by key."""
    rows = await conn.execute(select(step).where(step.c.run_id == run_id))
    return {r.step_key: _row(r) for r in rows}


async def checkpoint(
    cur: CurrentRun,
    key: str,
    status: str,
    *,
    attempt: int,
    output: Any = None,
    error: str | None = None,
    started_at: int,
    wake_at: int | None = None,
    signal_name: str | None = None,
) -> None:
    """Commit a step's outcome (or its ``waiting`` state), fenced by the lease.

    The row is the step's part of the run's timeline (``features.output`` reads it with the
    run's events), so no event row is written for it. Returns once the row is committed.
    Checkpoints of runs executing concurrently in this process are committed together (group
    commit: one transaction, each row fenced by its own run's epoch), so concurrency costs one
    fsync per batch, not per step.

    Raises:
        LeaseLost: the run is no longer this worker's (nothing was written).
    """
    now = now_ms()
    c = cur.claimed
    values = {
        "run_id": c.id,
        "step_key": key,
        "status": status,
        "attempt": attempt,
        "output": _json(output),
        "error": error,
        "started_at": started_at,
        "finished_at": None if status == "waiting" else now,
        "wake_at": wake_at,
        "signal": signal_name,
        "epoch": c.epoch,
    }
    if not await checkpoints.submit(cur.store, c, values):
        raise LeaseLost(f"run {c.id}: lease epoch {c.epoch} is no longer current")


async def event(cur: CurrentRun, name: str, detail: str, attempt: int = 0) -> None:
    """Append a timeline event for the current run (not fenced: it records, decides nothing)."""
    async with cur.store.tx() as conn:
        await conn.execute(
            run_event.insert().values(
                _event(cur.claimed.id, name, now_ms(), attempt, cur.worker_id, detail[:4000])
            )
        )


async def park(cur: CurrentRun, *, wake_at: int, detail: str) -> None:
    """Give the run up until ``wake_at`` or a signal (its waiting steps are already stored).

    Raises:
        LeaseLost: the run is no longer this worker's.
    """
    now = now_ms()
    c = cur.claimed
    async with cur.store.tx() as conn:
        # like a release: the claim that wakes it is not counted against the run's attempts
        done = await conn.execute(
            update(run)
            .where(run.c.id == c.id, run.c.lease_epoch == c.epoch, run.c.status == "running")
            .values(
                status="waiting",
                run_at=wake_at,
                lease_owner=None,
                lease_expires_at=None,
                lease_epoch=c.epoch + 1,
                attempt=run.c.attempt - 1,
            )
        )
        if done.rowcount != 1:
            raise LeaseLost(f"run {c.id}: lease epoch {c.epoch} is no longer current")
        await conn.execute(
            run_event.insert().values(_event(c.id, "parked", now, c.attempt, cur.worker_id, detail))
        )
        # a signal it waits for came while it ran (checked under the run's lock): back at once
        if await parked_on_pending(conn, c.id):
            await conn.execute(
                update(run).where(run.c.id == c.id).values(status="queued", run_at=now)
            )
            await conn.execute(run_event.insert().values(_event(c.id, "woke", now)))


async def wake(store: Store, run_id: str) -> bool:
    """Re-queue one parked run if its wake time has come."""
    return bool(await wake_due(store, run_id))


async def wake_due(store: Store, run_id: str | None = None) -> list[str]:
    """Re-queue parked runs whose wake time has come (or only ``run_id``); their ids."""
    now = now_ms()
    due = [status_is("waiting"), run.c.run_at <= now]  # inline: the partial index
    if run_id is not None:
        due.append(run.c.id == run_id)
    async with store.tx() as conn:
        rows = (
            await conn.execute(update(run).where(*due).values(status="queued").returning(run.c.id))
        ).all()
        if rows:
            await conn.execute(run_event.insert(), [_event(r.id, "woke", now) for r in rows])
    return [r.id for r in rows]


async def forget_steps(conn: AsyncConnection, run_id: str, keys: Sequence[str]) -> None:
    """Delete stored steps (a resume from a step re-runs it and what came after)."""
    if keys:
        await conn.execute(
            delete(step).where(and_(step.c.run_id == run_id, step.c.step_key.in_(list(keys))))
        )


async def copy_steps(conn: AsyncConnection, source: str, target: str, keys: Sequence[str]) -> None:
    """Copy stored steps of run ``source`` to run ``target`` (a replay from a step)."""
    if not keys:
        return
    rows = (
        await conn.execute(
            select(step).where(step.c.run_id == source, step.c.step_key.in_(list(keys)))
        )
    ).all()
    if rows:
        await conn.execute(
            step.insert(), [{**r._mapping, "run_id": target, "epoch": 0} for r in rows]
        )


async def create_run(
    store: Store,
    values: dict[str, Any],
    *,
    copy_from: str | None = None,
    copy_keys: Sequence[str] = (),
) -> tuple[Any, bool]:
    """Insert a run row (its id chosen by the caller), optionally copying another's steps.

    Returns the row and True, or — when a run with that id exists (an idempotency key seen
    before) — that run's row and False.
    """
    from sqlalchemy.exc import IntegrityError

    try:
        async with store.tx() as conn:
            await conn.execute(run.insert().values(values))
            if copy_from is not None:
                await copy_steps(conn, copy_from, values["id"], copy_keys)
            await store._notify(conn, values["queue"])
            row = (await conn.execute(select(run).where(run.c.id == values["id"]))).one()
            return row, True
    except IntegrityError:
        async with store.engine.connect() as conn:
            found = (await conn.execute(select(run).where(run.c.id == values["id"]))).first()
        if found is None:
            raise
        return found, False


async def claim_run(store: Store, run_id: str, worker_id: str, lease: float) -> Claimed | None:
    """Claim one queued, due run by id (``features.run(wait=True)`` executes it in-process)."""
    from ductwork.engine.store import Claimed

    now = now_ms()
    async with store.tx() as conn:
        r = (
            await conn.execute(
                update(run)
                .where(run.c.id == run_id, run.c.status == "queued", run.c.run_at <= now)
                .values(taken(worker_id, lease, now))
                .returning(run)
            )
        ).first()
        if r is None:
            return None
        await conn.execute(
            run_event.insert().values(_event(run_id, "started", now, r.attempt, worker_id))
        )
    return Claimed.from_row(r)
