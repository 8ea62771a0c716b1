"""``dw.sessions``: start, decrypt, refresh, revoke and list user sessions.

A session of tag ``users`` (``sessions.users`` in the config) is a row in the engine's store of
the env (SQLite or Postgres, like jobs) plus two tokens handed to the client: an encrypted
access token (compact JWE, see :mod:`ductwork.sessions.tokens`) that carries the session's data
until ``expiry``, and an opaque refresh token that rotates on every use. Keys are read on first
use of the tag (``${secret:…}`` references resolved then, and registered for redaction).

Revocation is checked by :meth:`Sessions.decrypt` with one primary-key lookup; with
``revocation_cache`` set, a "live" answer is kept that long in the cache resource, so a
revocation is seen at once by callers whose entry it deleted and at most
``revocation_cache_ttl`` later by the rest.
"""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pydantic

from ductwork._hints import did_you_mean
from ductwork.errors import (
    NotFoundError,
    ReferenceResolutionError,
    RefreshReuseError,
    SessionExpiredError,
    SessionInvalidError,
    SessionRevokedError,
    ValidationError,
)
from ductwork.processor._base import Group

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.engine.store import Store
    from ductwork.sessions.models import SessionDef
    from ductwork.sessions.tokens import Keyring

__all__ = ["SessionInfo", "SessionTokens", "Sessions"]


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True)
class SessionTokens:
    """What ``start`` and ``refresh`` give: hand ``token`` and ``refresh_token`` to the client."""

    session_id: str
    token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    refresh_expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (datetimes as ISO 8601): for the response to the client."""
        return {
            "session_id": self.session_id,
            "token": self.token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat(),
            "refresh_expires_at": self.refresh_expires_at.isoformat(),
        }


@dataclass(frozen=True)
class SessionInfo:
    """A session as listed: ids and times, never its data or tokens."""

    session_id: str
    status: str  # active, expired, revoked
    created_at: datetime
    refreshed_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (datetimes as ISO 8601)."""
        return {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.__dict__.items()
        }


class Sessions(Group):
    """The product's user sessions, by tag."""

    def __init__(self, client: Ductwork) -> None:
        self._client = client
        self._keyrings: dict[str, Keyring] = {}
        self._models: dict[str, type[pydantic.BaseModel]] = {}

    def definition(self, tag: str) -> SessionDef:
        """The config of session tag ``tag``; :class:`NotFoundError` names the known ones."""
        known = self._client.config.product.sessions
        found = known.get(tag)
        if found is None:
            hint = did_you_mean(tag, known)
            raise NotFoundError(
                f"no session tag {tag!r}{hint} (sessions: {', '.join(sorted(known)) or 'none'})"
            )
        return found

    def keyring(self, tag: str) -> Keyring:
        """The tag's keys, references resolved and checked (once, then reused)."""
        found = self._keyrings.get(tag)
        if found is None:
            found = self._keyrings[tag] = self._build_keyring(tag)
        return found

    def _build_keyring(self, tag: str) -> Keyring:
        from ductwork._redact import register_secret
        from ductwork.config.references import resolve_references
        from ductwork.sessions.tokens import Keyring, parse_key

        config = self._client.config
        fname = str(config.file) if config.file else None
        keys: list[tuple[str, bytes]] = []
        for i, key in enumerate(self.definition(tag).keys):
            path = f"sessions.{tag}.keys[{i}].key"

            def error(_field: str, message: str, path: str = path) -> ReferenceResolutionError:
                return ReferenceResolutionError(message, file=fname, path=path)

            value = resolve_references(key.key, root=config.root, error=error)
            register_secret(value)  # a literal key is hidden too
            keys.append((key.id, parse_key(value, path=path, file=fname)))
        return Keyring.build(self._audience(tag), keys)

    def _audience(self, tag: str) -> str:
        """``<product>/<tag>``: what tokens and stored hashes are bound to."""
        self.definition(tag)
        return f"{self._client.product}/{tag}"

    def _validate(self, tag: str, data: Mapping[str, Any]) -> dict[str, Any]:
        from ductwork.processor._actions import _input_model

        model = self._models.get(tag)
        if model is None:
            model = self._models[tag] = _input_model(f"session_{tag}", self.definition(tag).data)
        try:
            checked = model.model_validate(dict(data))
        except pydantic.ValidationError as exc:  # messages name fields, never their values
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['msg']}" for e in exc.errors()
            )
            raise ValidationError(f"session {tag!r}: invalid data: {problems}") from None
        return checked.model_dump(mode="json")

    async def _store(self, env: str | None) -> Store:
        return await self._client.jobs.store(env)

    def _tokens(
        self, tag: str, session_id: str, data: Mapping[str, Any], refresh: str, now: float
    ) -> SessionTokens:
        definition = self.definition(tag)
        expires = now + definition.expiry
        token = self.keyring(tag).seal(
            {"sid": session_id, "use": "access", "iat": int(now), "exp": expires, "dat": data}
        )
        return SessionTokens(
            session_id,
            token,
            refresh,
            datetime.fromtimestamp(expires, UTC),
            datetime.fromtimestamp(now + definition.refresh_expiry, UTC),
        )

    async def start(
        self, tag: str, data: Mapping[str, Any], *, env: str | None = None
    ) -> SessionTokens:
        """Start a session holding ``data`` (validated against the tag's schema first)."""
        from ductwork.sessions import rows
        from ductwork.sessions.tokens import MAX_TOKEN, hash_refresh, hash_selector, new_refresh

        definition = self.definition(tag)
        checked = self._validate(tag, data)
        keyring = self.keyring(tag)
        session_id = f"ses_{uuid.uuid4().hex}"
        refresh = new_refresh()
        now = time.time()
        sealed = keyring.seal({"sid": session_id, "use": "store", "dat": checked})
        tokens = self._tokens(tag, session_id, checked, refresh, now)
        if len(tokens.token) > MAX_TOKEN:  # decrypt would refuse it: refuse it now
            raise ValidationError(
                f"session {tag!r}: the data makes a {len(tokens.token)}-character token; "
                f"the most a token may be is {MAX_TOKEN}: keep less in the session"
            )
        await rows.insert(
            await self._store(env),
            session_id=session_id,
            tag=tag,
            selector=hash_selector(keyring.audience, checked[definition.selector]),
            sealed=sealed,
            refresh_hash=hash_refresh(keyring.audience, refresh),
            refresh_expires=int((now + definition.refresh_expiry) * 1000),
            now=int(now * 1000),
        )
        return tokens

    async def decrypt(
        self, tag: str, token: str, *, check_revocation: bool = True, env: str | None = None
    ) -> dict[str, Any]:
        """The session's data from ``token``.

        Raises:
            SessionInvalidError: not a token of this product and tag (malformed, modified,
                unknown key). SessionExpiredError: past its expiry. SessionRevokedError: the
                session was revoked (checked unless ``check_revocation=False``).
        """
        claims = self.keyring(tag).open(token, use="access", now=time.time())
        if check_revocation:
            await self._check_live(tag, claims["sid"], env)
        data: dict[str, Any] = claims["dat"]
        return data

    async def _check_live(self, tag: str, session_id: str, env: str | None) -> None:
        from ductwork.sessions import rows

        definition = self.definition(tag)
        cache = definition.revocation_cache
        key = f"sessions:{tag}:{session_id}:live"
        if cache is not None and await self._client.caches.get(cache, key, env=env):
            return
        exists, revoked_at = await rows.revocation(await self._store(env), session_id)
        if not exists or revoked_at is not None:
            raise SessionRevokedError(f"session {session_id} of {tag!r} has been revoked")
        if cache is not None:
            await self._client.caches.set(
                cache, key, True, ttl=definition.revocation_cache_ttl, env=env
            )

    async def refresh(
        self, tag: str, refresh_token: str, *, env: str | None = None
    ) -> SessionTokens:
        """New tokens for the session of ``refresh_token``, which is spent.

        Raises:
            RefreshReuseError: the refresh token was already used; the session is now revoked.
            SessionRevokedError, SessionExpiredError, SessionInvalidError: as their names say.
        """
        from ductwork.sessions import rows
        from ductwork.sessions.tokens import MAX_TOKEN, hash_refresh, new_refresh

        if not isinstance(refresh_token, str) or not 0 < len(refresh_token) <= MAX_TOKEN:
            raise SessionInvalidError("the refresh token is malformed")
        definition = self.definition(tag)
        keyring = self.keyring(tag)
        store = await self._store(env)
        new = new_refresh()
        now = time.time()
        found = await rows.rotate(
            store,
            tag=tag,
            old_hash=hash_refresh(keyring.audience, refresh_token),
            new_hash=hash_refresh(keyring.audience, new),
            new_expires=int((now + definition.refresh_expiry) * 1000),
            now=int(now * 1000),
        )
        if found.outcome == "reuse":
            await self._forget(tag, [found.session_id or ""], env)
            raise RefreshReuseError(
                f"a used refresh token of session {found.session_id} ({tag!r}) was presented "
                "again: the session is revoked"
            )
        if found.outcome == "revoked":
            raise SessionRevokedError(f"session {found.session_id} of {tag!r} has been revoked")
        if found.outcome == "expired":
            raise SessionExpiredError(f"the refresh token of session {found.session_id} expired")
        if found.outcome != "ok" or found.session_id is None or found.sealed is None:
            raise SessionInvalidError(f"unknown refresh token for session tag {tag!r}")
        claims = keyring.open(found.sealed, use="store", now=None)
        if not keyring.is_current(found.sealed):  # sealed under an older key: re-encrypt
            resealed = keyring.seal({"sid": found.session_id, "use": "store", "dat": claims["dat"]})
            await rows.reseal(store, found.session_id, found.sealed, resealed)
        return self._tokens(tag, found.session_id, claims["dat"], new, now)

    async def revoke(self, tag: str, session_id: str, *, env: str | None = None) -> bool:
        """Revoke one session (log out); whether it was live."""
        from ductwork.sessions import rows

        self.definition(tag)
        done = await rows.revoke(
            await self._store(env), tag, session_id, int(time.time() * 1000), "revoke"
        )
        await self._forget(tag, [session_id], env)
        return done

    async def revoke_all(self, tag: str, selector_value: Any, *, env: str | None = None) -> int:
        """Revoke every session of one user (log out everywhere); how many were live."""
        from ductwork.sessions import rows
        from ductwork.sessions.tokens import hash_selector

        selector = hash_selector(self._audience(tag), selector_value)
        ids = await rows.revoke_user(await self._store(env), tag, selector, int(time.time() * 1000))
        await self._forget(tag, ids, env)
        return len(ids)

    async def _forget(self, tag: str, ids: builtins.list[str], env: str | None) -> None:
        cache = self.definition(tag).revocation_cache
        if cache is not None:
            for session_id in ids:
                await self._client.caches.delete(
                    cache, f"sessions:{tag}:{session_id}:live", env=env
                )

    async def list(
        self,
        tag: str,
        selector_value: Any = None,
        *,
        active: bool = True,
        limit: int = 100,
        env: str | None = None,
    ) -> builtins.list[SessionInfo]:
        """Sessions of ``tag`` (of one user with ``selector_value``), newest first."""
        from ductwork.sessions import rows
        from ductwork.sessions.tokens import hash_selector

        audience = self._audience(tag)  # no keys needed to list
        selector = None if selector_value is None else hash_selector(audience, selector_value)
        now = int(time.time() * 1000)
        found = await rows.list_rows(
            await self._store(env), tag, selector, active=active, now=now, limit=limit
        )
        return [
            SessionInfo(
                r.id,
                "revoked"
                if r.revoked_at is not None
                else "active"
                if r.expires_at > now
                else "expired",
                _dt(r.created_at) or datetime.now(UTC),
                _dt(r.refreshed_at),
                _dt(r.expires_at) or datetime.now(UTC),
                _dt(r.revoked_at),
                r.revoked_reason,
            )
            for r in found
        ]

    @staticmethod
    def keygen() -> str:
        """A new 256-bit key, base64url (for ``keys[].key``)."""
        from ductwork.sessions.tokens import keygen

        return keygen()

    async def bind(self, session: tuple[str, str], env: str | None) -> tuple[str, str]:
        """Check a call's ``session=(tag, token)``: ``(tag, session_id)`` for the run to store."""
        tag, token = _pair(session)
        claims = self.keyring(tag).open(token, use="access", now=time.time())
        await self._check_live(tag, claims["sid"], env)
        return tag, claims["sid"]

    async def data_of(self, tag: str, session_id: str, env: str | None) -> dict[str, Any]:
        """The data of a session bound to a durable run (read back when the run executes)."""
        from ductwork.sessions import rows

        sealed = await rows.sealed_data(await self._store(env), tag, session_id)
        if sealed is None:
            raise SessionInvalidError(f"session {session_id} of {tag!r} no longer exists")
        data: dict[str, Any] = self.keyring(tag).open(sealed, use="store", now=None)["dat"]
        return data

    async def of_run(self, run_id: str, env: str | None) -> dict[str, str] | None:
        """The session a stored run was started with (``{"tag", "id"}``), for its replay."""
        import json

        from sqlalchemy import select

        from ductwork.engine.schema import run

        store = await self._store(env)
        async with store.engine.connect() as conn:
            found = (await conn.execute(select(run.c.input).where(run.c.id == run_id))).scalar()
        bound = json.loads(found).get("session") if found else None
        return bound if isinstance(bound, dict) else None


def _pair(session: object) -> tuple[str, str]:
    if (
        not isinstance(session, tuple | list)
        or len(session) != 2
        or not all(isinstance(part, str) for part in session)
    ):
        raise ValidationError("session= takes a pair (session tag, token)")
    return session[0], session[1]
