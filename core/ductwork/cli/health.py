"""``ductwork health``: each healthcheck's state as the workers' monitor last stored it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from ductwork.cli.state import State, common, on_store, pass_state

STATUS_STYLE = {"healthy": "green", "unhealthy": "red", "unknown": "yellow"}


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _latency(value: float | None) -> str:
    return "" if value is None else f"{value * 1000:.1f} ms"


@click.command()
@click.option("--wide", "-w", is_flag=True, help="Never shorten a column to fit the terminal.")
@common
@pass_state
def health(state: State, wide: bool) -> None:
    """Each healthcheck of the env: status, latency, since when, last error.

    Exits 1 when a check is unhealthy. Read from the jobs engine's store, where the workers'
    monitor keeps it (see docs/health.md).
    """
    from ductwork.cli.output import Cell, Column, print_table
    from ductwork.health.monitor import read_states

    cfg = state.config()
    env = cfg.env_name(state.env)
    tags = sorted(cfg.product.healthchecks)
    states = on_store(state, lambda store: read_states(store, env, tags)) if tags else {}
    data: list[dict[str, Any]] = [
        {
            "healthcheck": s.tag,
            "status": s.status,
            "latency": s.latency,
            "since": _when(s.since) or None,
            "checked_at": _when(s.checked_at) or None,
            "last_error": s.last_error,
        }
        for s in states.values()
    ]

    def human() -> None:
        if not data:
            click.echo(f"no healthchecks declared (env {env})")
            return
        print_table(
            ("provider", "status", "latency", "since", Column("last error")),
            [
                (
                    s.tag,
                    Cell(s.status, STATUS_STYLE[s.status]),
                    _latency(s.latency),
                    _when(s.since),
                    s.last_error or "",
                )
                for s in states.values()
            ],
            title=f"health — env {env}",
            wide=wide,
        )

    state.emit({"env": env, "healthchecks": data}, human)
    if any(s.status == "unhealthy" for s in states.values()):
        raise SystemExit(1)


COMMANDS = (health,)
