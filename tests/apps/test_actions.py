"""dw.actions.run against a real HTTP server on loopback: input, auth, retries, caching."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time

import pytest
from ductwork.errors import (
    AuthenticationError,
    ConfigError,
    ConnectionFailedError,
    HTTPStatusError,
    NotFoundError,
    ValidationError,
)

CLIENT_ID, CLIENT_SECRET = "shop-client", "s3cr3t-client-pw"  # as the server in conftest.py
STATIC_TOKEN = "static-tok-9f8e7d"
BASIC = ("ada", "lovelace-pw")

FAST_RETRY = {"retries": 3, "backoff": "1ms", "backoff_max": "5ms"}


def app(url: str, actions: dict, **env) -> dict:
    return {"dev": {"base_url": url, **env}, "actions": actions, "retry": FAST_RETRY}


ECHO_ACTIONS = {
    "update": {
        "method": "PUT",
        "path": "/echo/{id}",
        "params": {"id": "int"},
        "query": {
            "notify": "bool?",
            "tags": {"type": "array", "items": {"type": "string"}, "required": False},
        },
        "headers": {"X-Trace": "str?"},
        "body": {
            "name": {"type": "string", "minLength": 1},
            "age": {"type": "integer", "minimum": 0, "required": False},
            "id": "int?",
            "role": {"type": "string", "enum": ["admin", "user"], "required": False},
        },
    },
    "search": {"path": "/echo", "query": {"q": "str", "limit": "int?"}},
    "signup": {
        "method": "POST",
        "path": "/echo",
        "request": "form",
        "body": {"email": "str", "newsletter": "bool?"},
    },
    "upload": {
        "method": "POST",
        "path": "/echo",
        "request": "multipart",
        "body": {"file": "file", "title": "str"},
    },
    "bulk": {
        "method": "POST",
        "path": "/echo",
        "body_schema": {"type": "array", "items": {"type": "integer"}},
    },
}


async def test_per_part_input_builds_the_request(make_client, server):
    dw = make_client({"svc": app(server.url, ECHO_ACTIONS)})
    result = await dw.actions.run(
        "svc",
        "update",
        {
            "params": {"id": 7},
            "query": {"notify": True, "tags": ["a", "b"]},
            "headers": {"X-Trace": "t-1"},
            "body": {"name": "Ada", "age": 36},
        },
    )
    assert result.status == 200 and result.ok and result.attempts == 1
    seen = result.body
    assert seen["method"] == "PUT" and seen["path"] == "/echo/7"
    assert seen["query"] == {"notify": ["true"], "tags": ["a", "b"]}
    assert seen["headers"]["x-trace"] == "t-1"
    assert seen["body"] == {"name": "Ada", "age": 36}
    assert result.headers["content-type"] == "application/json"
    assert result.elapsed > 0


async def test_flat_input_is_routed_and_prefixes_resolve_clashes(make_client, server):
    dw = make_client({"svc": app(server.url, ECHO_ACTIONS)})
    result = await dw.actions.run(
        "svc",
        "update",
        {"params:id": 3, "body:id": 99, "name": "Grace", "notify": False, "x-trace": "t-2"},
    )
    seen = result.body
    assert seen["path"] == "/echo/3" and seen["body"] == {"name": "Grace", "id": 99}
    assert seen["query"] == {"notify": ["false"]} and seen["headers"]["x-trace"] == "t-2"
    with pytest.raises(ValidationError, match=r"id: declared in several parts; write params:id"):
        await dw.actions.run("svc", "update", {"id": 3, "name": "x"})


async def test_invalid_input_lists_every_field_and_sends_nothing(make_client, server):
    dw = make_client({"svc": app(server.url, ECHO_ACTIONS)})
    with pytest.raises(ValidationError) as info:
        await dw.actions.run(
            "svc",
            "update",
            {
                "params": {"id": "seven"},
                "body": {"name": "", "age": -1, "role": "root", "nickname": "x"},
                "query": {"tags": [1]},
            },
        )
    message = str(info.value)
    for expected in (
        "params.id: expected integer, got string",
        "body.name: shorter than 1 characters",
        "body.age: less than the minimum 0",
        "body.role: must be one of admin, user",
        "body.nickname: unknown field",
        "query.tags[0]: expected string, got integer",
        "nothing was sent",
    ):
        assert expected in message
    with pytest.raises(ValidationError, match=r"body\.name: required field is missing"):
        await dw.actions.run("svc", "update", {"params:id": 1})
    with pytest.raises(ValidationError, match=r"nmae: unknown input; did you mean 'name'"):
        await dw.actions.run("svc", "update", {"params:id": 1, "nmae": "x"})
    assert server.state.requests == 0


async def test_form_multipart_and_whole_body(make_client, server):
    dw = make_client({"svc": app(server.url, ECHO_ACTIONS)})
    form = await dw.actions.run("svc", "signup", {"email": "a@b.c", "newsletter": True})
    assert form.body["content_type"] == "application/x-www-form-urlencoded"
    assert form.body["body"] == {"email": "a@b.c", "newsletter": "true"}
    payload = bytes(range(256)) * 40
    up = await dw.actions.run(
        "svc",
        "upload",
        {
            "file": {"filename": "scan.pdf", "content": payload, "content_type": "application/pdf"},
            "title": "Scan",
        },
    )
    assert up.body["content_type"] == "multipart/form-data"
    assert up.body["body"] == {
        "file": {"filename": "scan.pdf", "size": len(payload), "content_type": "application/pdf"},
        "title": "Scan",
    }
    bulk = await dw.actions.run("svc", "bulk", {"body": [1, 2, 3]})
    assert bulk.body["body"] == [1, 2, 3]
    with pytest.raises(ValidationError, match=r"body\[1\]: expected integer"):
        await dw.actions.run("svc", "bulk", {"body": [1, "two"]})


async def test_unknown_app_action_env_and_session(make_client, server):
    dw = make_client({"svc": app(server.url, ECHO_ACTIONS)})
    with pytest.raises(NotFoundError, match="did you mean 'svc'"):
        await dw.actions.run("svx", "search", {"q": "a"})
    with pytest.raises(NotFoundError, match="did you mean 'search'"):
        await dw.actions.run("svc", "serch", {"q": "a"})
    with pytest.raises(ConfigError, match=r"apps\.svc has no settings for env 'prd'"):
        await dw.actions.run("svc", "search", {"q": "a"}, env="prd")
    with pytest.raises(ValidationError, match=r"session= takes a pair"):
        await dw.actions.run("svc", "search", {"q": "a"}, session="s-1")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no session tag 'users'"):
        await dw.actions.run("svc", "search", {"q": "a"}, session=("users", "t"))


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "where"),
    [
        (
            {"kind": "token", "token": STATIC_TOKEN, "in": "header", "name": "X-Api-Key"},
            lambda seen: seen["headers"]["x-api-key"],
        ),
        (
            {"kind": "token", "token": STATIC_TOKEN, "in": "query", "name": "api_key"},
            lambda seen: seen["query"]["api_key"][0],
        ),
        (
            {"kind": "token", "token": STATIC_TOKEN, "in": "body", "name": "key"},
            lambda seen: seen["body"]["key"],
        ),
        (
            {"kind": "bearer", "token": STATIC_TOKEN},
            lambda seen: seen["headers"]["authorization"].removeprefix("Bearer "),
        ),
    ],
)
async def test_static_token_placements(make_client, server, auth, where):
    dw = make_client(
        {
            "svc": app(
                server.url,
                {"post": {"method": "POST", "path": "/echo", "body": {"msg": "str"}}},
                auth=auth,
            )
        }
    )
    result = await dw.actions.run("svc", "post", {"msg": "hi"})
    assert where(result.body) == STATIC_TOKEN


async def test_token_in_path_params(make_client, server):
    dw = make_client(
        {
            "bot": app(
                server.url,
                {"me": {"path": "/bot{key}/me"}},
                auth={"kind": "token", "token": STATIC_TOKEN, "in": "params", "name": "key"},
            )
        }
    )
    result = await dw.actions.run("bot", "me")
    assert result.body["path"] == f"/bot{STATIC_TOKEN}/me"


async def test_basic_auth(make_client, server):
    dw = make_client(
        {
            "svc": app(
                server.url,
                {"get": {"path": "/echo"}},
                auth={"kind": "basic", "username": BASIC[0], "password": BASIC[1]},
            )
        }
    )
    header = (await dw.actions.run("svc", "get")).body["headers"]["authorization"]
    import base64

    assert base64.b64decode(header.removeprefix("Basic ")).decode() == f"{BASIC[0]}:{BASIC[1]}"


def oauth_app(url: str, refresh_before: str = "30s") -> dict:
    return app(
        url,
        {"me": {"path": "/protected"}},
        auth={
            "kind": "oauth2",
            "token_url": f"{url}/oauth/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "read",
            "refresh_before": refresh_before,
        },
    )


async def test_oauth2_token_is_shared_by_concurrent_calls(make_client, server):
    dw = make_client({"svc": oauth_app(server.url)})
    results = await asyncio.gather(*(dw.actions.run("svc", "me") for _ in range(25)))
    assert server.state.tokens == ["oauth-tok-1"]
    assert {r.body["token"] for r in results} == {"oauth-tok-1"}
    await dw.actions.run("svc", "me")
    assert server.state.tokens == ["oauth-tok-1"]  # still valid: reused


async def test_oauth2_token_is_reissued_before_expiry_once_for_concurrent_calls(
    make_client, server
):
    server.state.expires_in = 20  # inside the 30 s refresh buffer: due for renewal at once
    dw = make_client({"svc": oauth_app(server.url, refresh_before="30s")})
    first = await asyncio.gather(*(dw.actions.run("svc", "me") for _ in range(10)))
    assert server.state.tokens == ["oauth-tok-1"]
    assert {r.body["token"] for r in first} == {"oauth-tok-1"}
    second = await asyncio.gather(*(dw.actions.run("svc", "me") for _ in range(10)))
    assert server.state.tokens == ["oauth-tok-1", "oauth-tok-2"]
    assert {r.body["token"] for r in second} == {"oauth-tok-2"}


async def test_oauth2_refused_token_is_replaced_on_401(make_client, server):
    dw = make_client({"svc": oauth_app(server.url)})
    assert (await dw.actions.run("svc", "me")).body["token"] == "oauth-tok-1"
    server.state.tokens.append("revoked-elsewhere")  # the server now only accepts a new one
    result = await dw.actions.run("svc", "me")
    assert result.body["token"] == "oauth-tok-3" == server.state.tokens[-1]
    assert result.attempts == 2


async def test_oauth2_bad_client_secret_is_an_authentication_error(make_client, server):
    config = oauth_app(server.url)
    config["dev"]["auth"]["client_secret"] = "wrong-secret-value"
    dw = make_client({"svc": config})
    with pytest.raises(AuthenticationError, match="answered 401") as info:
        await dw.actions.run("svc", "me")
    assert "wrong-secret-value" not in str(info.value)


async def test_token_from_a_login_action(make_client, server):
    actions = {
        "login": {
            "method": "POST",
            "path": "/login",
            "auth": False,
            "body": {"user": "str", "password": "str"},
        },
        "me": {"path": "/protected"},
    }
    auth = {
        "kind": "action",
        "action": "login",
        "input": {"user": "svc", "password": "svc-pw-123"},
        "token_path": "data.token",
        "expires_in_path": "data.ttl",
    }
    dw = make_client({"svc": app(server.url, actions, auth=auth)})
    results = await asyncio.gather(*(dw.actions.run("svc", "me") for _ in range(8)))
    assert {r.body["token"] for r in results} == {"sess-tok-1"}
    assert server.state.logins == 1


# -- retries, timeouts, errors -------------------------------------------------------------


async def test_retry_on_503_honours_retry_after(make_client, server):
    dw = make_client(
        {
            "svc": app(
                server.url,
                {"go": {"path": "/flaky/{key}", "query": {"fail": "int", "retry_after": "int?"}}},
            )
        }
    )
    result = await dw.actions.run("svc", "go", {"key": "a", "fail": 2})
    assert result.attempts == 3 and result.body == {"ok": True, "calls": 3}
    started = time.perf_counter()
    result = await dw.actions.run("svc", "go", {"key": "b", "fail": 1, "retry_after": 1})
    assert result.attempts == 2
    assert time.perf_counter() - started >= 0.95  # backoff alone would be ~1 ms


async def test_retries_run_out_and_the_error_carries_status_and_body(make_client, server):
    dw = make_client(
        {"svc": app(server.url, {"go": {"path": "/flaky/{key}", "query": {"fail": "int"}}})}
    )
    with pytest.raises(HTTPStatusError) as info:
        await dw.actions.run("svc", "go", {"key": "c", "fail": 10}, retries=1)
    err = info.value
    assert err.status == 503 and err.attempts == 2 and '"busy"' in err.body
    assert server.state.hits["c"] == 2
    assert err.resource == "apps.svc" and err.env == "dev"


async def test_no_retry_on_400_and_credentials_never_shown(make_client, server, caplog):
    dw = make_client(
        {
            "svc": app(
                server.url,
                {"bad": {"path": "/status/{code}", "params": {"code": "int"}}},
                auth={"kind": "bearer", "token": STATIC_TOKEN},
            )
        }
    )
    caplog.set_level(logging.INFO, logger="ductwork.apps")
    with pytest.raises(HTTPStatusError) as info:
        await dw.actions.run("svc", "bad", {"code": 400})
    assert info.value.status == 400 and info.value.attempts == 1
    assert server.state.hits["status-400"] == 1
    assert "Bearer ***" in info.value.body and STATIC_TOKEN not in str(info.value)
    lines = [r.getMessage() for r in caplog.records if r.name == "ductwork.apps"]
    assert lines == [
        "app=svc action=bad env=dev status=400 latency_ms="
        + lines[0].split("latency_ms=")[1].split(" ")[0]
        + " attempt=1"
    ]


async def test_per_action_retry_policy_overrides_the_app(make_client, server):
    dw = make_client(
        {
            "svc": app(
                server.url,
                {
                    "strict": {
                        "path": "/flaky/{key}",
                        "query": {"fail": "int", "status": "int"},
                        "retry": {"on_status": [502]},
                    }
                },
            )
        }
    )
    with pytest.raises(HTTPStatusError):
        await dw.actions.run("svc", "strict", {"key": "d", "fail": 1, "status": 503})
    assert server.state.hits["d"] == 1
    ok = await dw.actions.run("svc", "strict", {"key": "e", "fail": 1, "status": 502})
    assert ok.attempts == 2


async def test_timeout_raises_connection_failed(make_client, server):
    dw = make_client(
        {
            "svc": app(
                server.url,
                {"slow": {"path": "/slow", "query": {"delay": "float"}, "timeout": "200ms"}},
            )
        }
    )
    started = time.perf_counter()
    with pytest.raises(ConnectionFailedError, match="timed out after 1 attempt"):
        await dw.actions.run("svc", "slow", {"delay": 1.5})
    assert time.perf_counter() - started < 1.2


async def test_refused_connection_is_connection_failed(make_client):
    from ductwork.testing.servers import free_port

    dw = make_client({"svc": app(f"http://127.0.0.1:{free_port()}", {"get": {"path": "/x"}})})
    with pytest.raises(ConnectionFailedError, match="could not connect") as info:
        await dw.actions.run("svc", "get", retries=1)
    assert info.value.resource == "apps.svc"


async def test_connection_reset_is_retried(make_client):
    """A raw TCP server resets the first connection, then answers."""
    seen = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen.append(1)
        if len(seen) == 1:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        body = b'{"ok": true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    dw = make_client({"svc": app(f"http://127.0.0.1:{port}", {"get": {"path": "/x"}})})
    try:
        result = await dw.actions.run("svc", "get")
    finally:
        tcp.close()
        await tcp.wait_closed()
    assert result.body == {"ok": True} and result.attempts == 2 and len(seen) == 2


# -- cache ---------------------------------------------------------------------------------


async def test_cache_hits_skip_the_server(make_client, server):
    dw = make_client({"svc": app(server.url, {"count": {"path": "/count", "query": {"q": "str"}}})})
    first = await dw.actions.run("svc", "count", {"q": "a"}, cache="hot")
    again = await dw.actions.run("svc", "count", {"q": "a"}, cache="hot")
    other = await dw.actions.run("svc", "count", {"q": "b"}, cache="hot")
    uncached = await dw.actions.run("svc", "count", {"q": "a"})
    assert (first.cached, again.cached, other.cached) == (False, True, False)
    assert first.body == again.body == {"n": 1, "q": "a"}
    assert other.body == {"n": 2, "q": "b"} and uncached.body["n"] == 3
    assert again.status == 200 and again.headers == first.headers
    assert server.state.hits["count"] == 3


async def test_secrets_from_references_resolve_per_env(make_client, server, monkeypatch):
    monkeypatch.setenv("SVC_TEST_TOKEN", "from-env-token-123")
    dw = make_client(
        {
            "svc": app(
                server.url,
                {"get": {"path": "/echo"}},
                auth={"kind": "bearer", "token": "${env:SVC_TEST_TOKEN}"},
            )
        }
    )
    seen = (await dw.actions.run("svc", "get")).body
    assert seen["headers"]["authorization"] == "Bearer from-env-token-123"
    monkeypatch.delenv("SVC_TEST_TOKEN")
    other = make_client(
        {
            "svc": app(
                server.url,
                {"get": {"path": "/echo"}},
                auth={"kind": "bearer", "token": "${env:SVC_TEST_TOKEN}"},
            )
        }
    )
    with pytest.raises(ConfigError, match=r"apps\.svc\.dev\.auth\.token.*SVC_TEST_TOKEN"):
        await other.actions.run("svc", "get")


def test_config_validate_checks_each_apps_env_settings(tmp_path, monkeypatch):
    import json

    import yaml
    from click.testing import CliRunner
    from ductwork.cli import commands, databases, resources  # noqa: F401 - registers commands
    from ductwork.cli.app import cli

    data = {
        "product": "p",
        "environments": ["dev", "prd"],
        "apps": {
            "svc": {
                "dev": {"base_url": "http://127.0.0.1:1"},
                "prd": {"base_url": "${env:SVC_URL_NOT_SET}"},
                "actions": {"ping": {"method": "GET", "path": "/ping"}},
            }
        },
    }
    (tmp_path / "ductwork.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SVC_URL_NOT_SET", raising=False)
    ok = CliRunner().invoke(cli, ["config", "validate", "--env", "dev", "--json"])
    assert ok.exit_code == 0, ok.output
    assert "apps.svc" in json.loads(ok.output)["resources"]
    bad = CliRunner().invoke(cli, ["config", "validate", "--env", "prd"])
    assert bad.exit_code == 1
    assert "SVC_URL_NOT_SET is not set" in bad.output
