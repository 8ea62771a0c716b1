"""The ``healthchecks:`` section of ``ductwork.yaml``.

::

    healthchecks:
      sms-a:
        probe: {action: "twilio:status"}     # or database, publish, storage, feature
        interval: 30s
        timeout: 5s
        failures: 3        # consecutive failed probes before a provider is unhealthy
        successes: 1       # consecutive good probes before it is healthy again
        alert: {notification: "mail:provider_down", to: ops@example.com, event: "bus:health"}

A quota or fallback provider names the healthcheck that governs it (``healthcheck: sms-a``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ductwork.config.durations import Duration

__all__ = ["HealthAlert", "HealthcheckDef"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthAlert(_Model):
    """Where a status change is announced: a notification message and/or an event."""

    notification: str | None = Field(None, description="notifier:message sent on a change")
    to: str | list[str] | None = Field(None, description="the notification's recipients")
    event: str | None = Field(None, description="broker:event published on a change")


class HealthcheckDef(_Model):
    """A probe of one provider, run on an interval by the workers."""

    probe: dict[str, Any] = Field(
        description="what to call: one kind (action: app:action, database: db or db:action, "
        "publish: broker:event, storage: tag, feature: tag) with its target, and optionally "
        "input (see docs/health.md)"
    )
    interval: Duration = Field(30.0, gt=0, description="how often the probe runs")
    timeout: Duration = Field(5.0, gt=0, description="a probe slower than this has failed")
    failures: int = Field(3, ge=1, description="consecutive failures before unhealthy")
    successes: int = Field(1, ge=1, description="consecutive successes before healthy again")
    alert: HealthAlert | None = None
