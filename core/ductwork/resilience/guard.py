"""What quotas, fallbacks and action limits share per client: clock, randomness, state caches.

:func:`guard_for` gives a client's :class:`Guard` (made on first use). Tests replace its
``clock`` (seconds since the epoch) and ``random`` (a seeded :class:`random.Random`).
State lives in a cache resource when one is named (``cache: redis``, keys under
``<product>:<cache>:``, as ``dw.caches`` writes them), else in the embedded in-process cache
(namespace ``ductwork-resilience:<product>``, shared by the clients of this process).
"""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ductwork.builtin.memory_cache import MemoryCache, MemoryCacheOptions
from ductwork.providers.cache import Cache
from ductwork.resilience.breaker import Breaker

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.resilience.plan import ProviderPlan

__all__ = ["Guard", "guard_for"]

_guards: weakref.WeakKeyDictionary[Ductwork, Guard] = weakref.WeakKeyDictionary()


class Guard:
    """A client's resilience state: where counters and circuits live, the clock, the dice."""

    def __init__(self, product: str) -> None:
        self.product = product
        self.clock: Callable[[], float] = time.time
        self.random = random.Random()
        self.local = MemoryCache(MemoryCacheOptions(namespace=f"ductwork-resilience:{product}"))
        self._breakers: dict[tuple[str, str, str], Breaker] = {}

    async def cache(self, dw: Ductwork, tag: str | None, env: str) -> tuple[Cache, str]:
        """The cache holding state (resource ``tag``, else embedded) and the key prefix."""
        if tag is None:
            return self.local, f"{env}:"
        provider = await dw.provider("caches", tag, env)
        assert isinstance(provider, Cache)
        return provider, f"{self.product}:{tag}:"

    async def breaker(self, dw: Ductwork, provider: ProviderPlan, env: str) -> Breaker | None:
        """The breaker of ``provider``'s target (None when it has none)."""
        spec = provider.breaker
        if spec is None:
            return None
        # one breaker per target, env and state cache: quotas sharing a target share it
        key = (provider.target, env, spec.cache or "")
        found = self._breakers.get(key)
        if found is None or found.spec != spec:
            cache, prefix = await self.cache(dw, spec.cache, env)
            found = Breaker(cache, f"{prefix}breaker:{provider.target}", spec, self.now)
            self._breakers[key] = found
        return found

    def now(self) -> float:
        """The clock's time (tests replace ``clock``; breakers read it through here)."""
        return self.clock()


def guard_for(dw: Ductwork) -> Guard:
    """The client's guard (one per client, made on first use)."""
    found = _guards.get(dw)
    if found is None:
        found = _guards[dw] = Guard(dw.product)
    return found
