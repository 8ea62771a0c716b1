"""Group commit: writes that arrive while one commit runs go together in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit", "Outcome"]

I = TypeVar("I")  # noqa: E741 - an item to commit
Outcome = tuple[bool, Any]  # (True, the item's result) or (False, its exception)


class GroupCommit(Generic[I]):
    """One flusher at a time commits every pending item; each caller gets its own outcome.

    ``commit(items)`` writes a batch in one transaction and returns one :data:`Outcome` per
    item, in order. If it raises, every caller of that batch gets the error (none is lost).
    """

    def __init__(self, commit: Callable[[list[I]], Awaitable[list[Outcome]]]) -> None:
        self._commit = commit
        self._pending: list[tuple[I, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> Any:
        """Commit ``item`` with whatever else is pending; its result (or its error, raised)."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        return await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes = await self._commit([item for item, _ in batch])
            except Exception as exc:
                outcomes = [(False, exc)] * len(batch)
            for (_, done), (ok, value) in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if ok:
                    done.set_result(value)
                else:
                    done.set_exception(value)
