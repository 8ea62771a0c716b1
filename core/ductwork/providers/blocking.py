"""A private thread pool for providers whose SDK blocks (boto3, google-cloud-storage, …).

Features: :class:`BlockingPool` runs a blocking call on the provider's own named threads so the
event loop never waits, and turns what the call raises into ductwork's errors with the provider's
own translator. Ductwork's errors raised inside the call pass through untouched. ``run`` (no
translation) serves clean-up calls that must not replace the error already in flight.

Configuration: the number of threads and their name prefix, given by the provider at ``open``.

Errors: whatever ``translate`` returns for an exception from the call, chained to it. A call on a
pool that was shut down raises :class:`RuntimeError` (a provider used after ``close``).

Ordering: calls run concurrently, up to the number of threads; each awaits its own result.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ductwork.errors import DuctworkError

__all__ = ["BlockingPool"]

T = TypeVar("T")


class BlockingPool:
    """``workers`` threads named ``name-N`` for one provider's blocking SDK calls."""

    __slots__ = ("_executor",)

    def __init__(self, workers: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a pool thread; its exceptions propagate as raised."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def call(
        self,
        translate: Callable[[Exception], BaseException],
        fn: Callable[..., T],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """Like :meth:`run`, raising ``translate(exc)`` (chained) for an SDK exception."""
        try:
            return await self.run(fn, *args, **kwargs)
        except DuctworkError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    def shutdown(self) -> None:
        """Stop taking calls; queued ones are cancelled, running ones finish on their thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)
