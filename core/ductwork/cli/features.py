"""``ductwork features ls|run|show|replay|resume|cancel|signal``.

``show`` draws the run's timeline: one bar per step on a shared time axis, coloured by status,
with durations — so concurrency (bars side by side) and where time went are visible.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ductwork.cli.state import State, common, input_option, json_arg, limit, pass_state, with_client

if TYPE_CHECKING:
    from rich.table import Table

    from ductwork.client import Ductwork
    from ductwork.processor.features import FeatureRun

T = TypeVar("T")
COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "waiting": "yellow",
    "skipped": "bright_black",
    "running": "cyan",
}
BAR = 40


def _summary(found: FeatureRun) -> Callable[[], None]:
    return lambda: click.echo(f"{found.run_id}: {found.tag} {found.status}")


@click.group()
def features() -> None:
    """Feature runs: list, run, show (timeline), replay, resume, cancel, signal."""


@features.command("ls")
@click.option("--tag", default=None, help="Only runs of this feature.")
@click.option("--status", default=None, help="queued, running, waiting, succeeded, failed …")
@limit(50, "runs")
@common
@pass_state
def features_ls(state: State, tag: str | None, status: str | None, limit: int) -> None:
    """The product's features, and their runs newest first."""

    async def both(dw: Ductwork) -> tuple[list[str], list[Any]]:
        return dw.features.tags(), await dw.features.list(tag, status=status, limit=limit)

    tags, runs = with_client(state, both)

    def human() -> None:
        click.echo(f"features: {', '.join(tags) or 'none'}")
        for job in runs:
            when = job.finished_at or job.created_at
            stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else ""
            click.echo(f"{job.job_id}  {job.status:<9}  {job.target:<20}  {stamp}")

    state.emit({"features": tags, "runs": [j.to_dict() for j in runs]}, human)


@features.command("run")
@click.argument("tag")
@input_option
@click.option("--no-wait", is_flag=True, help="Store the run for the workers and return.")
@click.option("--idempotency-key", default=None, help="A key seen before returns that run.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the output.")
@common
@pass_state
def features_run(
    state: State,
    tag: str,
    input_: str | None,
    no_wait: bool,
    idempotency_key: str | None,
    timeout: float | None,
) -> None:
    """Run a feature; print its output (or, with --no-wait, its run id)."""
    data = json_arg(input_, "--input") or {}

    async def go(dw: Ductwork) -> Any:
        return await dw.features.run(
            tag, data, wait=not no_wait, idempotency_key=idempotency_key, timeout=timeout
        )

    result = with_client(state, go)
    if no_wait:
        state.emit(result.to_dict(), _summary(result))
    else:
        state.emit(result)


@features.command("show")
@click.argument("run_id")
@common
@pass_state
def features_show(state: State, run_id: str) -> None:
    """A run: status, output, and its timeline drawn as one bar per step."""
    found = with_client(state, lambda dw: dw.features.output(run_id))

    def human() -> None:
        from rich.console import Console

        console = Console()
        console.print(
            f"[bold]{found.run_id}[/]  {found.tag}  [{_colour(found.status)}]"
            f"{found.status}[/]  attempt {found.attempt}"
        )
        if found.parent_run_id:
            console.print(f"child run of {found.parent_run_id}", highlight=False)
        console.print(timeline_table(found))
        if found.error:
            console.print(f"[red]error:[/] {found.error}", markup=True, highlight=False)
        if found.status == "succeeded":
            console.print(f"output: {json.dumps(found.output, default=str)}", highlight=False)

    state.emit(found.to_dict(), human)


def _colour(status: str) -> str:
    return COLOURS.get(status, "white")


def timeline_table(found: FeatureRun, width: int = BAR) -> Table:
    """One row per step: key, status, duration, and a bar placed on the run's time axis."""
    from rich.table import Table
    from rich.text import Text

    now = datetime.now(UTC)
    spans = [(s, s["started_at"], s["finished_at"] or now) for s in found.steps if s["started_at"]]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("step", "status", "took", "timeline"):
        table.add_column(name, no_wrap=True)
    if not spans:
        return table
    start = min(a for _, a, _ in spans)
    end = max(b for _, _, b in spans)
    total = max((end - start).total_seconds(), 1e-3)
    for s, a, b in spans:
        offset = int((a - start).total_seconds() / total * width)
        length = max(1, round((b - a).total_seconds() / total * width))
        length = min(length, width - offset) or 1
        bar = Text(" " * offset)
        bar.append("█" * length, style=_colour(s["status"]))
        took = "" if s["duration_ms"] is None else _took(s["duration_ms"])
        table.add_row(s["key"], Text(s["status"], style=_colour(s["status"])), took, bar)
    table.add_row("", "", "", Text(f"0{' ' * (width - 8)}{_took(int(total * 1000)):>7}"))
    return table


def _took(ms: int) -> str:
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


@features.command("replay")
@click.argument("run_id")
@click.option("--from-step", default=None, help="Re-run from this step (earlier results reused).")
@common
@pass_state
def features_replay(state: State, run_id: str, from_step: str | None) -> None:
    """Start a NEW run with the original input (reusing results before --from-step)."""
    found = with_client(state, lambda dw: dw.features.replay(run_id, from_step))
    state.emit(found.to_dict(), _summary(found))


@features.command("resume")
@click.argument("run_id")
@click.option("--from-step", default=None, help="Re-run this step and what came after it.")
@common
@pass_state
def features_resume(state: State, run_id: str, from_step: str | None) -> None:
    """Continue the SAME failed, cancelled or waiting run (completed steps are kept)."""
    found = with_client(state, lambda dw: dw.features.resume(run_id, from_step))
    state.emit(found.to_dict(), _summary(found))


@features.command("cancel")
@click.argument("run_id")
@common
@pass_state
def features_cancel(state: State, run_id: str) -> None:
    """Cancel a run (a running one stops at its next heartbeat)."""
    found = with_client(state, lambda dw: dw.features.cancel(run_id))
    state.emit(found.to_dict(), _summary(found))


@features.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option("--payload", default=None, help="The signal's payload as JSON.")
@common
@pass_state
def features_signal(state: State, run_id: str, name: str, payload: str | None) -> None:
    """Send signal NAME to a run waiting for it."""
    data = json_arg(payload, "--payload")
    found = with_client(state, lambda dw: dw.features.signal(run_id, name, data))
    state.emit(found.to_dict(), _summary(found))


COMMANDS = (features,)
