"""The async client: resources by tag, providers chosen by the env."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Self

from ductwork.config.loader import DEFAULT_CONFIG, Config, ResolvedResource
from ductwork.providers.base import Provider

__all__ = ["Ductwork"]


class Ductwork:
    """A product's resources, addressed by tag.

    Build it with :meth:`from_config` and use it as an async context manager so connections
    close. Every call takes ``env=`` to address another environment than the client's.

    Example::

        async with Ductwork.from_config("ductwork.yaml", env="dev") as dw:
            await dw.storage.save("files", "hello.txt", b"hi")
            await dw.events.publish("bus", "user_created", {"id": 1})
    """

    def __init__(self, config: Config, *, env: str | None = None) -> None:
        from ductwork.processor._flights import Flights
        from ductwork.processor.actions import Actions
        from ductwork.processor.caches import Caches
        from ductwork.processor.databases import Databases
        from ductwork.processor.events import Events
        from ductwork.processor.features import Features
        from ductwork.processor.graphs import Graphs
        from ductwork.processor.health import Health
        from ductwork.processor.jobs import Jobs
        from ductwork.processor.notifications import Notifications
        from ductwork.processor.quotas import Fallbacks, Quotas
        from ductwork.processor.sessions import Sessions
        from ductwork.processor.storage import StorageNamespace

        self.config = config
        self.env = config.env_name(env)
        self._providers: dict[tuple[str, str, str], Provider] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._flights = Flights()  # cached calls in progress (single-flight, refreshes)
        self.storage = StorageNamespace(self)
        self.events = Events(self)
        self.databases = Databases(self)
        self.graphs = Graphs(self)
        self.caches = Caches(self)
        self.notifications = Notifications(self)
        self.actions = Actions(self)
        self.jobs = Jobs(self)
        self.features = Features(self)
        self.sessions = Sessions(self)
        self.health = Health(self)
        self.quotas = Quotas(self)
        self.fallbacks = Fallbacks(self)

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] | None = None, *, env: str | None = None
    ) -> Self:
        """Load ``path`` (default ``$DUCTWORK_CONFIG``, else ``./ductwork.yaml``).

        The env is ``env``, else ``$DUCTWORK_ENV``, else the config's ``default_env``.
        """
        if path is None:
            path = os.environ.get("DUCTWORK_CONFIG") or DEFAULT_CONFIG
        return cls(Config.load(Path(path)), env=env)

    @property
    def product(self) -> str:
        """The product's name."""
        return self.config.product.product

    def resolve(self, section: str, tag: str, env: str | None = None) -> ResolvedResource:
        """The resource's provider class and validated options in ``env``."""
        return self.config.resolve(section, tag, env or self.env)

    async def provider(self, section: str, tag: str, env: str | None = None) -> Provider:
        """The opened provider behind ``section.tag`` in ``env`` (opened once, then reused)."""
        env = self.config.env_name(env or self.env)
        key = (section, tag, env)
        found = self._providers.get(key)
        if found is not None:
            return found
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._providers.get(key)
            if found is None:
                found = self.resolve(section, tag, env).build()
                await found.open()
                self._providers[key] = found
        return found

    async def close(self) -> None:
        """Close every opened provider; the first failure is raised after all were tried."""
        errors: list[BaseException] = []
        await self._flights.drain()
        try:
            await self.actions.close()
        except Exception as exc:
            errors.append(exc)
        try:
            await self.jobs.close()
        except Exception as exc:
            errors.append(exc)
        providers, self._providers = list(self._providers.values()), {}
        for provider in reversed(providers):
            try:
                await provider.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Ductwork product={self.product!r} env={self.env!r}>"
