"""Retention: finished runs removed by age, with their events and steps, in small batches.

Each batch is one short transaction: it picks at most ``batch`` of the oldest runs of one
finished status past their age (the partial index ``ductwork_run_finished``), then deletes
their events, their steps and the runs. A crash mid-batch rolls the whole batch back, so a run
is never left without its timeline or its steps.

One pruner at a time: on Postgres each batch first takes a transaction-scoped advisory lock (a
worker that finds it taken skips its round; ``jobs prune`` waits for it) and locks the rows it
picked (``FOR UPDATE``); on SQLite writers are serialised anyway. So two workers never prune
the same rows, and nothing else holds a lock for longer than one batch.

A run something still references is kept, whatever its age:

- the newest slot of a schedule (its current run, shown by ``jobs ls``);
- a run with a live (not finished) child: a feature run's parent, or the run a replay or
  fork copies from (``forked_from``).

Runs that are not finished (queued, running, paused, waiting — a parked feature run) are
never candidates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, exists, func, or_, select, text

from ductwork.engine.records import FINISHED, now_ms
from ductwork.engine.schema import run, run_event, step

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ductwork.engine.store import Store

__all__ = ["DEFAULT_BATCH", "NOTIFICATIONS", "prune", "prune_round"]

DEFAULT_BATCH = 500
#: the key of the delivery log's age in a worker's retention ages
NOTIFICATIONS = "notifications"
_LOCK = 7236502  # the pruners' advisory lock (migrations hold 7236501)


def _candidates(status: str, cutoff: int) -> Select[tuple[str]]:
    """Runs of ``status`` finished before ``cutoff`` that nothing references, oldest first."""
    other = run.alias("other")
    live = other.c.status.not_in(FINISHED)
    has_live_child = exists().where(other.c.parent_run_id == run.c.id, live)
    has_live_fork = exists().where(other.c.forked_from == run.c.id, live)
    newest_slot = (
        select(func.max(other.c.scheduled_for))
        .where(other.c.schedule_id == run.c.schedule_id)
        .scalar_subquery()
    )
    return (
        select(run.c.id)
        .where(
            run.c.status == status,
            run.c.finished_at < cutoff,
            ~has_live_child,
            ~has_live_fork,
            or_(run.c.schedule_id.is_(None), run.c.scheduled_for < newest_slot),
        )
        .order_by(run.c.finished_at)
    )


def _cutoffs(ages: Mapping[str, float | None], now: int) -> list[tuple[str, int]]:
    unknown = sorted(set(ages) - set(FINISHED))
    if unknown:
        from ductwork.errors import ValidationError

        raise ValidationError(
            f"cannot prune runs that are {', '.join(unknown)}: only finished runs "
            f"({', '.join(FINISHED)}) are pruned"
        )
    return [(s, now - int(age * 1000)) for s, age in ages.items() if age is not None]


async def _batch(
    conn: AsyncConnection, status: str, cutoff: int, batch: int, *, wait: bool
) -> int | None:
    """Prune one batch inside ``conn``'s transaction; None if another pruner holds the lock."""
    query = _candidates(status, cutoff).limit(batch)
    if conn.dialect.name == "postgresql":
        lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = (await conn.execute(text(f"SELECT {lock}({_LOCK})"))).scalar()
        if got is False:
            return None
        query = query.with_for_update(of=run, skip_locked=True)
    ids = list((await conn.execute(query)).scalars())
    if not ids:
        return 0
    await conn.execute(delete(run_event).where(run_event.c.run_id.in_(ids)))
    await conn.execute(delete(step).where(step.c.run_id.in_(ids)))
    done = await conn.execute(delete(run).where(run.c.id.in_(ids), run.c.status == status))
    return int(done.rowcount)


async def prune(
    store: Store,
    ages: Mapping[str, float | None],
    *,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    wait: bool = True,
    pause: float = 0.0,
    now: int | None = None,
) -> dict[str, int]:
    """Remove finished runs older than their status's age (seconds; None keeps them).

    Returns the runs removed (or, with ``dry_run``, that would be) per status. Works in
    transactions of at most ``batch`` runs, sleeping ``pause`` seconds between them. With
    ``wait=False`` (the workers' pruner) it stops at once when another pruner holds the lock.
    """
    now = now_ms() if now is None else now
    removed: dict[str, int] = {}
    for status, cutoff in _cutoffs(ages, now):
        if dry_run:
            async with store.engine.connect() as conn:
                counted = select(func.count()).select_from(_candidates(status, cutoff).subquery())
                removed[status] = int((await conn.execute(counted)).scalar_one())
            continue
        removed[status] = 0
        while True:
            async with store.tx() as conn:
                done = await _batch(conn, status, cutoff, batch, wait=wait)
            if done is None:  # another worker is pruning: it will do this round
                return removed
            removed[status] += done
            if done < batch:
                break
            if pause:
                await asyncio.sleep(pause)
    return removed


async def prune_round(store: Store, ages: Mapping[str, float | None], batch: int) -> int:
    """One round of a worker's pruner: every status, skipped if another worker prunes.

    A ``notifications`` age in ``ages`` also prunes the delivery log
    (:func:`ductwork.engine.deliveries.prune`).
    """
    runs = {status: age for status, age in ages.items() if status != NOTIFICATIONS}
    removed = sum((await prune(store, runs, batch=batch, wait=False, pause=0.05)).values())
    age = ages.get(NOTIFICATIONS)
    if age is not None:
        from ductwork.engine.deliveries import prune as prune_deliveries

        removed += await prune_deliveries(store, age, batch=batch)
    return removed


def ages_for(statuses: Sequence[str], age: float | None) -> dict[str, float | None]:
    """The same age for each of ``statuses`` (every finished status when empty)."""
    return {s: age for s in (statuses or FINISHED)}
