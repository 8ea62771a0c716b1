"""The client's namespaces on the embedded providers, by tag, with env overrides."""

from __future__ import annotations

import pytest
from ductwork import (
    InvalidKeyError,
    NotFoundError,
    SyncDuctwork,
    UnsupportedError,
    ValidationError,
)
from ductwork.builtin.mailbox import read_outbox
from ductwork.providers.storage import check_key
from ductwork.testing.storage import valid_keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


async def test_storage_round_trip_and_listing(dw):
    await dw.storage.save("files", "a/1.txt", "one")
    await dw.storage.save("files", "a/2.txt", b"two", metadata={"k": "v"})
    assert await dw.storage.read_file("files", "a/1.txt") == b"one"
    assert [i.key for i in (await dw.storage.list("files", "a/")).items] == ["a/1.txt", "a/2.txt"]
    assert (await dw.storage.stat("files", "a/2.txt")).metadata == {"k": "v"}
    assert b"".join([c async for c in dw.storage.stream("files", "a/2.txt")]) == b"two"
    assert await dw.storage.delete("files", "a/1.txt") is True
    assert await dw.storage.exists("files", "a/1.txt") is False


async def test_env_override_per_call_uses_the_other_envs_provider(dw, product_dir):
    await dw.storage.save("files", "where.txt", "dev copy")
    await dw.storage.save("files", "where.txt", "prd copy", env="prd")
    assert (product_dir / ".ductwork/files/where.txt").read_text() == "dev copy"
    assert (product_dir / ".ductwork/prd-files/where.txt").read_text() == "prd copy"


async def test_storage_keys_cannot_escape_the_root(dw, product_dir):
    for key in ("../outside.txt", "/etc/passwd", "a/../../x"):
        with pytest.raises(InvalidKeyError):
            await dw.storage.save("files", key, "x")
    assert not (product_dir / ".ductwork/outside.txt").exists()


async def test_signed_urls_on_local_storage_are_unsupported(dw):
    with pytest.raises(UnsupportedError, match="signed URLs"):
        await dw.storage.signed_url("files", "a.txt")


async def test_database_actions_validate_input_before_running(dw):
    await dw.databases.action.execute("main", "create_users_table")
    with pytest.raises(ValidationError, match="id") as info:
        await dw.databases.action.execute(
            "main", "add_user", {"id": "not a number", "name": "x", "email": "y"}
        )
    assert "'main'" in str(info.value) and "add_user" in str(info.value)
    with pytest.raises(ValidationError, match="email"):
        await dw.databases.action.execute("main", "add_user", {"id": 1, "name": "x"})
    with pytest.raises(ValidationError, match="sneaky: Extra inputs"):
        await dw.databases.action.execute("main", "get_user", {"id": 1, "sneaky": "1"})
    count = await dw.databases.execute("main", "SELECT COUNT(*) AS n FROM users")
    assert count.scalar() == 0
    with pytest.raises(NotFoundError, match="did you mean 'get_user'"):
        await dw.databases.action.execute("main", "get_usr", {"id": 1})


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # the test resets state itself
@given(name=st.text(max_size=40))
async def test_hostile_action_input_is_bound_never_executed(product_dir, name):
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config

    async with Ductwork(Config.load(product_dir / "ductwork.yaml"), env="dev") as client:
        await client.databases.action.execute("main", "create_users_table")
        await client.databases.execute("main", "DELETE FROM users")
        await client.databases.action.execute(
            "main", "add_user", {"id": 1, "name": name, "email": "e"}
        )
        row = await client.databases.action.execute("main", "get_user", {"id": 1})
        assert row == {"id": 1, "name": name, "email": "e"}
        tables = await client.databases.execute(
            "main", "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'users'"
        )
        assert tables.scalar() == 1


async def test_transactions_commit_together_or_not_at_all(dw):
    await dw.databases.action.execute("main", "create_users_table")
    with pytest.raises(RuntimeError):
        async with dw.databases.transaction("main") as tx:
            await tx.action("add_user", {"id": 1, "name": "a", "email": "a@x"})
            raise RuntimeError("abort")
    assert await dw.databases.action.execute("main", "get_user", {"id": 1}) is None
    async with dw.databases.transaction("main") as tx:
        await tx.action("add_user", {"id": 1, "name": "a", "email": "a@x"})
        await tx.execute("UPDATE users SET name = :n WHERE id = 1", {"n": "b"})
    assert (await dw.databases.action.execute("main", "get_user", {"id": 1}))["name"] == "b"


async def test_dispatch_stores_a_job_in_the_engine_after_checking_its_input(dw):
    job = await dw.databases.action.dispatch("main", "get_user", {"id": 1})
    assert job.status == "queued" and job.kind == "databases.action"
    assert (await dw.jobs.get(job.job_id)).target == "main:get_user"
    with pytest.raises(ValidationError, match="id"):
        await dw.databases.action.dispatch("main", "get_user", {"id": "one"})
    later = await dw.storage.dispatch("files", "k", b"x", schedule={"every": "15m"})
    assert later.recurring and later.status == "scheduled"
    with pytest.raises(UnsupportedError, match=r"caches\.dispatch"):
        await dw.caches.dispatch("hot", "k", 1)


async def test_caches_hold_json_with_the_resource_ttl(dw):
    await dw.caches.set("hot", "user", {"id": 1})
    assert await dw.caches.get("hot", "user") == {"id": 1}
    assert await dw.caches.incr("hot", "n", 3) == 3
    assert await dw.caches.delete("hot", "user") is True
    assert await dw.caches.get("hot", "user", default="gone") == "gone"
    with pytest.raises(ValidationError):
        await dw.caches.set("hot", "bad", {1, 2})


async def test_notifications_render_templates(dw, product_dir):
    receipt = await dw.notifications.send(
        "mail", "welcome", to="ada@example.com", data={"name": "Ada"}
    )
    [sent] = read_outbox(product_dir / ".ductwork/outbox")
    assert receipt.to == ["ada@example.com"]
    assert sent.subject == "Welcome to the shop, Ada"
    assert "Hello Ada" in sent.body
    assert sent.html is not None and "<b>Ada</b>" in sent.html


async def test_a_missing_template_value_is_refused_before_sending(dw, product_dir):
    with pytest.raises(ValidationError, match="name"):
        await dw.notifications.send("mail", "welcome", to="ada@example.com", data={})
    assert read_outbox(product_dir / ".ductwork/outbox") == []


def test_the_sync_facade_runs_the_same_api(product_dir):
    with SyncDuctwork.from_config(product_dir / "ductwork.yaml", env="dev") as dw:
        dw.storage.save("files", "sync.txt", "from a script")
        assert dw.storage.read_file("files", "sync.txt") == b"from a script"
        dw.databases.action.execute("main", "create_users_table")
        assert dw.databases.action.execute("main", "get_user", {"id": 9}) is None
        assert list(dw.storage.stream("files", "sync.txt")) == [b"from a script"]


@given(valid_keys)
def test_generated_valid_keys_pass_the_key_check(key):
    assert check_key(key) == key


@given(st.text(max_size=30))
def test_no_accepted_key_can_leave_the_root(key):
    try:
        check_key(key)
    except InvalidKeyError:
        return
    parts = key.split("/")
    assert ".." not in parts and "." not in parts and "" not in parts
    assert not key.startswith("/") and "\\" not in key


async def test_sql_errors_in_actions_name_database_action_and_env(dw):
    from ductwork import ProviderError

    # the users table does not exist yet
    with pytest.raises(ProviderError) as info:
        await dw.databases.action.execute("main", "get_user", {"id": 1})
    message = str(info.value)
    assert "database 'main' action 'get_user' failed" in message
    assert "env=dev" in message and "resource=databases.main" in message
    assert info.value.__cause__ is not None


async def test_a_statement_outside_the_transaction_from_inside_it_is_refused(dw):
    from ductwork import ProviderError

    db = await dw.databases.provider("main")
    with pytest.raises(ProviderError, match="through its connection"):
        async with db.transaction():
            await db.execute("SELECT 1")
    assert (await db.execute("SELECT 1 AS one")).scalar() == 1
