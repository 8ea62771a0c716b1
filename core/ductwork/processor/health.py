"""``dw.health``: what the health monitor last saw of each healthcheck.

The monitor (run by ``ductwork worker``) is not built yet: every check reads ``unknown``, and an
unknown provider counts as healthy, so quotas and fallbacks use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ductwork.errors import NotFoundError
from ductwork.processor._base import Namespace

__all__ = ["Health", "HealthState", "HealthStatus"]

HealthStatus = Literal["healthy", "unhealthy", "unknown"]


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

    def _known(self, tag: str) -> None:
        checks = self._client.config.product.healthchecks
        if tag not in checks:
            known = ", ".join(sorted(checks)) or "none declared"
            raise NotFoundError(f"no healthcheck {tag!r} (healthchecks: {known})")

    async def status(self, env: str | None = None) -> dict[str, HealthState]:
        """Every healthcheck's state in ``env``."""
        checks = self._client.config.product.healthchecks
        return {tag: HealthState(tag, "unknown") for tag in checks}

    async def healthy(self, tag: str, env: str | None = None) -> bool:
        """False only when the check ``tag`` is known to be unhealthy."""
        self._known(tag)
        states = await self.status(env)
        return states[tag].status != "unhealthy"
