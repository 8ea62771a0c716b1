"""``dw.health``: what the health monitor last saw of each healthcheck.

The monitor runs inside ``ductwork worker`` (:mod:`ductwork.health.monitor`): each healthcheck
is a recurring job whose runs probe the provider and store the state in the engine's store,
where every process reads it. A read is served from a per-client cache for at most
:attr:`Health.max_age` seconds (1 s), so quotas and fallbacks can ask on every call: what a
read returns is at most that much older than the store. A check no probe has decided yet is
``unknown``, and an unknown provider counts as healthy.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ductwork._redact import get_logger
from ductwork.errors import NotFoundError
from ductwork.processor._base import Namespace

if TYPE_CHECKING:
    from ductwork.client import Ductwork

__all__ = ["Health", "HealthState", "HealthStatus"]

HealthStatus = Literal["healthy", "unhealthy", "unknown"]
log = get_logger("ductwork.health")


@dataclass(frozen=True)
class HealthState:
    """One healthcheck's last known state."""

    tag: str
    status: HealthStatus
    latency: float | None = None  # seconds, of the last probe
    since: datetime | None = None  # when the status last changed
    last_error: str | None = None
    checked_at: datetime | None = None


class Health(Namespace):
    """Health checks by tag."""

    section = "healthchecks"
    #: seconds a read may be served from this client's cache instead of the store
    max_age: float = 1.0

    def __init__(self, client: Ductwork) -> None:
        super().__init__(client)
        from ductwork.engine.executors import EXECUTORS, register_executor

        if "health.probe" not in EXECUTORS:  # what the workers run for each probe slot
            register_executor("health.probe", _probe)
        self._cache: dict[str, tuple[float, dict[str, HealthState]]] = {}
        self._lock = asyncio.Lock()

    def _known(self, tag: str) -> None:
        checks = self._client.config.product.healthchecks
        if tag not in checks:
            known = ", ".join(sorted(checks)) or "none declared"
            raise NotFoundError(f"no healthcheck {tag!r} (healthchecks: {known})")

    def _fresh(self, env: str) -> dict[str, HealthState] | None:
        found = self._cache.get(env)
        if found is not None and time.monotonic() - found[0] < self.max_age:
            return found[1]
        return None

    async def status(self, env: str | None = None) -> dict[str, HealthState]:
        """Every healthcheck's state in ``env`` (at most :attr:`max_age` seconds old).

        While one caller reads the store, the others get the previous read rather than queue
        behind it (so a slow store never holds up the calls that ask).
        """
        checks = self._client.config.product.healthchecks
        if not checks:
            return {}
        env_name = self._client.config.env_name(env or self._client.env)
        found = self._fresh(env_name)
        if found is not None:
            return found
        previous = self._cache.get(env_name)
        if previous is not None and self._lock.locked():
            return previous[1]
        async with self._lock:
            found = self._fresh(env_name)
            if found is None:
                from ductwork.health.monitor import read_states

                store = await self._client.jobs.store(env_name)
                found = await read_states(store, env_name, checks)
                self._cache[env_name] = (time.monotonic(), found)
        return found

    async def healthy(self, tag: str, env: str | None = None) -> bool:
        """False only when the check ``tag`` is known to be unhealthy.

        When the store cannot be read, the last state read is used (none: healthy), and the
        store is asked again after :attr:`max_age` seconds.
        """
        self._known(tag)
        env_name = self._client.config.env_name(env or self._client.env)
        try:
            states = await self.status(env_name)
        except Exception as exc:  # a signal that cannot be read must not fail the call asking
            log.warning("health state unreadable (%s); using the last known", exc)
            last = self._cache.get(env_name, (0.0, {}))[1]
            self._cache[env_name] = (time.monotonic(), last)
            states = last
        state = states.get(tag)
        return state is None or state.status != "unhealthy"


async def _probe(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    """The jobs engine's executor of ``health.probe`` runs (imports the monitor on first use)."""
    from ductwork.health.monitor import execute

    return await execute(dw, target, data, env)
