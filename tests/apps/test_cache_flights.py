"""cache= without stampedes: one upstream call per cold key, in a process and across processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import yaml
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import ValidationError

from .test_actions import app

COUNT = {"count": {"path": "/count", "query": {"q": "str"}}}
REDIS = "redis://127.0.0.1:6379/0"


def config(url: str, cache: dict) -> dict:
    return {
        "product": "shop",
        "environments": ["dev"],
        "caches": {"hot": cache},
        "apps": {"svc": app(url, COUNT)},
    }


def memory_cache() -> dict:
    """A memory cache of its own (memory caches of one namespace share values in a process)."""
    return {"dev": {"provider": "memory", "namespace": uuid.uuid4().hex}, "ttl": 60}


def redis_cache(**settings: object) -> dict:
    prefix = f"flights-{uuid.uuid4().hex}:"
    return {"dev": {"provider": "redis", "url": REDIS, "key_prefix": prefix}, "ttl": 60, **settings}


@pytest.mark.parametrize("cache", [memory_cache(), redis_cache()])
async def test_fifty_concurrent_cold_calls_make_one_upstream_call(server, cache):
    async with Ductwork(Config.from_dict(config(server.url, cache)), env="dev") as dw:
        results = await asyncio.gather(
            *(dw.actions.run("svc", "count", {"q": "cold"}, cache="hot") for _ in range(50))
        )
        assert server.state.hits["count"] == 1
        assert [r.cached for r in results].count(False) == 1
        assert {json.dumps(r.body) for r in results} == {'{"n": 1, "q": "cold"}'}
        again = await dw.actions.run("svc", "count", {"q": "cold"}, cache="hot")
        assert again.cached and server.state.hits["count"] == 1


async def test_an_upstream_error_reaches_every_caller_and_nothing_is_stored(make_client, server):
    dw = make_client({"svc": app(server.url, {"fail": {"path": "/status/500"}})})
    outcomes = await asyncio.gather(
        *(dw.actions.run("svc", "fail", cache="hot", retries=0) for _ in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(o, Exception) for o in outcomes)
    assert len({type(o) for o in outcomes}) == 1
    assert server.state.hits["status-500"] == 1
    with pytest.raises(type(outcomes[0])):
        await dw.actions.run("svc", "fail", cache="hot", retries=0)
    assert server.state.hits["status-500"] == 2


async def test_a_stale_value_is_served_while_one_caller_refreshes_it(server):
    cache = memory_cache()
    async with Ductwork(Config.from_dict(config(server.url, cache)), env="dev") as dw:
        policy = {"tag": "hot", "stale": "10m"}
        first = await dw.actions.run("svc", "count", {"q": "s"}, cache=policy)
        assert not first.cached and first.body["n"] == 1
        # Age the stored value past its ttl (within the stale window), as time would.
        [key] = (await dw.caches.list("hot", "actions:svc:count:")).keys
        envelope = await dw.caches.get("hot", key)
        await dw.caches.set("hot", key, {**envelope, "fresh_until": time.time() - 1})
        stale = await asyncio.gather(
            *(dw.actions.run("svc", "count", {"q": "s"}, cache=policy) for _ in range(10))
        )
        assert all(r.cached and r.body["n"] == 1 for r in stale)
        await dw._flights.drain()  # the one background refresh
        assert server.state.hits["count"] == 2
        fresh = await dw.actions.run("svc", "count", {"q": "s"}, cache=policy)
        assert fresh.cached and fresh.body["n"] == 2


async def test_cache_policies_are_checked(make_client, server):
    dw = make_client({"svc": app(server.url, COUNT)})
    with pytest.raises(ValidationError, match="cache= takes a cache's tag"):
        await dw.actions.run("svc", "count", {"q": "x"}, cache={"tag": "hot", "lok": True})
    assert server.state.hits["count"] == 0


_CHILD = """
import asyncio, json, sys
from ductwork.client import Ductwork

async def main():
    async with Ductwork.from_config(sys.argv[1], env="dev") as dw:
        await dw.caches.get("hot", "warm-up")  # connected before the start line
        await dw.actions.client("svc")
        print("ready", flush=True)
        sys.stdin.readline()
        results = await asyncio.gather(
            *(dw.actions.run("svc", "count", {"q": "fleet"}, cache="hot") for _ in range(50))
        )
        print(json.dumps([r.cached for r in results]), flush=True)

asyncio.run(main())
"""


def test_four_processes_with_the_lock_make_one_upstream_call(server, tmp_path):
    file = tmp_path / "ductwork.yaml"
    file.write_text(yaml.safe_dump(config(server.url, redis_cache(lock=True))))
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD))
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:  # all four are connected: start them together
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        flags = [json.loads(child.communicate(timeout=60)[0]) for child in children]
    finally:
        for child in children:
            child.kill() if child.poll() is None else None
    assert [child.returncode for child in children] == [0, 0, 0, 0]
    assert server.state.hits["count"] == 1
    assert sum(flag.count(False) for flag in flags) == 1


async def test_concurrent_feature_runs_share_a_cached_steps_call(server):
    data = config(server.url, memory_cache())
    step = {
        "tag": "count",
        "type": "action",
        "target": "svc:count",
        "input": {"q": "{{ input.q }}"},
        "cache": {"tag": "hot", "ttl": "1m"},
    }
    data["features"] = {
        "lookup": {
            "input": {"q": "str"},
            "sequences": [{"tag": "s", "steps": [step]}],
            "output": "{{ steps.s.count.output.body.n }}",
        }
    }
    async with Ductwork(Config.from_dict(data), env="dev") as dw:
        q = uuid.uuid4().hex
        outputs = await asyncio.gather(*(dw.features.run("lookup", {"q": q}) for _ in range(20)))
    assert server.state.hits["count"] == 1
    assert set(outputs) == {1}
