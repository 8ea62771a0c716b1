"""Big response bodies: max_response_size, dw.actions.stream and save_to, on a real server.

What the server handed to the connection before the client went away is counted on its side,
so "refused without reading it whole" is checked where it happens. Peak memory of 400 MB
transfers is measured in child processes in test_big_payloads.py.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from ductwork.apps.models import AppResource
from ductwork.apps.runner import ActionResult
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.engine.worker import Worker
from ductwork.errors import (
    ConfigError,
    ConnectionFailedError,
    DuctworkError,
    HTTPStatusError,
    InvalidKeyError,
    NotFoundError,
    ProviderError,
    ValidationError,
)
from ductwork.sync import SyncDuctwork
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MiB = 1 << 20
BIG = 400 * MiB
LIMIT = 32 * MiB


def q(**kw) -> dict[str, str]:
    return {k: str(v) for k, v in kw.items()}


def test_the_default_limit_is_32_mib_and_sizes_read_as_units(tmp_path):
    assert AppResource().max_response_size == 32 * MiB
    config = {
        "product": "p",
        "environments": ["dev"],
        "apps": {
            "a": {
                "dev": {"base_url": "http://127.0.0.1:1"},
                "max_response_size": "1GiB",
                "actions": {"x": {"path": "/x", "max_response_size": "400MB"}},
            }
        },
    }
    app = Config.from_dict(config, root=tmp_path).product.apps["a"]
    assert app.max_response_size == 1 << 30
    assert app.actions["x"].max_response_size == 400 << 20  # binary, as every size in config
    config["apps"]["a"]["max_response_size"] = "lots"
    with pytest.raises(ConfigError, match="max_response_size"):
        Config.from_dict(config, root=tmp_path)


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
async def test_a_big_body_is_refused_at_the_limit_without_being_read_whole(
    big_dw, big_server, announced
):
    rid = big_server.new_id()
    with pytest.raises(ProviderError) as caught:
        await big_dw.actions.run("files", "get", q(size=BIG, cl=int(announced), id=rid))
    message = str(caught.value)
    assert "app 'files' action 'get'" in message
    assert f"max_response_size of {LIMIT} bytes" in message
    if announced:
        assert f"announced a body of {BIG} bytes" in message
    else:
        assert f"sent more than {LIMIT} bytes" in message
    assert not isinstance(caught.value, HTTPStatusError)
    sent = big_server.state.finished(rid)
    # refused before reading (announced) or at the limit: socket buffers aside, not read whole
    assert sent < (16 * MiB if announced else LIMIT + 16 * MiB), sent
    assert big_server.state.hits[rid] == 1  # a refusal is not retried


async def test_a_head_answer_announcing_a_big_body_is_not_refused(big_dw):
    result = await big_dw.actions.run("files", "head", q(size=BIG))
    assert result.status == 200 and result.body is None
    assert result.headers["content-length"] == str(BIG)


@pytest.mark.parametrize("enc", ["gzip", "deflate"])
async def test_a_compression_bomb_is_refused_by_its_decoded_size(big_dw, big_server, enc):
    rid = big_server.new_id()
    wire = len(big_server.encoded(BIG, enc, True))
    assert wire < 2 * MiB  # the whole bomb fits in the limit many times over
    with pytest.raises(ProviderError, match=rf"sent more than {LIMIT} bytes \(refused at \d+ "):
        await big_dw.actions.run("files", "get", q(size=BIG, enc=enc, zeros=1, id=rid))


async def test_the_limit_is_per_app_overridden_per_action_and_per_call(big_server, tmp_path):
    config = big_server.config(tmp_path, app={"max_response_size": 1024})
    async with Ductwork(Config.from_dict(config, root=tmp_path), env="dev") as dw:
        with pytest.raises(ProviderError, match="max_response_size of 1024 bytes"):
            await dw.actions.run("files", "get", q(size=2048))
        # action `small` says 4KiB
        result = await dw.actions.run("files", "small", q(size=4096))
        assert result.body == big_server.expected(4096)
        with pytest.raises(ProviderError, match="max_response_size of 4096 bytes"):
            await dw.actions.run("files", "small", q(size=4097, cl=0))
        # per call
        result = await dw.actions.run("files", "get", q(size=5000), max_size=5000)
        assert len(result.body) == 5000
        with pytest.raises(ProviderError, match="max_response_size of 100 bytes"):
            await dw.actions.run("files", "small", q(size=101), max_size=100)
        with pytest.raises(ValidationError, match="max_size must be a positive number"):
            await dw.actions.run("files", "small", q(size=1), max_size=0)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    size=st.integers(0, 300_000),
    limit=st.integers(1, 300_000),
    enc=st.sampled_from(["identity", "gzip", "deflate", "rawdeflate", "gzip2"]),
    announced=st.booleans(),
)
async def test_a_body_within_the_limit_is_read_whole_and_decoded(
    big_server, tmp_path, size, limit, enc, announced
):
    config = Config.from_dict(big_server.config(tmp_path), root=tmp_path)
    async with Ductwork(config, env="dev") as dw:
        args = q(size=size, enc=enc, cl=int(announced))
        if size > limit:
            with pytest.raises(ProviderError, match=f"max_response_size of {limit} bytes"):
                await dw.actions.run("files", "get", args, max_size=limit)
        else:
            result = await dw.actions.run("files", "get", args, max_size=limit)
            assert (result.body or b"") == big_server.expected(size)


async def test_an_error_body_is_not_read_whole(big_dw, big_server):
    rid = big_server.new_id()
    with pytest.raises(HTTPStatusError) as caught:
        await big_dw.actions.run(
            "files", "get", q(size=BIG, status=404, ctype="text/plain", id=rid)
        )
    assert caught.value.status == 404 and caught.value.attempts == 1
    assert big_server.state.finished(rid) < 16 * MiB


async def test_stream_hands_out_chunks_with_status_and_headers(big_dw, big_server):
    size = 3 * MiB + 17
    async with big_dw.actions.stream("files", "get", q(size=size, ctype="text/csv")) as response:
        assert response.status == 200
        assert response.headers["content-type"] == "text/csv"
        assert response.headers["content-length"] == str(size)
        assert response.attempts == 1
        body = b"".join([chunk async for chunk in response])
    assert body == big_server.expected(size) and response.received == size
    # gzip: decoded, no chunk above chunk_size, even from a bomb
    stream = big_dw.actions.stream(
        "files", "get", q(size=8 * MiB, enc="gzip", zeros=1), chunk_size=100_000
    )
    sizes = [len(chunk) async for chunk in stream]  # a bare async for opens and closes it
    assert sum(sizes) == 8 * MiB and max(sizes) <= 100_000
    with pytest.raises(ValidationError, match="chunk_size must be a positive number"):
        big_dw.actions.stream("files", "get", q(size=1), chunk_size=0)
    with pytest.raises(DuctworkError, match="not open yet"):
        _ = big_dw.actions.stream("files", "get", q(size=1)).status


async def test_stream_refuses_like_run_does(big_dw, big_server):
    with pytest.raises(HTTPStatusError) as caught:
        async with big_dw.actions.stream("files", "get", q(size=10, status=403)):
            pass
    assert caught.value.status == 403
    with pytest.raises(ValidationError, match=r"query\.size: expected string"):
        async with big_dw.actions.stream("files", "get", {"size": 5}):
            pass
    with pytest.raises(NotFoundError, match="no action 'gte'"):
        async with big_dw.actions.stream("files", "gte"):
            pass
    rid = big_server.new_id()
    with pytest.raises(ProviderError, match=f"announced a body of {BIG} bytes"):
        async with big_dw.actions.stream("files", "get", q(size=BIG, id=rid), max_size=LIMIT):
            pass
    assert big_server.state.finished(rid) < 16 * MiB
    rid = big_server.new_id()
    received = 0
    with pytest.raises(ProviderError, match=f"sent more than {LIMIT} bytes"):
        async with big_dw.actions.stream(
            "files", "get", q(size=BIG, cl=0, id=rid), max_size=LIMIT
        ) as response:
            async for chunk in response:
                received += len(chunk)
    assert received <= LIMIT
    assert big_server.state.finished(rid) < LIMIT + 16 * MiB


async def test_stream_retries_before_the_first_byte_only(big_dw, big_server):
    rid = big_server.new_id()
    async with big_dw.actions.stream("files", "get", q(size=1000, fail=2, id=rid)) as response:
        assert response.attempts == 3 and response.status == 200
        assert b"".join([c async for c in response]) == big_server.expected(1000)
    rid = big_server.new_id()
    received = 0
    with pytest.raises(ConnectionFailedError, match="not retried once a chunk") as caught:
        async with big_dw.actions.stream("files", "get", q(size=4 * MiB, cut=MiB, id=rid)) as r:
            async for chunk in r:
                received += len(chunk)
    assert received == MiB and "after 1048576 bytes" in str(caught.value)
    assert big_server.state.hits[rid] == 1


async def test_run_retries_a_body_cut_short_since_nothing_was_handed_out(big_dw, big_server):
    rid = big_server.new_id()
    result = await big_dw.actions.run("files", "get", q(size=MiB, cut=1000, cut_once=1, id=rid))
    assert result.attempts == 2 and result.body == big_server.expected(MiB)


async def test_leaving_or_cancelling_a_stream_closes_the_response(big_dw, big_server):
    rid = big_server.new_id()
    async with big_dw.actions.stream("files", "get", q(size=BIG, id=rid)) as response:
        await anext(response)
    assert big_server.state.finished(rid) < 16 * MiB
    rid = big_server.new_id()
    first = asyncio.Event()

    async def reader() -> None:
        async with big_dw.actions.stream("files", "get", q(size=BIG, id=rid)) as response:
            async for _ in response:
                first.set()

    task = asyncio.create_task(reader())
    await asyncio.wait_for(first.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert big_server.state.finished(rid) < 16 * MiB


@pytest.mark.parametrize("args", [{"cl": 1}, {"cl": 0}, {"enc": "gzip"}])
async def test_save_to_streams_the_body_into_storage(big_dw, big_server, args):
    size = 3 * MiB + 5
    result = await big_dw.actions.run(
        "files", "get", q(size=size, ctype="text/csv", **args), save_to=("files", "out/a.csv")
    )
    assert result.status == 200 and result.body is None
    assert result.saved is not None
    assert (result.saved.storage, result.saved.key, result.saved.size) == (
        "files",
        "out/a.csv",
        size,
    )
    assert result.saved.content_type == "text/csv"
    digest = hashlib.sha256()
    async for chunk in big_dw.storage.stream("files", "out/a.csv"):
        digest.update(chunk)
    assert digest.hexdigest() == big_server.sha256(size)
    assert ActionResult.from_dict(result.to_dict()) == result


async def test_save_to_is_checked_before_anything_is_sent(big_dw, big_server):
    rid = big_server.new_id()
    args = q(size=10, id=rid)
    with pytest.raises(NotFoundError, match="nope"):
        await big_dw.actions.run("files", "get", args, save_to=("nope", "k"))
    with pytest.raises(InvalidKeyError):
        await big_dw.actions.run("files", "get", args, save_to=("files", "../k"))
    with pytest.raises(ValidationError, match="a \\(storage tag, key\\) pair"):
        await big_dw.actions.run("files", "get", args, save_to="files/k")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="save_to and cache do not go together"):
        await big_dw.actions.run("files", "get", args, save_to=("files", "k"), cache="hot")
    with pytest.raises(InvalidKeyError):
        await big_dw.actions.dispatch("files", "get", args, save_to=("files", "/k"))
    assert big_server.state.hits[rid] == 0 and await big_dw.jobs.list() == []


async def test_a_failed_save_leaves_nothing_stored(big_dw, big_server):
    with pytest.raises(ProviderError, match="sent more than 1000 bytes"):
        await big_dw.actions.run(
            "files", "get", q(size=5000, cl=0), save_to=("files", "k"), max_size=1000
        )
    with pytest.raises(ConnectionFailedError):
        await big_dw.actions.run(
            "files", "get", q(size=2 * MiB, cut=MiB + 1), save_to=("files", "k")
        )
    assert not await big_dw.storage.exists("files", "k")


async def test_a_dispatched_action_saves_to_storage(big_dw, big_server):
    size = 2 * MiB + 3
    job = await big_dw.actions.dispatch(
        "files", "get", q(size=size, cl=0), save_to=("files", "later.bin"), max_size=4 * MiB
    )
    worker = Worker(big_dw, await big_dw.jobs.store(), poll_interval=0.02, tick=0.1, burst=True)
    await asyncio.wait_for(worker.run(), 60)
    found = await big_dw.jobs.get(job.job_id)
    assert found.status == "succeeded", found
    saved = found.result["saved"]
    assert saved["storage"] == "files" and saved["key"] == "later.bin" and saved["size"] == size
    data = await big_dw.storage.read_file("files", "later.bin")
    assert hashlib.sha256(data).hexdigest() == big_server.sha256(size)


def test_the_cli_saves_a_body_to_storage_and_refuses_a_big_one(big_server, tmp_path):
    import json

    import yaml
    from click.testing import CliRunner
    from ductwork.cli.app import cli

    path = tmp_path / "ductwork.yaml"
    path.write_text(yaml.safe_dump(big_server.config(tmp_path)))
    base = ["-c", str(path), "--env", "dev", "actions", "run", "files", "get"]
    runner = CliRunner()
    size = MiB + 7
    done = runner.invoke(
        cli, [*base, "-i", json.dumps(q(size=size, cl=0)), "--save-to", "files:cli/out.bin"]
    )
    assert done.exit_code == 0, done.output
    assert f"saved {size} bytes to files:cli/out.bin" in done.output
    assert (tmp_path / "files" / "cli" / "out.bin").read_bytes() == big_server.expected(size)
    done = runner.invoke(cli, [*base, "-i", json.dumps(q(size=5000)), "--max-size", "4096"])
    assert done.exit_code != 0 and "max_response_size of 4096 bytes" in done.output
    done = runner.invoke(cli, [*base, "--save-to", "files"])
    assert done.exit_code != 0 and "--save-to must be STORAGE:KEY" in done.output


def test_the_sync_facade_streams_as_an_iterator_and_saves(big_server, tmp_path):
    config = Config.from_dict(big_server.config(tmp_path), root=tmp_path)
    with SyncDuctwork(Ductwork(config, env="dev")) as sdw:
        with sdw.actions.stream("files", "get", q(size=MiB + 1)) as response:
            assert response.status == 200
            assert response.headers["content-length"] == str(MiB + 1)
            body = b"".join(response)
        assert body == big_server.expected(MiB + 1)
        assert b"".join(sdw.actions.stream("files", "get", q(size=10))) == big_server.expected(10)
        rid = big_server.new_id()
        with sdw.actions.stream("files", "get", q(size=BIG, id=rid)) as response:
            next(response)
        assert big_server.state.finished(rid) < 16 * MiB
        result = sdw.actions.run("files", "get", q(size=1234), save_to=("files", "s.bin"))
        assert result.saved.size == 1234
