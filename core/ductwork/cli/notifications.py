"""``ductwork notify log|prune``: the delivery log (added to the ``notify`` group)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from ductwork.cli.state import State, common, limit, pass_state, with_client

if TYPE_CHECKING:
    from ductwork.client import Ductwork

__all__ = ["COMMANDS", "notify_log", "notify_prune"]

STATUS_STYLE = {"sent": "green", "failed": "red", "pending": "yellow"}


def when(text: str | None, flag: str) -> datetime | None:
    """``--since``/``--until``: a duration ago (``30m``, ``2h``, ``7d``) or an ISO 8601 time.

    A time without a zone is UTC.
    """
    if text is None:
        return None
    from ductwork.config.durations import parse_duration
    from ductwork.errors import ValidationError

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"{flag}: {text!r} is neither a duration ago (30m, 2h, 7d) nor an ISO 8601 time "
            "(2026-01-31T09:00)"
        ) from None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _short(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@click.command("log")
@click.option(
    "--status", type=click.Choice(["pending", "sent", "failed"]), default=None, help="Only these."
)
@click.option(
    "--message", default=None, help="notification:message, or a notification's tag for all."
)
@click.option("--to", "recipient", default=None, help="Only sends to this recipient.")
@click.option("--since", default=None, help="Created since: 2h (ago) or 2026-01-31T09:00 (UTC).")
@click.option("--until", default=None, help="Created before: 30m (ago) or an ISO 8601 time.")
@limit(100, "entries")
@common
@pass_state
def notify_log(
    state: State,
    status: str | None,
    message: str | None,
    recipient: str | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> None:
    """Sends from the delivery log, newest first (data with secrets redacted; no bodies)."""
    start, end = when(since, "--since"), when(until, "--until")

    async def body(dw: Ductwork) -> list[Any]:
        return await dw.notifications.log(
            status=status, message=message, recipient=recipient, since=start, until=end, limit=limit
        )

    found = with_client(state, body)

    def human() -> None:
        from ductwork.cli.output import Cell, Column, print_table

        print_table(
            (
                Column("id", shrinks=False),
                "created",
                Column("status", shrinks=False),
                "message",
                "channel",
                "provider",
                "to",
                "attempts",
                "took",
                "error",
            ),
            [
                (
                    d.id,
                    _short(d.created_at),
                    Cell(d.status, STATUS_STYLE.get(d.status, "")),
                    d.message or f"{d.notification} (ad hoc)",
                    d.channel,
                    d.provider,
                    ", ".join(d.to),
                    str(d.attempts),
                    "" if d.duration is None else f"{d.duration:.3f}s",
                    d.error or "",
                )
                for d in found
            ],
        )

    state.emit([d.to_dict() for d in found], human)


@click.command("prune")
@click.option(
    "--older-than",
    default=None,
    help="Remove entries created before this long ago (30d, 12h …) "
    "[default: the env's engine.retention.notifications].",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@common
@pass_state
def notify_prune(state: State, older_than: str | None, dry_run: bool) -> None:
    """Remove delivery-log entries past their age (the workers do it too, every minute)."""
    from ductwork.config.durations import parse_duration
    from ductwork.errors import ValidationError

    async def body(dw: Ductwork) -> int | None:
        from ductwork.engine.deliveries import prune

        retention = dw.jobs.settings().retention
        if older_than is None:
            age = retention.notifications
        else:
            try:
                age = parse_duration(older_than)
            except ValueError as exc:
                raise ValidationError(f"--older-than: {exc}") from None
        if age is None:  # forever
            return None
        return await prune(await dw.jobs.store(), age, batch=retention.batch, dry_run=dry_run)

    count = with_client(state, body)
    verb = "would prune" if dry_run else "pruned"

    def human() -> None:
        if count is None:
            click.echo("kept: engine.retention.notifications is forever (give --older-than)")
        else:
            click.echo(f"{verb} {count} delivery-log entr{'y' if count == 1 else 'ies'}")

    state.emit({"dry_run": dry_run, "pruned": count}, human)


COMMANDS = (notify_log, notify_prune)
