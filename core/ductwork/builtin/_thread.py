"""One worker thread that runs blocking calls in order, so the event loop never waits on them.

Embedded databases (SQLite, Ladybug) keep one connection that must only ever be used from one
thread: every call on it goes through :meth:`DedicatedThread.run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["DedicatedThread"]

T = TypeVar("T")


class DedicatedThread:
    """A single worker thread; calls run there one after another."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` was not."""
        return self._executor is not None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread, after whatever is queued there."""
        if self._executor is None:
            raise RuntimeError(f"{self.name} thread is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def stop(self) -> None:
        """Let queued calls finish, then end the thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
