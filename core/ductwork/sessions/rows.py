"""Session rows in the engine's store (SQLAlchemy Core, bound parameters only).

The refresh race is settled by one conditional ``UPDATE`` (compare-and-set on ``used_at IS
NULL``): on Postgres the second of two concurrent updates waits for the first's row lock and
then re-checks the condition (so it matches nothing); on SQLite writers are serialised. Whoever
matches zero rows looks at why: a used token is reuse, which revokes the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, update

from ductwork.engine.schema import session, session_refresh

if TYPE_CHECKING:
    from ductwork.engine.store import Store

__all__ = [
    "Rotated",
    "insert",
    "list_rows",
    "reseal",
    "revocation",
    "revoke",
    "revoke_user",
    "rotate",
    "sealed_data",
]

Outcome = Literal["ok", "invalid", "expired", "revoked", "reuse"]


@dataclass(frozen=True)
class Rotated:
    """What :func:`rotate` found: ``ok`` with the session's id and sealed data, or why not."""

    outcome: Outcome
    session_id: str | None = None
    sealed: str | None = None


async def insert(
    store: Store,
    *,
    session_id: str,
    tag: str,
    selector: str,
    sealed: str,
    refresh_hash: str,
    refresh_expires: int,
    now: int,
) -> None:
    """A new session and its first refresh token, in one transaction."""
    async with store.tx() as conn:
        await conn.execute(
            session.insert().values(
                id=session_id,
                tag=tag,
                selector=selector,
                sealed=sealed,
                created_at=now,
                expires_at=refresh_expires,
            )
        )
        await conn.execute(
            session_refresh.insert().values(
                hash=refresh_hash, session_id=session_id, issued_at=now, expires_at=refresh_expires
            )
        )


async def rotate(
    store: Store, *, tag: str, old_hash: str, new_hash: str, new_expires: int, now: int
) -> Rotated:
    """Spend refresh token ``old_hash`` and store ``new_hash`` in its place, or say why not.

    A used token (reuse, or the loser of a concurrent refresh) revokes the session, committed
    before this returns.
    """
    live = select(session.c.id).where(session.c.tag == tag, session.c.revoked_at.is_(None))
    spend = (
        update(session_refresh)
        .where(
            session_refresh.c.hash == old_hash,
            session_refresh.c.used_at.is_(None),
            session_refresh.c.expires_at > now,
            session_refresh.c.session_id.in_(live.scalar_subquery()),
        )
        .values(used_at=now)
        .returning(session_refresh.c.session_id)
    )
    async with store.tx() as conn:
        session_id = (await conn.execute(spend)).scalar()
        if session_id is not None:
            await conn.execute(
                session_refresh.insert().values(
                    hash=new_hash, session_id=session_id, issued_at=now, expires_at=new_expires
                )
            )
            sealed = (
                await conn.execute(
                    update(session)
                    .where(session.c.id == session_id)
                    .values(refreshed_at=now, expires_at=new_expires)
                    .returning(session.c.sealed)
                )
            ).scalar()
            return Rotated("ok", session_id, sealed)
        found = (
            await conn.execute(
                select(session_refresh.c.used_at, session_refresh.c.expires_at, session.c.id)
                .join(session, session.c.id == session_refresh.c.session_id)
                .add_columns(session.c.revoked_at)
                .where(session_refresh.c.hash == old_hash, session.c.tag == tag)
            )
        ).first()
        if found is None:
            return Rotated("invalid")
        if found.revoked_at is not None:
            return Rotated("revoked", found.id)
        if found.used_at is not None:
            await conn.execute(_revoke(now, "reuse").where(session.c.id == found.id))
            return Rotated("reuse", found.id)
        return Rotated("expired", found.id)


def _revoke(now: int, reason: str) -> Any:
    return (
        update(session)
        .where(session.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def reseal(store: Store, session_id: str, old: str, new: str) -> None:
    """Replace the sealed data (re-encrypted under the current key) if nobody else did."""
    async with store.tx() as conn:
        await conn.execute(
            update(session)
            .where(session.c.id == session_id, session.c.sealed == old)
            .values(sealed=new)
        )


async def revocation(store: Store, session_id: str) -> tuple[bool, int | None]:
    """``(exists, revoked_at)`` of a session: one primary-key lookup."""
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(select(session.c.revoked_at).where(session.c.id == session_id))
        ).first()
    return (False, None) if row is None else (True, row.revoked_at)


async def sealed_data(store: Store, tag: str, session_id: str) -> str | None:
    """The sealed data of session ``session_id`` of ``tag`` (for a durable run's mappings)."""
    async with store.engine.connect() as conn:
        return (
            await conn.execute(
                select(session.c.sealed).where(session.c.id == session_id, session.c.tag == tag)
            )
        ).scalar()


async def revoke(store: Store, tag: str, session_id: str, now: int, reason: str) -> bool:
    """Revoke one session; whether it was live."""
    async with store.tx() as conn:
        done = await conn.execute(
            _revoke(now, reason).where(session.c.id == session_id, session.c.tag == tag)
        )
    return bool(done.rowcount)


async def revoke_user(store: Store, tag: str, selector: str, now: int) -> list[str]:
    """Revoke every live session of one user; their ids."""
    async with store.tx() as conn:
        done = await conn.execute(
            _revoke(now, "revoke_all")
            .where(session.c.tag == tag, session.c.selector == selector)
            .returning(session.c.id)
        )
        return list(done.scalars())


async def list_rows(
    store: Store, tag: str, selector: str | None, *, active: bool, now: int, limit: int
) -> Sequence[Any]:
    """Sessions of ``tag`` (of one user when ``selector``), newest first; never their data."""
    query = select(
        session.c.id,
        session.c.created_at,
        session.c.refreshed_at,
        session.c.expires_at,
        session.c.revoked_at,
        session.c.revoked_reason,
    ).where(session.c.tag == tag)
    if selector is not None:
        query = query.where(session.c.selector == selector)
    if active:
        query = query.where(session.c.revoked_at.is_(None), session.c.expires_at > now)
    query = query.order_by(session.c.created_at.desc(), session.c.id).limit(limit)
    async with store.engine.connect() as conn:
        return (await conn.execute(query)).all()
