"""``ductwork worker`` and ``ductwork jobs ls|show|cancel|pause|resume|retry``."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ductwork.cli.app import State, cli, common, pass_state
from ductwork.cli.resources import _run


@cli.command()
@click.option("--concurrency", "-n", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--queues", "-q", default=None, help="Comma-separated queues [default: all].")
@click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds in-flight runs may take to finish on SIGTERM before they are released.",
)
@click.option("--no-scheduler", is_flag=True, help="Do not fire schedule slots from this worker.")
@common
@pass_state
def worker(
    state: State, concurrency: int, queues: str | None, grace: float, no_scheduler: bool
) -> None:
    """Claim and run due jobs until SIGTERM (finishes or releases in-flight runs)."""

    async def main() -> None:
        from ductwork.engine.worker import Worker

        async with state.client() as dw:
            settings = dw.jobs.settings()
            store = await dw.jobs.store()
            names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
            limits = {q: s.concurrency for q, s in settings.queues.items() if s.concurrency}
            w = Worker(
                dw,
                store,
                concurrency=concurrency,
                queues=names,
                lease=settings.lease,
                heartbeat=settings.heartbeat,
                poll_interval=settings.poll_interval,
                grace=grace,
                limits=limits,
                scheduler=not no_scheduler,
                listen_url=settings.url,
            )
            click.echo(f"worker {w.id} on {store.url} (env {dw.env}, concurrency {concurrency})")
            await w.serve()
            click.echo(f"worker {w.id} stopped after {w.executed} run(s)")

    asyncio.run(main())


@cli.group()
def jobs() -> None:
    """Dispatched jobs: list, show, cancel, pause, resume, retry."""


def _row(job: Any) -> list[str]:
    when = job.next_run_at or job.finished_at or job.scheduled_at
    return [
        job.job_id,
        job.status,
        job.kind,
        job.target,
        when.isoformat(timespec="seconds") if when else "",
        f"{job.attempt}/{job.max_attempts}",
    ]


@jobs.command("ls")
@click.option("--status", default=None, help="scheduled, queued, running, succeeded, failed …")
@click.option("--kind", default=None, help="storage.save, events.publish, databases.action …")
@click.option("--tag", default=None, help="The resource tag.")
@click.option("--limit", type=int, default=50, show_default=True)
@common
@pass_state
def jobs_ls(
    state: State, status: str | None, kind: str | None, tag: str | None, limit: int
) -> None:
    """List jobs, newest first."""
    found = _run(state, lambda dw: dw.jobs.list(status=status, kind=kind, tag=tag, limit=limit))

    def human() -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table("job", "status", "kind", "target", "when", "attempts")
        for job in found:
            table.add_row(*_row(job))
        Console().print(table)

    state.emit([j.to_dict() for j in found], human)


@jobs.command("show")
@click.argument("job_id")
@common
@pass_state
def jobs_show(state: State, job_id: str) -> None:
    """A job and its timeline."""

    async def both(dw: Any) -> tuple[Any, Any]:
        return await dw.jobs.get(job_id), await dw.jobs.timeline(job_id)

    job, events = _run(state, both)
    data = {**job.to_dict(), "timeline": [{**e, "at": e["at"].isoformat()} for e in events]}
    state.emit(data)


def _action(name: str) -> None:
    @jobs.command(name)
    @click.argument("job_id")
    @common
    @pass_state
    def command(state: State, job_id: str) -> None:
        job = _run(state, lambda dw: getattr(dw.jobs, name)(job_id))
        state.emit(job.to_dict(), lambda: click.echo(f"{job.job_id}: {job.status}"))

    command.__doc__ = {
        "cancel": "Cancel a job (a running one is asked to stop).",
        "pause": "Pause a waiting run or a schedule.",
        "resume": "Resume a paused run or schedule.",
        "retry": "Run a failed or cancelled run again.",
    }[name]


for _name in ("cancel", "pause", "resume", "retry"):
    _action(_name)
