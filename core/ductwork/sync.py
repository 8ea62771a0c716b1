"""A synchronous facade generated from the async client, for scripts and REPLs.

Nothing is written twice: :class:`SyncDuctwork` wraps a :class:`Ductwork` and runs each of its
coroutine methods to completion on an event loop it owns (an ``asyncio.Runner`` in the calling
thread — no hidden background thread). Namespaces are wrapped the same way, recursively.
Do not use it from inside a running event loop; use the async client there.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from typing import Any, Self

from ductwork.client import Ductwork
from ductwork.config.loader import DEFAULT_CONFIG
from ductwork.processor._base import Group

__all__ = ["SyncDuctwork"]


class _SyncProxy:
    def __init__(self, target: Any, runner: asyncio.Runner) -> None:
        self._target = target
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if isinstance(attr, Group):
            return _SyncProxy(attr, self._runner)
        if inspect.iscoroutinefunction(attr):
            runner = self._runner

            @functools.wraps(attr)
            def call(*args: Any, **kwargs: Any) -> Any:
                return runner.run(attr(*args, **kwargs))

            return call
        if inspect.isasyncgenfunction(attr):

            @functools.wraps(attr)
            def collect(*args: Any, **kwargs: Any) -> list[Any]:
                async def gather() -> list[Any]:
                    return [item async for item in attr(*args, **kwargs)]

                return self._runner.run(gather())

            return collect
        return attr

    def __repr__(self) -> str:
        return f"<sync {self._target!r}>"


class SyncDuctwork(_SyncProxy):
    """The same API as :class:`Ductwork`, blocking. Use ``with``, or call ``close()``."""

    def __init__(self, client: Ductwork) -> None:
        super().__init__(client, asyncio.Runner())

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] = DEFAULT_CONFIG, *, env: str | None = None
    ) -> Self:
        """Load ``path`` as :meth:`Ductwork.from_config` does."""
        return cls(Ductwork.from_config(path, env=env))

    def close(self) -> None:
        """Close connections and the event loop."""
        try:
            self._runner.run(self._target.close())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
