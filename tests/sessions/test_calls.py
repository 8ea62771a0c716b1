"""``session=`` on calls, the CLI, and the promise that no secret or session datum leaks."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from ductwork.cli.app import cli
from ductwork.engine import admin
from ductwork.engine.schema import metadata, run
from ductwork.errors import (
    FeatureFailedError,
    SessionInvalidError,
    SessionRevokedError,
    ValidationError,
)
from sessions_app import KEY_1, KEY_2, client, product, with_feature
from sqlalchemy import func, select


async def _runs(dw) -> int:
    store = await dw.jobs.store()
    async with store.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(run))).scalar_one()


async def test_feature_mappings_read_session_fields(url, tmp_path: Path):
    async with client(with_feature(product(url)), tmp_path) as dw:
        me = f"u-{uuid.uuid4().hex[:6]}"
        started = await dw.sessions.start("users", {"user_id": me, "plan": "team"})
        assert await dw.features.run("weigh", session=("users", started.token)) == 804
        # durable: a worker (here: the inline runner) reads the data back from the store
        handle = await dw.features.run("weigh", wait=False, session=("users", started.token))
        assert await dw.features._finish(handle.run_id, handle.env, 60) == 804
        # a replay keeps the session; a code-first feature reads it as ctx.session
        replayed = await dw.features.replay(handle.run_id, wait=True)
        assert replayed == 804
        code = await dw.features.run("session_code_weight", session=("users", started.token))
        assert code == 804
        # without a session, session.* is undefined: the run fails, naming the expression
        with pytest.raises(FeatureFailedError, match="session"):
            await dw.features.run("weigh")


async def test_a_bad_session_fails_the_call_before_anything_runs(url, tmp_path: Path):
    async with client(with_feature(product(url)), tmp_path) as dw:
        started = await dw.sessions.start("users", {"user_id": "u", "plan": "pro"})
        before = await _runs(dw)
        with pytest.raises(SessionInvalidError):
            await dw.features.run("weigh", session=("users", started.token[:-2]))
        with pytest.raises(SessionInvalidError):
            await dw.features.run("weigh", session=("admins", started.token))
        with pytest.raises(ValidationError, match="a pair"):
            await dw.features.run("weigh", session=started.token)  # type: ignore[arg-type]
        await dw.sessions.revoke("users", started.session_id)
        with pytest.raises(SessionRevokedError):
            await dw.features.run("weigh", session=("users", started.token))
        assert await _runs(dw) == before


async def test_no_token_key_or_datum_in_logs_errors_show_or_tables(
    url, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    user, plan = f"user-{uuid.uuid4().hex}", f"plan-{uuid.uuid4().hex}"
    secrets: list[str] = [KEY_1, KEY_2, user, plan]
    texts: list[str] = []
    config = with_feature(product(url, keys=("k2", "k1")))
    async with client(config, tmp_path) as dw:
        started = await dw.sessions.start("users", {"user_id": user, "plan": plan})
        again = await dw.sessions.refresh("users", started.refresh_token)
        secrets += [started.token, started.refresh_token, again.token, again.refresh_token]
        texts += [repr(started), repr(again), repr(await dw.sessions.list("users", user))]
        for call in (
            dw.sessions.refresh("users", started.refresh_token),  # reuse
            dw.sessions.refresh("users", again.refresh_token),  # revoked
            dw.sessions.decrypt("users", again.token),  # revoked
            dw.sessions.decrypt("users", again.token + "x"),
        ):
            with pytest.raises(SessionInvalidError) as caught:
                await call
            texts += [str(caught.value), repr(caught.value)]
        fresh = await dw.sessions.start("users", {"user_id": user, "plan": plan})
        secrets += [fresh.token, fresh.refresh_token]
        handle = await dw.features.run("weigh", wait=False, session=("users", fresh.token))
        await dw.features._finish(handle.run_id, handle.env, 60)
        store = await dw.jobs.store()
        texts.append(json.dumps((await admin.get(store, handle.run_id)).to_dict(), default=str))
        texts.append(json.dumps(await admin.timeline(store, handle.run_id), default=str))
        texts.append(json.dumps((await dw.features.output(handle.run_id)).to_dict()))
        texts.append(json.dumps(dw.config.show("dev")))
        async with store.engine.connect() as conn:
            for table in metadata.sorted_tables:
                rows = (await conn.execute(select(table))).all()
                texts.append(f"{table.name}: {[tuple(r) for r in rows]}")
    texts += [record.getMessage() for record in caplog.records]
    everything = "\n".join(texts)
    assert "ductwork_session_refresh" in everything and "ses_" in everything
    for secret in secrets:
        assert secret not in everything
    shown = dw.config.show("dev")["sessions"]["users"]
    assert shown["keys"] == [{"id": "k2", "key": "***"}, {"id": "k1", "key": "***"}]


def test_cli_keygen_ls_revoke_and_config_show(url, tmp_path: Path):
    import asyncio

    path = tmp_path / "ductwork.yaml"
    path.write_text(json.dumps(product(url)))
    me = f"cli-{uuid.uuid4().hex[:8]}"

    async def start() -> list[str]:
        async with client(product(url), tmp_path) as dw:
            return [
                (await dw.sessions.start("users", {"user_id": me, "plan": "pro"})).session_id
                for _ in range(2)
            ]

    ids = asyncio.run(start())
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(cli, ["-c", str(path), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    key = invoke("sessions", "keygen").strip()
    assert len(key) == 43 and key != invoke("sessions", "keygen").strip()
    listed = json.loads(invoke("--json", "sessions", "ls", "users", "--user", me))
    assert sorted(s["session_id"] for s in listed) == sorted(ids)
    assert "active" in invoke("sessions", "ls", "users", "--user", me)
    assert json.loads(invoke("--json", "sessions", "revoke", "users", ids[0])) == {"revoked": 1}
    assert "revoked 1 session(s)" in invoke("sessions", "revoke", "users", "--user", me)
    assert invoke("--json", "sessions", "ls", "users", "--user", me).strip() == "[]"
    everything = json.loads(invoke("--json", "sessions", "ls", "users", "--user", me, "--all"))
    assert {s["status"] for s in everything} == {"revoked"}
    shown = invoke("config", "show")
    assert KEY_1 not in shown and "sessions:" in shown and "key: '***'" in shown
    bad = runner.invoke(cli, ["-c", str(path), "sessions", "revoke", "users"])
    assert bad.exit_code == 1 and "give a SESSION_ID or --user" in bad.output
