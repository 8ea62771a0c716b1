"""Circuit breakers per provider target, their state held in a cache.

States: **closed** (calls pass; consecutive failures are counted) → **open** after
``failures`` consecutive failures, or a failure ``rate`` over ``window`` once ``min_calls``
were made (calls are refused without being sent) → **half-open** once ``cooldown`` has
passed since it opened: one caller wins the probe (an atomic ``add``) and its call decides —
success closes the circuit, failure opens it again for another cooldown.

The state is a few keys in a :class:`~ductwork.providers.cache.Cache`: the embedded
in-process cache by default, or a cache resource (Redis) named by ``breaker.cache`` so every
process of a fleet sees the same circuit. Times come from an injectable clock (seconds, the
same epoch in every process: ``time.time`` by default), so tests control the cooldown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ductwork.providers.cache import Cache
from ductwork.resilience.models import BreakerDef

__all__ = ["Breaker", "BreakerState", "Permit"]

BreakerState = Literal["closed", "open", "half_open"]
Permit = Literal["closed", "probe"]  # how a call was let through
PROBE_HOLD = 60.0  # a probe's claim expires after this (a crashed prober frees it)


@dataclass(frozen=True)
class Breaker:
    """The breaker of one target: ``key`` prefixes its keys in ``cache``."""

    cache: Cache
    key: str
    spec: BreakerDef
    clock: Callable[[], float]

    async def _opened_at(self) -> float | None:
        raw = await self.cache.get(f"{self.key}:open")
        return None if raw is None else float(raw)

    async def state(self) -> BreakerState:
        """The circuit's state now."""
        opened = await self._opened_at()
        if opened is None:
            return "closed"
        return "open" if self.clock() < opened + self.spec.cooldown else "half_open"

    async def allow(self) -> Permit | None:
        """Whether a call may go now: ``"closed"``, ``"probe"`` (half-open), or None (open)."""
        opened = await self._opened_at()
        if opened is None:
            return "closed"
        if self.clock() < opened + self.spec.cooldown:
            return None
        hold = max(PROBE_HOLD, self.spec.cooldown)
        won = await self.cache.add(f"{self.key}:probe", b"1", ttl=hold)
        return "probe" if won else None

    async def record(self, permit: Permit, ok: bool) -> None:
        """The outcome of a call ``allow`` let through."""
        if permit == "probe":
            if ok:
                await self._close()
            else:
                await self._open()
            await self.cache.delete(f"{self.key}:probe")
            return
        if ok:
            await self.cache.delete(f"{self.key}:fails")
        else:
            streak = await self.cache.incr(f"{self.key}:fails")
            if streak >= self.spec.failures:
                await self._open()
                return
        if self.spec.rate is not None:
            await self._rate(ok)

    async def release(self) -> None:
        """Give the probe back without an outcome (the call was refused before it was sent)."""
        await self.cache.delete(f"{self.key}:probe")

    async def _rate(self, ok: bool) -> None:
        window = int(self.clock() // self.spec.window)
        ttl = 2 * self.spec.window
        calls = await self.cache.incr(f"{self.key}:calls:{window}", ttl=ttl)
        if ok:
            return
        failed = await self.cache.incr(f"{self.key}:failed:{window}", ttl=ttl)
        rate = self.spec.rate or 1.0
        if calls >= self.spec.min_calls and failed / calls >= rate:
            await self._open()

    async def _open(self) -> None:
        await self.cache.set(f"{self.key}:open", repr(self.clock()).encode())
        await self.cache.delete(f"{self.key}:fails")

    async def _close(self) -> None:
        await self.cache.delete(f"{self.key}:open")
        await self.cache.delete(f"{self.key}:fails")
