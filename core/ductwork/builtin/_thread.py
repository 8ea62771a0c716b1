"""One worker thread that runs blocking calls in order, so the event loop never waits on them.

Embedded databases (SQLite, Ladybug) keep one connection that must only ever be used from one
thread: every call on it goes through :meth:`DedicatedThread.run`.

The hand-off is a queue and an asyncio future resolved with ``call_soon_threadsafe``: about
half the event loop's CPU per call of ``run_in_executor`` (no ``concurrent.futures.Future``
with its lock and condition, no chained callbacks), which an SQLite dispatch pays once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

__all__ = ["DedicatedThread"]

T = TypeVar("T")

_Call = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class DedicatedThread:
    """A single worker thread; calls run there one after another."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: SimpleQueue[_Call | None] | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` was not."""
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._queue = SimpleQueue()
            # a daemon: a store left open must not keep the interpreter from exiting (every
            # write a caller was answered for is committed; SQLite's commit is atomic)
            self._thread = threading.Thread(
                target=_serve, args=(self._queue,), name=self.name, daemon=True
            )
            self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread, after whatever is queued there.

        A call whose caller is cancelled before the thread reaches it does not run; one
        already running finishes (its result is dropped).
        """
        if self._queue is None:
            raise RuntimeError(f"{self.name} thread is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, loop, future))
        return await future

    def stop(self) -> None:
        """Let queued calls finish, then end the thread."""
        if self._thread is not None:
            assert self._queue is not None
            self._queue.put(None)
            if self._thread is not threading.current_thread():
                self._thread.join()
            self._thread = self._queue = None


def _serve(queue: SimpleQueue[_Call | None]) -> None:
    while (call := queue.get()) is not None:
        fn, args, loop, future = call
        if future.cancelled():  # its caller gave up before it started
            continue
        try:
            outcome: tuple[Callable[..., None], Any] = (_resolve, fn(*args))
        except BaseException as exc:
            outcome = (_reject, exc)
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it any more
            loop.call_soon_threadsafe(outcome[0], future, outcome[1])


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
