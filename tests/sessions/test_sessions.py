"""``dw.sessions`` on SQLite and Postgres: start, decrypt, refresh, reuse, revoke, list."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from ductwork.engine.schema import session, session_refresh
from ductwork.errors import (
    ConfigError,
    NotFoundError,
    RefreshReuseError,
    SessionExpiredError,
    SessionInvalidError,
    SessionRevokedError,
    ValidationError,
)
from ductwork.sessions import rows
from sessions_app import client, product
from sqlalchemy import func, select


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def _count(dw, table) -> int:
    store = await dw.jobs.store()
    async with store.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def test_start_decrypt_refresh_round_trip(dw):
    me = user()
    started = await dw.sessions.start("users", {"user_id": me, "plan": "pro", "seats": 3})
    assert started.session_id.startswith("ses_")
    assert started.expires_at < started.refresh_expires_at
    assert await dw.sessions.decrypt("users", started.token) == {
        "user_id": me,
        "plan": "pro",
        "seats": 3,
    }
    again = await dw.sessions.refresh("users", started.refresh_token)
    assert again.session_id == started.session_id
    assert again.token != started.token and again.refresh_token != started.refresh_token
    assert (await dw.sessions.decrypt("users", again.token))["seats"] == 3
    # the old access token stays valid until it expires (stateless), the session is one
    assert (await dw.sessions.decrypt("users", started.token))["user_id"] == me
    # repr never shows the tokens
    assert started.token not in repr(started) and started.refresh_token not in repr(started)


async def test_data_is_validated_before_anything_is_stored(dw):
    before = await _count(dw, session)
    with pytest.raises(ValidationError, match=r"seats: ") as caught:
        await dw.sessions.start("users", {"user_id": "x", "plan": "pro", "seats": "many-secret"})
    assert "many-secret" not in str(caught.value)
    with pytest.raises(ValidationError, match=r"role: Extra inputs"):
        await dw.sessions.start("users", {"user_id": "x", "plan": "pro", "role": "admin"})
    with pytest.raises(ValidationError, match=r"user_id: Field required"):
        await dw.sessions.start("users", {"plan": "pro"})
    with pytest.raises(ValidationError, match="keep less in the session"):
        await dw.sessions.start("users", {"user_id": "x", "plan": "p" * 20_000})
    with pytest.raises(NotFoundError, match="did you mean 'users'"):
        await dw.sessions.start("user", {"user_id": "x", "plan": "pro"})
    assert await _count(dw, session) == before


async def test_a_token_of_another_tag_or_product_is_refused(dw, url, tmp_path: Path):
    started = await dw.sessions.start("users", {"user_id": user(), "plan": "pro"})
    with pytest.raises(SessionInvalidError) as caught:
        await dw.sessions.decrypt("admins", started.token)
    assert type(caught.value) is SessionInvalidError
    async with client(product(url, product_name="other"), tmp_path) as other:
        with pytest.raises(SessionInvalidError):
            await other.sessions.decrypt("users", started.token, check_revocation=False)
        with pytest.raises(SessionInvalidError):
            await other.sessions.refresh("users", started.refresh_token)
    # the refresh token of one tag is unknown to another
    with pytest.raises(SessionInvalidError):
        await dw.sessions.refresh("admins", started.refresh_token)
    assert (await dw.sessions.refresh("users", started.refresh_token)).session_id


async def test_reuse_of_a_refresh_token_revokes_the_whole_session(dw):
    first = await dw.sessions.start("users", {"user_id": user(), "plan": "pro"})
    second = await dw.sessions.refresh("users", first.refresh_token)
    with pytest.raises(RefreshReuseError) as caught:
        await dw.sessions.refresh("users", first.refresh_token)
    assert first.refresh_token not in str(caught.value)
    # the family is gone: the newest refresh token and every access token are refused
    with pytest.raises(SessionRevokedError):
        await dw.sessions.refresh("users", second.refresh_token)
    with pytest.raises(SessionRevokedError):
        await dw.sessions.decrypt("users", second.token)
    # without the revocation check, only the token's own checks apply
    assert await dw.sessions.decrypt("users", second.token, check_revocation=False)
    listed = await dw.sessions.list("users", active=False, limit=1000)
    mine = [s for s in listed if s.session_id == first.session_id]
    assert mine[0].status == "revoked" and mine[0].revoked_reason == "reuse"


async def test_concurrent_refreshes_in_one_process_exactly_one_wins(dw):
    started = await dw.sessions.start("users", {"user_id": user(), "plan": "pro"})
    outcomes = await asyncio.gather(
        *(dw.sessions.refresh("users", started.refresh_token) for _ in range(5)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(won) == 1
    lost = [o for o in outcomes if o not in won]
    # the first loser presents a used token (reuse: the session is revoked); later ones may
    # find it revoked already
    assert all(type(o) in (RefreshReuseError, SessionRevokedError) for o in lost)
    assert any(type(o) is RefreshReuseError for o in lost)


async def test_unknown_and_malformed_refresh_tokens(dw):
    for bad in ("", "x" * 20_000, "not-a-token"):
        with pytest.raises(SessionInvalidError) as caught:
            await dw.sessions.refresh("users", bad)
        assert type(caught.value) is SessionInvalidError


async def test_expired_refresh_token_is_refused(dw):
    started = await dw.sessions.start("users", {"user_id": user(), "plan": "pro"})
    store = await dw.jobs.store()
    audience = dw.sessions.keyring("users").audience
    from ductwork.sessions.tokens import hash_refresh

    old = hash_refresh(audience, started.refresh_token)
    async with store.engine.connect() as conn:
        expires = (
            await conn.execute(
                select(session_refresh.c.expires_at).where(session_refresh.c.hash == old)
            )
        ).scalar_one()
    found = await rows.rotate(
        store, tag="users", old_hash=old, new_hash="n" * 64, new_expires=0, now=expires
    )
    assert found.outcome == "expired"
    found = await rows.rotate(
        store, tag="users", old_hash=old, new_hash="n" * 64, new_expires=0, now=expires - 1
    )
    assert found.outcome == "ok"


async def test_revoke_revoke_all_and_list(dw):
    me, other = user(), user()
    mine = [await dw.sessions.start("users", {"user_id": me, "plan": "pro"}) for _ in range(2)]
    theirs = await dw.sessions.start("users", {"user_id": other, "plan": "free"})
    listed = await dw.sessions.list("users", me)
    assert {s.session_id for s in listed} == {s.session_id for s in mine}
    assert all(s.status == "active" for s in listed)
    assert await dw.sessions.revoke("users", mine[0].session_id) is True
    assert await dw.sessions.revoke("users", mine[0].session_id) is False
    with pytest.raises(SessionRevokedError):
        await dw.sessions.decrypt("users", mine[0].token)
    assert await dw.sessions.revoke_all("users", me) == 1
    with pytest.raises(SessionRevokedError):
        await dw.sessions.decrypt("users", mine[1].token)
    with pytest.raises(SessionRevokedError):
        await dw.sessions.refresh("users", mine[1].refresh_token)
    assert await dw.sessions.list("users", me) == []
    assert len(await dw.sessions.list("users", me, active=False)) == 2
    assert (await dw.sessions.decrypt("users", theirs.token))["plan"] == "free"
    # a session of another tag is not revoked through this one
    assert await dw.sessions.revoke("admins", theirs.session_id) is False


async def test_revocation_cache_is_cleared_by_revoke(url, tmp_path: Path):
    config = product(
        url,
        extra={"caches": {"fast": {"dev": {"provider": "memory", "namespace": uuid.uuid4().hex}}}},
        session={"revocation_cache": "fast", "revocation_cache_ttl": "1h"},
    )
    async with client(config, tmp_path) as dw:
        started = await dw.sessions.start("users", {"user_id": user(), "plan": "pro"})
        await dw.sessions.decrypt("users", started.token)  # cached as live for an hour
        key = f"sessions:users:{started.session_id}:live"
        assert await dw.caches.get("fast", key) is True
        await dw.sessions.revoke("users", started.session_id)
        assert await dw.caches.get("fast", key) is None
        with pytest.raises(SessionRevokedError):
            await dw.sessions.decrypt("users", started.token)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"selector": "plan?"}, "selector 'plan\\?' must be a required field"),
        ({"data": {"user_id": "str", "when": "datetime"}}, "has type 'datetime'"),
        ({"keys": [{"id": "k1", "key": "a"}, {"id": "k1", "key": "b"}]}, "ids must not repeat"),
        ({"revocation_cache": "nope"}, "no cache 'nope'"),
        ({"keys": []}, "keys"),
    ],
)
def test_bad_session_config_is_refused_at_load(change, message, tmp_path: Path):
    with pytest.raises(ConfigError, match=message):
        client(product("sqlite:///x.db", session=change), tmp_path)


async def test_a_bad_or_missing_key_names_its_place_not_its_value(
    url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SESSION_KEY_1", "too-short-key-value")
    async with client(product(url), tmp_path) as dw:
        with pytest.raises(ConfigError, match=r"sessions\.users\.keys\[0\]\.key") as caught:
            await dw.sessions.start("users", {"user_id": "x", "plan": "pro"})
        assert "too-short-key-value" not in str(caught.value)
    monkeypatch.delenv("SESSION_KEY_1")
    async with client(product(url), tmp_path) as dw:
        with pytest.raises(ConfigError, match="secret SESSION_KEY_1 is not set"):
            await dw.sessions.decrypt("users", "x.y.z")


async def test_expired_access_token(dw):
    started = await dw.sessions.start("users", {"user_id": user(), "plan": "pro"})
    keyring = dw.sessions.keyring("users")
    claims = keyring.open(started.token, use="access", now=0)
    with pytest.raises(SessionExpiredError):
        keyring.open(started.token, use="access", now=claims["exp"])
    assert keyring.open(started.token, use="access", now=claims["exp"] - 1)["sid"]


async def test_an_older_store_gains_the_session_tables(tmp_path: Path):
    from ductwork.engine.schema import MIGRATIONS, _v4, version
    from ductwork.engine.store import Store
    from sqlalchemy import inspect

    url = f"sqlite:///{tmp_path}/old.db"
    step = MIGRATIONS.index(_v4) + 1
    store = await Store.open(url)
    async with store.tx() as conn:  # as a store from before sessions existed
        await conn.run_sync(lambda c: session_refresh.drop(c))
        await conn.run_sync(lambda c: session.drop(c))
        await conn.execute(version.delete().where(version.c.version >= step))
    await store.close()
    store = await Store.open(url)
    async with store.engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
        applied = (await conn.execute(select(func.max(version.c.version)))).scalar_one()
    await store.close()
    assert {"ductwork_session", "ductwork_session_refresh"} <= set(names)
    assert applied == len(MIGRATIONS)


async def test_listing_and_revoking_need_no_keys(url, tmp_path: Path, monkeypatch):
    me = user()
    async with client(product(url), tmp_path) as dw:
        started = await dw.sessions.start("users", {"user_id": me, "plan": "pro"})
    monkeypatch.delenv("SESSION_KEY_1")  # an operator's shell without the product's secrets
    async with client(product(url), tmp_path) as ops:
        assert [s.session_id for s in await ops.sessions.list("users", me)] == [started.session_id]
        assert await ops.sessions.revoke_all("users", me) == 1
        with pytest.raises(ConfigError, match="SESSION_KEY_1"):
            await ops.sessions.decrypt("users", started.token)
