"""Recording a worker's outcomes: fenced success and failure rows, many in one transaction.

:func:`complete_many` (``Store.complete_many``, the worker's flush) opens the transaction and
writes the events; the row updates are below. Every row is matched by its id *and*
the lease epoch its worker claimed it under (and ``status = 'running'``), so a write from a
worker that lost the lease matches nothing. Postgres updates a whole batch in one statement
(``unnest`` of ids, epochs and values); SQLite, whose writers are serialised anyway, one row
at a time inside the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, case, text, update

from ductwork.engine.records import Claimed, Failure, event_row, now_ms, to_json
from ductwork.engine.schema import run

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ductwork.engine.store import Store

__all__ = ["complete_many", "failure_outcome", "record_failures", "record_successes"]


def failure_outcome(f: Failure, now: int) -> tuple[str, int, str]:
    """(new status, run_at, stored error) of a failed attempt: retry after backoff, or end."""
    c = f.claimed
    error = f"{f.error_type}: {f.message}"[:4000]
    if f.cancelled:
        return "cancelled", now, error
    if not f.final and c.attempt < c.max_attempts and c.retry.retryable(f.error_type):
        return "queued", now + int(c.retry.delay(c.attempt) * 1000), error
    return "failed", now, error


# Postgres records a batch in one statement per outcome: unnest() pairs each id with its own
# epoch, so a stale epoch matches nothing and that row is left as it is.
_PG_SUCCEED_MANY = text(
    f"UPDATE {run.name} AS r SET status = 'succeeded', result = v.result,"
    " finished_at = :now, lease_owner = NULL, lease_expires_at = NULL, dedupe_key = NULL"
    " FROM unnest(CAST(:ids AS text[]), CAST(:epochs AS integer[]),"
    " CAST(:results AS text[])) AS v(id, epoch, result)"
    " WHERE r.id = v.id AND r.lease_epoch = v.epoch AND r.status = 'running'"
    " RETURNING r.id, r.lease_epoch"
)
# A re-queued run keeps its dedupe key (it is still active); an ended one frees it.
_PG_FAIL_MANY = text(
    f"UPDATE {run.name} AS r SET status = v.status, run_at = v.run_at, last_error = v.error,"
    " lease_owner = NULL, lease_expires_at = NULL,"
    " finished_at = CASE WHEN v.status = 'queued' THEN NULL ELSE CAST(:now AS bigint) END,"
    " dedupe_key = CASE WHEN v.status = 'queued' THEN r.dedupe_key ELSE NULL END"
    " FROM unnest(CAST(:ids AS text[]), CAST(:epochs AS integer[]), CAST(:statuses AS text[]),"
    " CAST(:run_ats AS bigint[]), CAST(:errors AS text[])) AS v(id, epoch, status, run_at, error)"
    " WHERE r.id = v.id AND r.lease_epoch = v.epoch AND r.status = 'running'"
    " RETURNING r.id, r.lease_epoch"
)

# SQLite records a batch row by row, in one transaction: the fence (this run, still running
# under the epoch its worker claimed) and one fenced success, built once
_FENCE = (
    run.c.id == bindparam("rid"),
    run.c.lease_epoch == bindparam("repoch"),
    run.c.status == "running",
)
_SUCCEED_ONE = (
    update(run)
    .where(*_FENCE)
    .values(
        status="succeeded",
        result=bindparam("rresult"),
        finished_at=bindparam("rnow"),
        lease_owner=None,
        lease_expires_at=None,
        dedupe_key=None,
    )
)
# one fenced failure, the same way; an ended run frees its dedupe key, a re-queued one keeps it
_FAIL_ONE = (
    update(run)
    .where(*_FENCE)
    .values(
        status=bindparam("rstatus"),
        run_at=bindparam("rrun_at"),
        last_error=bindparam("rerror"),
        lease_owner=None,
        lease_expires_at=None,
        finished_at=bindparam("rfinished"),
        dedupe_key=case((bindparam("rstatus") == "queued", run.c.dedupe_key), else_=None),
    )
)


async def _fenced(
    conn: AsyncConnection,
    bulk: Any,
    bulk_params: dict[str, Any],
    one: Any,
    each: Iterable[tuple[tuple[str, int], dict[str, Any]]],
) -> set[tuple[str, int]]:
    """Run the fenced update: one ``unnest`` statement on Postgres, else one per row.

    Either way each row is written only while its epoch still matches; returns the
    (id, epoch) pairs that were.
    """
    if conn.dialect.name == "postgresql":
        return {(r[0], r[1]) for r in await conn.execute(bulk, bulk_params)}
    ok = set[tuple[str, int]]()
    for key, params in each:
        if (await conn.execute(one, params)).rowcount == 1:
            ok.add(key)
    return ok


async def record_successes(
    conn: AsyncConnection,
    done: Sequence[tuple[Claimed, Any]],
    results: Sequence[str | None],
    now: int,
) -> set[tuple[str, int]]:
    """Fenced success rows; the (id, epoch) pairs recorded."""
    if not done:
        return set()
    bulk = {
        "now": now,
        "ids": [c.id for c, _ in done],
        "epochs": [c.epoch for c, _ in done],
        "results": list(results),
    }
    each = (
        ((c.id, c.epoch), {"rid": c.id, "repoch": c.epoch, "rresult": result, "rnow": now})
        for (c, _), result in zip(done, results, strict=True)
    )
    return await _fenced(conn, _PG_SUCCEED_MANY, bulk, _SUCCEED_ONE, each)


async def record_failures(
    conn: AsyncConnection,
    failed: Sequence[Failure],
    outcomes: Sequence[tuple[str, int, str]],
    now: int,
) -> set[tuple[str, int]]:
    """Fenced failure rows (re-queued or ended); the (id, epoch) pairs recorded."""
    if not failed:
        return set()
    bulk = {
        "now": now,
        "ids": [f.claimed.id for f in failed],
        "epochs": [f.claimed.epoch for f in failed],
        "statuses": [status for status, _, _ in outcomes],
        "run_ats": [run_at for _, run_at, _ in outcomes],
        "errors": [error for _, _, error in outcomes],
    }
    each = (
        (
            (f.claimed.id, f.claimed.epoch),
            {
                "rid": f.claimed.id,
                "repoch": f.claimed.epoch,
                "rstatus": status,
                "rrun_at": run_at,
                "rerror": error,
                "rfinished": None if status == "queued" else now,
            },
        )
        for f, (status, run_at, error) in zip(failed, outcomes, strict=True)
    )
    return await _fenced(conn, _PG_FAIL_MANY, bulk, _FAIL_ONE, each)


async def complete_many(
    store: Store,
    worker_id: str,
    succeeded: Sequence[tuple[Claimed, Any]],
    failed: Sequence[Failure],
) -> tuple[list[bool], list[str | None]]:
    """Record successes and failures together in one transaction (the worker's flush).

    Every row is fenced by its own lease epoch: a run whose lease was lost (reaped,
    claimed elsewhere, already recorded) is left alone and reported False / None.
    """
    if not succeeded and not failed:
        return [], []
    now = now_ms()
    results = [to_json(result) for _, result in succeeded]
    # decided here, per run, exactly as a single failure would be
    outcomes = [failure_outcome(f, now) for f in failed]
    async with store.tx() as conn:
        recorded_ok = await record_successes(conn, succeeded, results, now)
        recorded_failed = await record_failures(conn, failed, outcomes, now)
        events = [
            event_row(c.id, "succeeded", now, c.attempt, worker_id)
            for c, _ in succeeded
            if (c.id, c.epoch) in recorded_ok
        ]
        for f, (status, _, error) in zip(failed, outcomes, strict=True):
            c = f.claimed
            if (c.id, c.epoch) in recorded_failed:
                name = "retry" if status == "queued" else status
                events.append(event_row(c.id, name, now, c.attempt, worker_id, error))
        await store._events(conn, events)
    return (
        [(c.id, c.epoch) in recorded_ok for c, _ in succeeded],
        [
            status if (f.claimed.id, f.claimed.epoch) in recorded_failed else None
            for f, (status, _, _) in zip(failed, outcomes, strict=True)
        ],
    )
