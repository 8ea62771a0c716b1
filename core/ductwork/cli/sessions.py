"""``ductwork sessions ls|revoke|keygen``.

``ls`` and ``revoke`` take the user as the selector value (``--user``): the store keeps only
its hash, so sessions are listed by id and times, never by their data.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from ductwork.cli.state import State, common, limit, pass_state, with_client

if TYPE_CHECKING:
    from ductwork.client import Ductwork

STATUS_STYLE = {"active": "green", "expired": "bright_black", "revoked": "red"}


@click.group()
def sessions() -> None:
    """User sessions: list, revoke, make a key."""


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@sessions.command("ls")
@click.argument("tag")
@click.option("--user", default=None, help="Only this user's sessions (the selector value).")
@click.option("--all", "everything", is_flag=True, help="Include expired and revoked sessions.")
@limit(100, "sessions")
@common
@pass_state
def sessions_ls(state: State, tag: str, user: str | None, everything: bool, limit: int) -> None:
    """Sessions of TAG, newest first (ids and times; never data or tokens)."""

    async def body(dw: Ductwork) -> list[Any]:
        return await dw.sessions.list(tag, user, active=not everything, limit=limit)

    found = with_client(state, body)

    def human() -> None:
        from ductwork.cli.output import Cell, Column, print_table

        print_table(
            (
                Column("session", shrinks=False),
                Column("status", shrinks=False),
                "created",
                "refreshed",
                "refresh expires",
                "revoked",
            ),
            [
                (
                    s.session_id,
                    Cell(s.status, STATUS_STYLE.get(s.status, "")),
                    _when(s.created_at),
                    _when(s.refreshed_at),
                    _when(s.expires_at),
                    f"{_when(s.revoked_at)} {s.revoked_reason or ''}".strip(),
                )
                for s in found
            ],
        )

    state.emit([s.to_dict() for s in found], human)


@sessions.command("revoke")
@click.argument("tag")
@click.argument("session_id", required=False)
@click.option("--user", default=None, help="Revoke every session of this user instead.")
@common
@pass_state
def sessions_revoke(state: State, tag: str, session_id: str | None, user: str | None) -> None:
    """Revoke session SESSION_ID of TAG, or with --user every session of one user."""
    from ductwork.errors import ValidationError

    if (session_id is None) == (user is None):
        raise ValidationError("give a SESSION_ID or --user, not both")

    async def body(dw: Ductwork) -> int:
        if user is not None:
            return await dw.sessions.revoke_all(tag, user)
        return int(await dw.sessions.revoke(tag, session_id or ""))

    count = with_client(state, body)
    state.emit({"revoked": count}, lambda: click.echo(f"revoked {count} session(s)"))


@sessions.command("keygen")
@common
@pass_state
def sessions_keygen(state: State) -> None:
    """Print a new 256-bit session key (base64url) to store as a secret."""
    from ductwork.sessions.tokens import keygen

    key = keygen()
    state.emit({"key": key}, lambda: click.echo(key))


COMMANDS = (sessions,)
