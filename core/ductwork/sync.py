"""A synchronous facade generated from the async client, for web apps, scripts and notebooks.

Nothing is written twice: :class:`SyncDuctwork` wraps a :class:`Ductwork` and submits each of
its coroutine methods to one event loop the facade owns, running in a background thread
(anyio's blocking portal). So any number of threads may share one client (Django or Flask
under a threaded server), and it works from inside a running event loop too (Jupyter): the
call blocks its caller, never the client's loop. ``close()`` drains the loop and stops it.

Namespaces are wrapped the same way, recursively. Async iterators (``storage.stream``,
``actions.stream``) become real iterators that fetch one item at a time (``with`` closes them
early, and opens one that is also an async context manager; their public attributes, such as
a stream's ``status`` and ``headers``, read through); async context managers
(``databases.transaction``) become context managers; plain functions passed as callbacks (an
event handler) run in worker threads, so they may block and may use the sync client. Errors
are the async client's own ``DuctworkError`` types, raised in the calling thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Self

from ductwork.client import Ductwork
from ductwork.errors import DuctworkError

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

__all__ = ["SyncDuctwork"]


class _Portal:
    """The client's event loop in its own daemon thread; ``call`` is safe from any thread."""

    def __init__(self) -> None:
        from anyio.from_thread import start_blocking_portal

        self._stack = contextlib.ExitStack()
        self.portal: BlockingPortal = self._stack.enter_context(
            start_blocking_portal(name="ductwork-sync")
        )
        # Calls go straight to the portal's loop: one thread-safe hand-over each way, without
        # the task group and cancel scope that ``portal.call`` adds (about half the overhead).
        self.loop: asyncio.AbstractEventLoop = self.portal.call(_running_loop)
        self.thread = self.portal.call(threading.get_ident)
        self._closed = False
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise DuctworkError("this SyncDuctwork is closed")
        if os.getpid() != self._pid:  # the loop's thread did not survive the fork
            raise DuctworkError(
                "this SyncDuctwork was opened before the process forked; open one in each "
                "worker process (after the fork: no gunicorn --preload, or a post_fork hook)"
            )
        if threading.get_ident() == self.thread:
            raise RuntimeError(
                "SyncDuctwork was called from its own event loop (it would wait for itself); "
                "use the async client (SyncDuctwork.client) in async code run by it"
            )
        awaitable = func(*args)
        if not asyncio.iscoroutine(awaitable):  # __anext__, aclose: awaitables, not coroutines
            awaitable = _await(awaitable)
        future = asyncio.run_coroutine_threadsafe(awaitable, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the caller was interrupted: stop the call on the loop too
            raise

    def stop(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stack.close()


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class _SyncIterator(Iterator[Any]):
    """An async iterator read one item per call on the client's loop: bounded memory."""

    def __init__(self, portal: _Portal, source: AsyncIterator[Any]) -> None:
        self._portal = portal
        self._source = source
        self._done = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            return self._portal.call(self._source.__anext__)
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None

    def close(self) -> None:
        """Stop early: the async iterator is closed on the loop (its ``finally`` blocks run)."""
        if not self._done:
            self._done = True
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                self._portal.call(aclose)

    def __enter__(self) -> Self:
        if hasattr(self._source, "__aenter__"):  # a stream that opens on entry (actions.stream)
            self._portal.call(self._source.__aenter__)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        """The source's public attributes (a stream's ``status``, ``headers``)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.__dict__["_source"], name)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class _SyncContext:
    """An async context manager entered and exited on the client's loop."""

    def __init__(self, portal: _Portal, source: Any) -> None:
        self._portal = portal
        self._source = source

    def __enter__(self) -> Any:
        return _wrap(self._portal, self._portal.call(self._source.__aenter__))

    def __exit__(self, *exc: Any) -> bool | None:
        return bool(self._portal.call(self._source.__aexit__, *exc))


def _wrap(portal: _Portal, value: Any) -> Any:
    """A result as the sync world sees it: iterators, contexts and groups of calls wrapped."""
    if hasattr(value, "__anext__"):
        return _SyncIterator(portal, value)
    if _has_async_methods(value):  # a namespace, a transaction, a provider
        return _SyncProxy(value, portal)
    if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
        return _SyncContext(portal, value)
    return value


_ASYNC_TYPES: dict[type, bool] = {}


def _async_type(cls: type) -> bool:
    found = _ASYNC_TYPES.get(cls)
    if found is None:
        found = _ASYNC_TYPES[cls] = _has_async_api(cls)
    return found


def _has_async_api(cls: type) -> bool:
    from ductwork.processor._base import Group
    from ductwork.providers.base import Provider

    if issubclass(cls, Group | Provider):
        return True
    if not cls.__module__.split(".")[0].startswith("ductwork"):
        return False  # only ductwork's own objects (a transaction, a provider) are wrapped
    return any(
        inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_")
    )


def _has_async_methods(value: Any) -> bool:
    return not isinstance(value, type) and _async_type(type(value))


def _callback(value: Any) -> Any:
    """A plain function handed to the async API (an event handler) as a coroutine function.

    It runs in a worker thread, so it may block and may call the sync client itself without
    holding up the client's loop.
    """
    if isinstance(value, type) or not callable(value) or inspect.iscoroutinefunction(value):
        return value
    if not (inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value)):
        return value  # an object that is also callable (a model, an event): data, not a callback

    @functools.wraps(value)
    async def in_thread(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(value, *args, **kwargs)

    return in_thread


class _SyncProxy:
    def __init__(self, target: Any, portal: _Portal) -> None:
        self._target = target
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        portal = self._portal
        if inspect.isasyncgenfunction(attr):

            @functools.wraps(attr)
            def iterate(*args: Any, **kwargs: Any) -> _SyncIterator:
                return _SyncIterator(portal, attr(*args, **kwargs))

            return iterate
        if inspect.iscoroutinefunction(attr):

            @functools.wraps(attr)
            def call(*args: Any, **kwargs: Any) -> Any:
                args = tuple(map(_callback, args))
                kwargs = {k: _callback(v) for k, v in kwargs.items()}
                return _wrap(portal, portal.call(functools.partial(attr, *args, **kwargs)))

            return call
        if inspect.ismethod(attr):

            @functools.wraps(attr)
            def plain(*args: Any, **kwargs: Any) -> Any:
                return _wrap(portal, attr(*args, **kwargs))

            return plain
        return _wrap(portal, attr)

    def __enter__(self) -> Any:
        if hasattr(self._target, "__aenter__"):
            self._portal.call(self._target.__aenter__)
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        if hasattr(self._target, "__aexit__"):
            return bool(self._portal.call(self._target.__aexit__, *exc))
        return None

    def __repr__(self) -> str:
        return f"<sync {self._target!r}>"


class SyncDuctwork(_SyncProxy):
    """The same API as :class:`Ductwork`, blocking and thread-safe.

    Open one at start-up and share it between threads; use ``with``, or call ``close()``.
    """

    def __init__(self, client: Ductwork) -> None:
        super().__init__(client, _Portal())

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] | None = None, *, env: str | None = None
    ) -> Self:
        """Load ``path`` as :meth:`Ductwork.from_config` does."""
        return cls(Ductwork.from_config(path, env=env))

    @property
    def client(self) -> Ductwork:
        """The async client underneath (its calls must run on :meth:`run`'s loop)."""
        target: Ductwork = self._target
        return target

    def run(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``await func(*args)`` on the client's loop and return its result.

        For code written against the async client: ``dw.run(lambda: my_coro(dw.client))``.
        """
        return self._portal.call(func, *args)

    def close(self) -> None:
        """Close connections, then stop the client's loop and its thread. Idempotent."""
        if self._portal._closed:
            return
        try:
            self._portal.call(self._target.close)
        finally:
            self._portal.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
