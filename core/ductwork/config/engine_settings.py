"""The ``engine:`` section: where each env's run store is, and how its workers behave."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

from ductwork.config.durations import Duration, parse_duration
from ductwork.config.resource import Model as _Model

__all__ = ["EngineQueue", "EngineRetention", "EngineSettings", "Retention"]


class EngineQueue(_Model):
    """Settings of one job queue."""

    concurrency: int | None = Field(None, ge=1, description="runs of this queue at once, overall")


def _age(value: object) -> float | None:
    if isinstance(value, str) and value.strip() == "forever":
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, or 'forever'") from None


#: a retention age: a duration, or ``forever`` (kept for ever, read as None)
Retention = Annotated[
    float | None,
    BeforeValidator(_age),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)?|forever)\s*$"},
            ]
        }
    ),
]


class EngineRetention(_Model):
    """How long finished runs (and their events and steps) are kept, by how they ended."""

    succeeded: Retention = Field(7 * 86400.0, description="age of succeeded runs (or forever)")
    failed: Retention = Field(30 * 86400.0, description="age of failed runs (or forever)")
    cancelled: Retention = Field(7 * 86400.0, description="age of cancelled runs (or forever)")
    notifications: Retention = Field(
        30 * 86400.0, description="age of the delivery log's entries (or forever)"
    )
    every: Duration = Field(60.0, description="how often a worker looks for runs to prune")
    batch: int = Field(500, ge=1, le=10_000, description="runs removed per transaction")

    def ages(self) -> dict[str, float | None]:
        """Seconds to keep each finished status (None: for ever)."""
        return {"succeeded": self.succeeded, "failed": self.failed, "cancelled": self.cancelled}


class EngineSettings(_Model):
    """The jobs engine in one env: where its run store is and how workers behave."""

    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the run store (sqlite:///… or postgresql://…); "
        "default: sqlite:///.ductwork/engine.db beside the config",
    )
    lease: Duration = Field(30.0, description="how long a claimed run is held between heartbeats")
    heartbeat: Duration = Field(5.0, description="how often workers extend their leases")
    poll_interval: Duration = Field(0.2, description="how often idle workers look for due runs")
    pool_size: int = Field(
        10,
        ge=1,
        le=1000,
        description="Postgres connections each process keeps for the run store (plus as many "
        "again in overflow); dispatches beyond it wait their turn in arrival order",
    )
    queues: dict[str, EngineQueue] = Field(default_factory=dict)
    retention: EngineRetention = Field(
        default_factory=EngineRetention,
        description="finished runs pruned by the workers after this age (see docs/jobs.md)",
    )
