"""Recurring schedules: store one, and fire the slots that are due.

Each slot becomes a run keyed ``(schedule_id, scheduled_for)``, unique, inserted with
``ON CONFLICT DO NOTHING``; the schedule row is also locked while it advances (``FOR UPDATE SKIP
LOCKED`` on Postgres, ``BEGIN IMMEDIATE`` on SQLite). So any number of schedulers — one in
every worker — fire each slot exactly once.

Misfires (slots found more than ``LATE`` past their time, e.g. no worker was running): slots
older than the schedule's ``catch_up`` window are dropped; of the rest, ``skip`` fires none,
``latest`` fires the most recent one, ``all`` fires each of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ductwork.engine.cron import Cron
from ductwork.engine.records import input_text
from ductwork.engine.schema import run, schedule
from ductwork.engine.spec import RetryPolicy, Schedule, parse_retries
from ductwork.engine.store import NewRun, Store, new_id, now_ms, run_values

__all__ = ["LATE_MS", "add_schedule", "fire_due", "schedule_from_row", "schedule_row"]

LATE_MS = 10_000
MAX_SLOTS = 1000


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _dt(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def schedule_row(
    *,
    kind: str,
    target: str,
    tag: str,
    env: str,
    input: Mapping[str, Any] | str,
    spec: Schedule,
    retry: RetryPolicy,
    queue: str = "default",
    priority: int = 0,
    timeout: float | None = None,
) -> dict[str, Any]:
    """The row of a new recurring schedule (for a caller inserting it in its own transaction)."""
    now = now_ms()
    first = spec.first(_dt(now))
    return {
        "id": new_id("sch"),
        "kind": kind,
        "target": target,
        "tag": tag,
        "env": env,
        "input": input_text(input),
        "spec": json.dumps(spec.to_dict()),
        "start_at": _ms(spec.start_at),
        "end_at": _ms(spec.end_at),
        "fire_limit": spec.limit,
        "fired": 0,
        "next_fire_at": _ms(first),
        "status": "active" if first is not None else "completed",
        "retry": json.dumps(retry.to_dict()),
        "queue": queue,
        "priority": priority,
        "timeout": timeout,
        "created_at": now,
    }


async def add_schedule(store: Store, **fields: Any) -> dict[str, Any]:
    """Store a recurring schedule (fields: :func:`schedule_row`'s); it fires from the next tick."""
    values = schedule_row(**fields)
    async with store.tx() as conn:
        await conn.execute(schedule.insert().values(values))
    return values


def schedule_from_row(row: Any) -> Schedule:
    """The :class:`Schedule` a stored row describes."""
    spec = json.loads(row.spec)
    return Schedule(
        start_at=_dt(row.start_at) if row.start_at is not None else None,
        cron=Cron.parse(spec["cron"]) if spec.get("cron") else None,
        every=spec.get("every"),
        tz=spec.get("tz", "UTC"),
        limit=spec.get("limit"),
        end_at=_dt(row.end_at) if row.end_at is not None else None,
        misfire=spec.get("misfire", "all"),
        catch_up=spec.get("catch_up", 3600.0),
    )


def _choose(slots: list[int], now: int, spec: Schedule) -> list[int]:
    window = now - int(spec.catch_up * 1000)
    on_time = [s for s in slots if now - s <= LATE_MS]
    late = [s for s in slots if now - s > LATE_MS and s >= window]
    if spec.misfire == "skip":
        late = []
    elif spec.misfire == "latest":
        late = late[-1:]
    return late + on_time


async def fire_due(store: Store, *, batch: int = 50) -> int:
    """Insert the runs of every due slot; return how many runs this call created."""
    now = now_ms()
    created = 0
    insert = pg_insert if store.dialect == "postgresql" else sqlite_insert
    async with store.tx() as conn:
        due = (
            select(schedule)
            .where(schedule.c.status == "active", schedule.c.next_fire_at <= now)
            .order_by(schedule.c.next_fire_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        for row in (await conn.execute(due)).all():
            spec = schedule_from_row(row)
            slots: list[int] = []
            nxt: int | None = row.next_fire_at
            while nxt is not None and nxt <= now and len(slots) < MAX_SLOTS:
                slots.append(nxt)
                nxt = _ms(spec.next_after(_dt(nxt)))
            fire = _choose(slots, now, spec)
            if row.fire_limit is not None:
                fire = fire[: max(0, row.fire_limit - row.fired)]
            retry = parse_retries(json.loads(row.retry))
            for slot in fire:
                values = run_values(
                    NewRun(
                        kind=row.kind,
                        target=row.target,
                        tag=row.tag,
                        env=row.env,
                        input=row.input,  # stored JSON text, as it is
                        run_at=slot,
                        retry=retry,
                        queue=row.queue,
                        priority=row.priority,
                        timeout=row.timeout,
                        schedule_id=row.id,
                        scheduled_for=slot,
                    ),
                    now,
                )
                done = await conn.execute(insert(run).values(values).on_conflict_do_nothing())
                created += done.rowcount
            fired = row.fired + len(fire)
            finished = nxt is None or (row.fire_limit is not None and fired >= row.fire_limit)
            await conn.execute(
                update(schedule)
                .where(schedule.c.id == row.id, schedule.c.next_fire_at == row.next_fire_at)
                .values(
                    next_fire_at=None if finished else nxt,
                    fired=fired,
                    status="completed" if finished else "active",
                )
            )
        if created:
            await store._notify(conn, "default")
    return created
