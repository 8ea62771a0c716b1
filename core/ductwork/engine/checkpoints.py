"""Step checkpoints: group commit, each row fenced by its run's lease epoch, in one trip.

Checkpoints of runs executing concurrently in one process are committed together: whatever is
pending when the flusher starts goes in one transaction, and each row is written only if its
run is still ``running`` under the writer's epoch. A step awaits its own row's commit.

The cost per batch is one trip from the event loop, so a step's overhead is the step itself
plus about one commit:

* SQLite: the store's group commit on its own connection thread
  (:func:`ductwork.engine.direct.batched`): ``BEGIN IMMEDIATE``, one fenced upsert per row
  (with whatever else is pending: delivery-log writes), ``COMMIT``, under the store's
  in-process write lock. (Through SQLAlchemy's
  aiosqlite adapter the same transaction takes eight trips to the driver's thread: cursor,
  execute and close for ``BEGIN`` and for the upsert, the commit, the pool's reset.) The
  write lock SQLite takes at ``BEGIN IMMEDIATE`` makes each fence check and its write atomic.
* Postgres: one statement in autocommit: the held runs' rows locked ``FOR UPDATE`` (so a
  reaper's concurrent epoch bump is seen: the lock waits, then re-reads the row), the rows of
  those runs upserted, the written keys returned.
"""

from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from ductwork.engine import direct
from ductwork.engine._group import GroupCommit, Outcome
from ductwork.engine.schema import run, step

if TYPE_CHECKING:
    from ductwork.engine.store import Claimed, Store

__all__ = ["submit"]

_COLUMNS = [c.name for c in step.c]
_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("run_id", "step_key"))
_SQLITE_FENCED_UPSERT = (
    f"INSERT INTO {step.name} ({', '.join(_COLUMNS)})"
    f" SELECT {', '.join(':' + c for c in _COLUMNS)}"
    f" WHERE EXISTS (SELECT 1 FROM {run.name} WHERE id = :run_id AND lease_epoch = :epoch"
    " AND status = 'running')"
    f" ON CONFLICT (run_id, step_key) DO UPDATE SET {_UPDATE}"
)
_PG_TYPES = {
    "run_id": "varchar",
    "step_key": "varchar",
    "status": "varchar",
    "attempt": "integer",
    "output": "text",
    "error": "text",
    "started_at": "bigint",
    "finished_at": "bigint",
    "wake_at": "bigint",
    "signal": "varchar",
    "epoch": "integer",
}
assert set(_PG_TYPES) == set(_COLUMNS), "a step column is missing from the fenced upsert"
_PG_FENCED_UPSERT = text(
    "WITH v AS (SELECT * FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_PG_TYPES[c]}[])" for c in _COLUMNS)
    + f") AS v({', '.join(_COLUMNS)})),"
    f" held AS (SELECT id, lease_epoch FROM {run.name}"
    f" WHERE id IN (SELECT run_id FROM v) AND status = 'running' FOR UPDATE)"
    f" INSERT INTO {step.name} ({', '.join(_COLUMNS)})"
    f" SELECT {', '.join('v.' + c for c in _COLUMNS)} FROM v"
    " JOIN held ON held.id = v.run_id AND held.lease_epoch = v.epoch"
    f" ON CONFLICT (run_id, step_key) DO UPDATE SET {_UPDATE}"
    " RETURNING run_id"
)


async def submit(store: Store, claimed: Claimed, values: dict[str, Any]) -> bool:
    """Commit one step row with whatever else is pending; whether the fence let it through."""
    if store.dialect == "sqlite":  # the store's group commit, shared with its other writers
        return await direct.batched(
            store, lambda conn: conn.execute(_SQLITE_FENCED_UPSERT, values).rowcount == 1
        )
    batcher = _BATCHERS.get(store)
    if batcher is None:
        batcher = _BATCHERS[store] = GroupCommit(functools.partial(_commit_pg, store))
    return bool(await batcher.submit(values))


async def _commit_pg(store: Store, rows: list[dict[str, Any]]) -> list[Outcome]:
    """One statement for the batch: each row written if its run is still held (fenced)."""
    return [(True, ok) for ok in await _write_pg(store, rows)]


async def _write_pg(store: Store, rows: list[dict[str, Any]]) -> list[bool]:
    columns = {c: [values[c] for values in rows] for c in _COLUMNS}
    async with store.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        held = {r.run_id for r in await conn.execute(_PG_FENCED_UPSERT, columns)}
    return [values["run_id"] in held for values in rows]


_BATCHERS: weakref.WeakKeyDictionary[Store, GroupCommit[dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)
