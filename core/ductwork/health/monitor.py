"""The health monitor: each healthcheck is a recurring job of the engine, its state a row.

:func:`install` (``ductwork worker`` calls it at start) gives every healthcheck of the env a
recurring schedule (``every: interval``, kind ``health.probe``, queue ``health``, high priority,
no retries, misfire ``latest``) and a row in ``ductwork_health``. The engine's scheduler fires
each slot exactly once whatever the number of workers (the run is keyed by ``(schedule_id,
slot)``), so each probe runs once per interval. A worker that starts with a changed probe,
interval or timeout replaces the schedule; one whose config lost a check removes it.

:func:`record` applies one probe's outcome in one transaction holding the check's row (``FOR
UPDATE`` on Postgres, ``BEGIN IMMEDIATE`` on SQLite): the consecutive counters, the status
(``failures`` consecutive failures make it unhealthy, ``successes`` consecutive successes
healthy), and — when the status changed — the alert runs (a notification, an event), inserted
in the same transaction with the dedupe key ``health:<env>:<tag>:<change number>``. The update
is a compare-and-set on the change number and the last applied slot, so two workers can never
both decide a change, and a probe of an older slot finishing late changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from ductwork._redact import get_logger
from ductwork.engine.connect import transient
from ductwork.engine.records import NewRun, now_ms, run_values
from ductwork.engine.schema import health, run, schedule
from ductwork.engine.spec import RetryPolicy, Schedule
from ductwork.health.probes import ProbeResult, run_probe

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ductwork.client import Ductwork
    from ductwork.engine.store import Store
    from ductwork.health.models import HealthcheckDef

__all__ = ["PROBE_KIND", "QUEUE", "decide", "execute", "install", "read_states", "record"]

log = get_logger("ductwork.health")

PROBE_KIND = "health.probe"
QUEUE = "health"
PRIORITY = 100  # probes are claimed before a backlog of ordinary jobs
_NO_RETRY = RetryPolicy(max_retries=0)
_LOCK = 7236506  # Postgres advisory lock serialising installs


def spec_of(defn: HealthcheckDef) -> str:
    """What the schedule depends on: a change replaces it."""
    return json.dumps(
        {"probe": defn.probe, "interval": defn.interval, "timeout": defn.timeout},
        sort_keys=True,
        default=str,
    )


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


async def install(dw: Ductwork, env: str | None = None) -> int:
    """Give every healthcheck of ``env`` its schedule and state row; the schedules made anew."""
    from ductwork.engine.scheduler import schedule_row

    env_name = dw.config.env_name(env or dw.env)
    checks = dw.config.product.healthchecks
    store = await dw.jobs.store(env_name)
    now = now_ms()
    made = 0
    async with store.tx() as conn:
        if store.dialect == "postgresql":
            await conn.execute(select(_advisory_lock()))
        rows = {r.tag: r for r in (await conn.execute(_rows(env_name))).all()}
        ids = [r.schedule_id for r in rows.values() if r.schedule_id]
        query = select(schedule.c.id).where(
            schedule.c.id.in_(ids), schedule.c.status.in_(("active", "paused"))
        )
        live = set((await conn.execute(query)).scalars())  # a paused one stays paused
        for tag, old in rows.items():
            if tag not in checks or old.spec != spec_of(checks[tag]):
                await _cancel(conn, old.schedule_id)
            if tag not in checks:
                await conn.execute(delete(health).where(*_key(env_name, tag)))
        for tag, defn in checks.items():
            row = rows.get(tag)
            if row is not None and row.spec == spec_of(defn) and row.schedule_id in live:
                continue
            values = schedule_row(
                kind=PROBE_KIND,
                target=tag,
                tag=tag,
                env=env_name,
                input={},
                spec=Schedule(
                    start_at=datetime.now(UTC),
                    every=defn.interval,
                    misfire="latest",
                    catch_up=max(60.0, 2 * defn.interval),
                ),
                retry=_NO_RETRY,
                queue=QUEUE,
                priority=PRIORITY,
                timeout=2 * defn.timeout + 30.0,  # the probe bounds itself; this is a backstop
            )
            await conn.execute(schedule.insert().values(values))
            fields = {"schedule_id": values["id"], "spec": spec_of(defn)}
            if row is None:
                await conn.execute(
                    health.insert().values(
                        env=env_name,
                        tag=tag,
                        status="unknown",
                        failures=0,
                        successes=0,
                        probes=0,
                        changes=0,
                        created_at=now,
                        **fields,
                    )
                )
            else:
                await conn.execute(update(health).where(*_key(env_name, tag)).values(**fields))
            made += 1
    return made


def _advisory_lock() -> Any:
    from sqlalchemy import func

    return func.pg_advisory_xact_lock(_LOCK)


def _key(env: str, tag: str) -> tuple[Any, Any]:
    return health.c.env == env, health.c.tag == tag


def _rows(env: str) -> Any:
    return select(health).where(health.c.env == env)


async def _cancel(conn: AsyncConnection, schedule_id: str | None) -> None:
    if schedule_id is not None:
        await conn.execute(
            update(schedule)
            .where(schedule.c.id == schedule_id, schedule.c.status == "active")
            .values(status="cancelled", next_fire_at=None)
        )


def decide(
    status: str, failures: int, successes: int, ok: bool, defn: HealthcheckDef
) -> tuple[str, int, int]:
    """The status and consecutive counters after one probe (the thresholds' rule)."""
    failures, successes = (0, successes + 1) if ok else (failures + 1, 0)
    if status != "unhealthy" and failures >= defn.failures:
        status = "unhealthy"
    elif status != "healthy" and successes >= defn.successes:
        status = "healthy"
    return status, failures, successes


async def record(
    store: Store,
    env: str,
    tag: str,
    defn: HealthcheckDef,
    result: ProbeResult,
    *,
    slot: int,
) -> str | None:
    """Apply one probe of ``slot`` to the state; the new status, None when the slot was stale."""
    now = now_ms()
    async with store.tx() as conn:
        query = _rows(env).where(health.c.tag == tag).with_for_update()
        row = (await conn.execute(query)).first()
        if row is None or (row.slot is not None and slot <= row.slot):
            return None  # not installed (any more), or a newer probe was applied already
        status, failures, successes = decide(
            row.status, row.failures, row.successes, result.ok, defn
        )
        changed = status != row.status
        values: dict[str, Any] = {
            "status": status,
            "failures": failures,
            "successes": successes,
            "latency": result.latency,
            "checked_at": now,
            "slot": slot,
            "probes": row.probes + 1,
            "changes": row.changes + int(changed),
        }
        if result.error is not None:
            values["last_error"] = result.error
        if changed:
            values["since"] = now
        same_slot = health.c.slot.is_(None) if row.slot is None else health.c.slot == row.slot
        cas = update(health).where(*_key(env, tag), health.c.changes == row.changes, same_slot)
        if (await conn.execute(cas.values(**values))).rowcount != 1:
            return None  # another writer got there first (cannot happen under the row lock)
        # unknown -> healthy is the first look, not news; every other change is announced
        if changed and not (row.status == "unknown" and status == "healthy") and defn.alert:
            change = {
                "healthcheck": tag,
                "env": env,
                "status": status,
                "previous": row.status,
                "since": datetime.fromtimestamp(now / 1000, UTC).isoformat(),
                "latency": result.latency,
                "error": result.error,
                "change": values["changes"],
            }
            await _alert(conn, env, tag, defn, change, now)
    if changed:
        log.warning("healthcheck %s (env %s): %s -> %s", tag, env, row.status, status)
    return status


async def _alert(
    conn: AsyncConnection,
    env: str,
    tag: str,
    defn: HealthcheckDef,
    change: dict[str, Any],
    now: int,
) -> None:
    """The alert runs of one change: durable, retried, enqueued once per change."""
    alert = defn.alert
    assert alert is not None
    key = f"health:{env}:{tag}:{change['change']}"
    runs: list[NewRun] = []
    if alert.notification is not None:
        data = {"to": alert.to, "data": change, "idempotency_key": f"{key}:notification"}
        runs.append(_alert_run("notifications.send", alert.notification, env, data, key, now))
    if alert.event is not None:
        data = {"message": change, "headers": {"idempotency-key": f"{key}:event"}}
        runs.append(_alert_run("events.publish", alert.event, env, data, key, now))
    for new in runs:
        values = run_values(new, now)
        await conn.execute(run.insert().values(values))


def _alert_run(
    kind: str, target: str, env: str, data: dict[str, Any], key: str, now: int
) -> NewRun:
    return NewRun(
        kind=kind,
        target=target,
        tag=target.partition(":")[0],
        env=env,
        input=data,
        run_at=now,
        retry=RetryPolicy(),
        queue=QUEUE,
        priority=PRIORITY,
        dedupe_key=f"{key}:{kind}",
    )


async def read_states(store: Store, env: str, tags: Iterable[str]) -> dict[str, Any]:
    """The stored state of each of ``tags`` in ``env`` (unknown where none is stored)."""
    from ductwork.processor.health import HealthState

    async with store.engine.connect() as conn:
        rows = {r.tag: r for r in (await conn.execute(_rows(env))).all()}
    out: dict[str, Any] = {}
    for tag in tags:
        row = rows.get(tag)
        if row is None:
            out[tag] = HealthState(tag, "unknown")
            continue
        out[tag] = HealthState(
            tag,
            row.status,
            latency=row.latency,
            since=_dt(row.since),
            last_error=row.last_error,
            checked_at=_dt(row.checked_at),
        )
    return out


async def execute(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    """The executor of ``health.probe`` runs: probe, then record under the run's slot."""
    from ductwork.engine.steps import current_run

    defn = dw.config.product.healthchecks.get(target)
    if defn is None:
        return {"skipped": f"no healthcheck {target!r} in this worker's config"}
    result = await run_probe(dw, defn, env)
    store = await dw.jobs.store(env)
    slot = now_ms()  # a run not fired by the schedule (run by hand) counts as of now
    held = current_run.get()
    if held is not None:
        async with store.engine.connect() as conn:
            query = select(run.c.scheduled_for).where(run.c.id == held.claimed.id)
            slot = (await conn.execute(query)).scalar() or slot
    status = await _recorded(store, env, target, defn, result, slot)
    return {"ok": result.ok, "latency": result.latency, "error": result.error, "status": status}


async def _recorded(
    store: Store, env: str, tag: str, defn: HealthcheckDef, result: ProbeResult, slot: int
) -> str | None:
    """:func:`record`, retried while the store is briefly unavailable (busy, restarting).

    The probe has been made: losing its outcome to a busy store would leave a gap in the
    counters, so it is retried with backoff for up to about a minute; the slot makes a retry
    that follows a commit change nothing.
    """
    delay = 0.05
    for _ in range(40):
        try:
            return await record(store, env, tag, defn, result, slot=slot)
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("recording healthcheck %s failed (%s); retrying", tag, type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
    return await record(store, env, tag, defn, result, slot=slot)
