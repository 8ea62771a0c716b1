"""``ductwork worker`` and ``ductwork jobs ls|show|cancel|pause|resume|retry``."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ductwork.cli.output import Column
from ductwork.cli.state import State, common, limit, on_store, pass_state

if TYPE_CHECKING:
    from ductwork.engine.spec import Job
    from ductwork.engine.store import Store

T = TypeVar("T")


@click.command()
@click.option(
    "--concurrency",
    "-n",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Runs at once in this worker.",
)
@click.option("--queues", "-q", default=None, help="Comma-separated queues [default: all].")
@click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds in-flight runs may take to finish on SIGTERM before they are released.",
)
@click.option("--no-scheduler", is_flag=True, help="Do not fire schedule slots from this worker.")
@click.option(
    "--burst",
    is_flag=True,
    help="Run what is due (and what becomes due meanwhile) until nothing is left, then exit 0.",
)
@common
@pass_state
def worker(
    state: State,
    concurrency: int,
    queues: str | None,
    grace: float,
    no_scheduler: bool,
    burst: bool,
) -> None:
    """Claim and run due jobs until SIGTERM (finishes or releases in-flight runs).

    With --burst, exit once nothing is due: for cron jobs and CI.
    """

    async def main() -> None:
        from ductwork.engine.worker import Worker

        async with state.client() as dw:
            settings = dw.jobs.settings()
            store = await dw.jobs.store()
            from ductwork.health.monitor import install

            await install(dw)  # each healthcheck's recurring probe (see docs/health.md)
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
                burst=burst,
                retention={
                    **settings.retention.ages(),
                    "notifications": settings.retention.notifications,
                },
                prune_every=settings.retention.every,
                prune_batch=settings.retention.batch,
            )
            click.echo(f"worker {w.id} on {store.url} (env {dw.env}, concurrency {concurrency})")
            await w.serve()
            click.echo(f"worker {w.id} stopped after {w.executed} run(s)")

    asyncio.run(main())


@click.group()
def jobs() -> None:
    """Dispatched jobs: list, show, cancel, pause, resume, retry, prune."""


def _row(job: Job) -> list[str]:
    when = job.next_run_at or job.finished_at or job.scheduled_at
    # a schedule has no attempts of its own: it shows what each of its runs gets
    attempts = f"-/{job.max_attempts}" if job.recurring else f"{job.attempt}/{job.max_attempts}"
    return [
        job.job_id,
        job.status,
        job.kind,
        job.target,
        when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else "",
        attempts,
    ]


@jobs.command("ls")
@click.option("--status", default=None, help="scheduled, queued, running, succeeded, failed …")
@click.option("--kind", default=None, help="storage.save, events.publish, databases.action …")
@click.option("--tag", default=None, help="The resource tag.")
@limit(50, "jobs")
@click.option("--wide", "-w", is_flag=True, help="Never shorten a column to fit the terminal.")
@common
@pass_state
def jobs_ls(
    state: State, status: str | None, kind: str | None, tag: str | None, limit: int, wide: bool
) -> None:
    """List jobs, newest first: one line each, the id always in full (to copy)."""
    from ductwork.engine import admin

    found = on_store(
        state, lambda store: admin.list_jobs(store, status=status, kind=kind, tag=tag, limit=limit)
    )

    def human() -> None:
        from ductwork.cli.output import print_table

        # A terminal narrows only kind, target and when (one word each, so they end in an
        # ellipsis); the id, status and attempts keep their width. A pipe gets every value whole.
        print_table(_COLUMNS, [_row(job) for job in found], wide=wide)

    state.emit([j.to_dict() for j in found], human)


_COLUMNS = (
    Column("job", shrinks=False),
    Column("status", shrinks=False),
    Column("kind", shrinks=True),
    Column("target", shrinks=True),
    Column("when", shrinks=True),
    Column("attempts", shrinks=False),
)


@jobs.command("show")
@click.argument("job_id")
@common
@pass_state
def jobs_show(state: State, job_id: str) -> None:
    """A job and its timeline."""
    from ductwork.engine import admin

    async def both(store: Store) -> tuple[Job, list[dict[str, Any]]]:
        return await admin.get(store, job_id), await admin.timeline(store, job_id)

    job, events = on_store(state, both)
    data = {**job.to_dict(), "timeline": [{**e, "at": e["at"].isoformat()} for e in events]}
    state.emit(data)


def _action(name: str, summary: str) -> None:
    # the help given to click: it reads a command's help when the command is made
    @jobs.command(name, help=summary)
    @click.argument("job_id")
    @common
    @pass_state
    def command(state: State, job_id: str) -> None:
        from ductwork.engine import admin

        job = on_store(state, lambda store: getattr(admin, name)(store, job_id))
        state.emit(job.to_dict(), lambda: click.echo(f"{job.job_id}: {job.status}"))


for _name, _summary in (
    ("cancel", "Cancel a job (a running one is asked to stop)."),
    ("pause", "Pause a waiting run or a schedule."),
    ("resume", "Resume a paused run or schedule."),
    ("retry", "Run a failed or cancelled run again."),
):
    _action(_name, _summary)


@jobs.command("prune")
@click.option(
    "--older-than",
    default=None,
    help="Remove finished runs older than this (30d, 12h …) [default: the env's retention].",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    help="succeeded, failed or cancelled (repeat or comma-separate) [default: all three].",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@common
@pass_state
def jobs_prune(
    state: State, older_than: str | None, statuses: tuple[str, ...], dry_run: bool
) -> None:
    """Remove finished runs (with their events and steps) past their age, in small batches."""
    from ductwork.config.durations import parse_duration
    from ductwork.engine.records import FINISHED
    from ductwork.engine.retention import ages_for, prune
    from ductwork.errors import ValidationError

    names = [s.strip() for item in statuses for s in item.split(",") if s.strip()]
    unknown = [s for s in names if s not in FINISHED]
    if unknown:
        raise ValidationError(
            f"--status: {', '.join(unknown)} is not a finished status "
            f"(only {', '.join(FINISHED)} runs are pruned)"
        )

    async def run(store: Store) -> dict[str, int]:
        return await prune(store, ages, batch=settings.batch, dry_run=dry_run)

    async def _settings() -> Any:
        async with state.client() as dw:
            return dw.jobs.settings().retention

    settings = asyncio.run(_settings())
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            raise ValidationError(f"--older-than: {exc}") from None
        ages = ages_for(names, age)
    else:
        configured = settings.ages()
        ages = {s: configured[s] for s in names} if names else configured
    removed = on_store(state, run)
    total = sum(removed.values())
    verb = "would prune" if dry_run else "pruned"
    detail = ", ".join(f"{s} {n}" for s, n in removed.items())

    def human() -> None:
        click.echo(f"{verb} {total} run(s)" + (f" ({detail})" if detail else ""))

    state.emit({"dry_run": dry_run, "pruned": total, "by_status": removed}, human)


COMMANDS = (worker, jobs)
