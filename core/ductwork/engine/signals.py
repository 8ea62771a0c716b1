"""Signals to feature runs: delivered to a parked wait, or kept until the run waits for them.

A signal to a run parked on a ``wait`` for it completes that step and re-queues the run at
once. A signal that arrives earlier — the run is queued, running, sleeping or waiting for
another signal — is kept as a *pending* row (step key ``@signal:<name>``, status ``pending``,
the payload as its output) and consumed by the wait for it: :func:`take_signal` (the wait)
and :func:`signal` lock the run's row, so whichever comes second sees the other, and
:func:`parked_on_pending` lets a run about to park on a signal that is already pending go
straight back to the queue. One pending signal per name: a second is refused until the first
is consumed. Finished runs take no signal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ductwork.engine.schema import run, run_event, step
from ductwork.engine.store import _event, _json, now_ms
from ductwork.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ductwork.engine.steps import CurrentRun
    from ductwork.engine.store import Store

__all__ = ["PENDING", "parked_on_pending", "pending_key", "signal", "take_signal"]

PENDING = "@signal:"
FINISHED = ("succeeded", "failed", "cancelled")


def pending_key(name: str) -> str:
    """The step key of signal ``name`` kept until the run waits for it."""
    return PENDING + name


async def signal(
    store: Store,
    run_id: str,
    name: str,
    payload: Any,
    *,
    waits_for: Callable[[str], frozenset[str] | None] | None = None,
    internal: bool = False,
) -> str:
    """Deliver signal ``name`` to a run; the step key it completed, or its pending key.

    ``waits_for(feature_tag)`` names the signals a feature can wait for (``None``: any), so a
    signal no wait of the run's feature takes is refused instead of kept forever.
    ``internal`` signals (a child run's outcome to its parent) may come twice: a repeat of
    one already pending or taken is a no-op.

    Raises:
        NotFoundError: no such run.
        ValidationError: the run is finished, its feature never waits for ``name``, or a
            signal ``name`` is already pending (nothing stored).
    """
    now = now_ms()
    async with store.tx() as conn:
        # the run's row locked: a wait that parks, or consumes, is before or after this
        found = (
            await conn.execute(
                select(run.c.status, run.c.tag).where(run.c.id == run_id).with_for_update()
            )
        ).first()
        if found is None:
            raise NotFoundError(f"no feature run {run_id!r}")
        if found.status in FINISHED:
            raise ValidationError(
                f"run {run_id} is not waiting for signal {name!r} (it is {found.status}); "
                "nothing was stored"
            )
        waiting = (
            await conn.execute(
                select(step.c.step_key).where(
                    step.c.run_id == run_id, step.c.status == "waiting", step.c.signal == name
                )
            )
        ).first()
        if internal:
            taken = (
                await conn.execute(
                    select(step.c.step_key).where(
                        step.c.run_id == run_id,
                        step.c.signal == name,
                        step.c.status.in_(("succeeded", "failed", "pending")),
                    )
                )
            ).first()
            if taken is not None:
                return str(taken.step_key)
        if found.status == "waiting" and waiting is not None:
            key = str(waiting.step_key)
            await conn.execute(
                update(step)
                .where(step.c.run_id == run_id, step.c.step_key == key)
                .values(status="succeeded", output=_json(payload), finished_at=now, wake_at=None)
            )
            await conn.execute(
                update(run)
                .where(run.c.id == run_id, run.c.status == "waiting")
                .values(status="queued", run_at=now)
            )
            await conn.execute(
                run_event.insert().values(_event(run_id, "signal", now, 0, None, key))
            )
            return key
        known = waits_for(found.tag) if waits_for is not None and not internal else None
        if known is not None and name not in known:
            raise ValidationError(
                f"run {run_id} is not waiting for signal {name!r}: feature {found.tag!r} has no "
                f"wait for it (it waits for: {', '.join(sorted(known)) or 'none'}); "
                "nothing was stored"
            )
        key = pending_key(name)
        held = (
            await conn.execute(
                select(step.c.started_at).where(step.c.run_id == run_id, step.c.step_key == key)
            )
        ).first()
        if held is not None:
            raise ValidationError(
                f"signal {name!r} to run {run_id} is already pending (its wait has not taken "
                "it yet); nothing was stored"
            )
        await conn.execute(
            step.insert().values(
                run_id=run_id,
                step_key=key,
                status="pending",
                attempt=0,
                output=_json(payload),
                started_at=now,
                signal=name,
                epoch=0,
            )
        )
        await conn.execute(
            run_event.insert().values(_event(run_id, "signal", now, 0, None, f"{key} (pending)"))
        )
        return key


async def take_signal(
    cur: CurrentRun, key: str, name: str, *, wake_at: int, started_at: int, wait: bool
) -> tuple[bool, Any]:
    """The wait step ``key``: consume a pending signal ``name`` (fenced), else record the wait.

    Returns ``(True, payload)`` when a pending signal was consumed (the step is stored
    succeeded), else ``(False, None)`` — and, with ``wait``, the step is stored ``waiting``.

    Raises:
        LeaseLost: the run is no longer this worker's (nothing was written).
    """
    from ductwork.engine.steps import LeaseLost

    c = cur.claimed
    now = now_ms()
    async with cur.store.tx() as conn:
        held = (
            await conn.execute(
                select(run.c.id)
                .where(run.c.id == c.id, run.c.lease_epoch == c.epoch, run.c.status == "running")
                .with_for_update()
            )
        ).first()
        if held is None:
            raise LeaseLost(f"run {c.id}: lease epoch {c.epoch} is no longer current")
        pending = pending_key(name)
        found = (
            await conn.execute(
                select(step.c.output).where(step.c.run_id == c.id, step.c.step_key == pending)
            )
        ).first()
        row: dict[str, Any] = {
            "run_id": c.id,
            "step_key": key,
            "attempt": 1,
            "error": None,
            "started_at": started_at,
            "signal": name,
            "epoch": c.epoch,
        }
        if found is not None:
            row.update(status="succeeded", output=found.output, finished_at=now, wake_at=None)
            await _upsert(conn, row)
            await conn.execute(
                delete(step).where(and_(step.c.run_id == c.id, step.c.step_key == pending))
            )
            return True, json.loads(found.output) if found.output is not None else None
        if wait:
            row.update(status="waiting", output=None, finished_at=None, wake_at=wake_at)
            await _upsert(conn, row)
        return False, None


async def parked_on_pending(conn: AsyncConnection, run_id: str) -> bool:
    """Whether one of the run's waiting steps waits for a signal that is already pending."""
    waiting, pending = step.alias("waiting"), step.alias("pending")
    query = (
        select(waiting.c.step_key)
        .select_from(
            waiting.join(
                pending,
                and_(
                    pending.c.run_id == waiting.c.run_id,
                    pending.c.step_key == literal(PENDING) + waiting.c.signal,
                ),
            )
        )
        .where(waiting.c.run_id == run_id, waiting.c.status == "waiting")
        .limit(1)
    )
    return (await conn.execute(query)).first() is not None


async def _upsert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(step).values(values)
    changed = {c: stmt.excluded[c] for c in values if c not in ("run_id", "step_key")}
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=["run_id", "step_key"], set_=changed)
    )
