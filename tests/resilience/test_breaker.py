"""Circuit breakers: closed → open → half-open → closed/open, on a controllable clock.

And the state shared by two processes through a Redis cache resource.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.resilience.guard import guard_for

from .conftest import Vendors, make_config, provider, unique_product

REDIS = "redis://127.0.0.1:6379/0"


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def sections(vendors: Vendors, breaker: dict[str, object]) -> dict[str, object]:
    return {
        "apps": vendors.apps(),
        "fallbacks": {
            "pay": {
                "breaker": False,
                "providers": [provider("alpha", breaker=breaker), provider("beta")],
            }
        },
    }


async def test_open_after_consecutive_failures_then_half_open_probe(vendors):
    config = make_config(sections(vendors, {"failures": 3, "cooldown": "10s"}))
    clock = Clock()
    vendors.mode["alpha"] = "503"
    async with Ductwork(config, env="dev") as dw:
        guard_for(dw).clock = clock

        async def call() -> list[str]:
            return (await dw.fallbacks.run("pay", {"to": "n"})).providers_tried

        async def state() -> str:
            return await dw.fallbacks.breaker_state("pay", "alpha")

        for _ in range(2):
            assert await call() == ["alpha", "beta"]
        assert await state() == "closed"
        assert await call() == ["alpha", "beta"]  # the third failure in a row opens it
        assert await state() == "open" and vendors.hits["alpha"] == 3

        assert await call() == ["beta"]  # open: alpha is not called at all
        assert vendors.hits["alpha"] == 3
        clock.now += 9.9
        assert await state() == "open" and await call() == ["beta"]

        clock.now += 0.1  # the cool-down is over: one probe
        assert await state() == "half_open"
        assert await call() == ["alpha", "beta"]  # the probe fails: open again
        assert await state() == "open" and vendors.hits["alpha"] == 4
        assert await call() == ["beta"]

        clock.now += 10
        vendors.mode["alpha"] = "ok"  # recovered
        results = await asyncio.gather(*(call() for _ in range(5)))  # only one may probe
        assert sorted(results) == [["alpha"]] + [["beta"]] * 4
        assert vendors.hits["alpha"] == 5
        assert await state() == "closed"
        assert await call() == ["alpha"]


async def test_a_success_resets_the_streak(vendors):
    config = make_config(sections(vendors, {"failures": 2, "cooldown": "10s"}))
    async with Ductwork(config, env="dev") as dw:
        guard_for(dw).clock = Clock()
        for _ in range(3):
            vendors.mode["alpha"] = "503"
            assert (await dw.fallbacks.run("pay", {"to": "n"})).provider == "beta"
            vendors.mode["alpha"] = "ok"
            assert (await dw.fallbacks.run("pay", {"to": "n"})).provider == "alpha"
        assert await dw.fallbacks.breaker_state("pay", "alpha") == "closed"


async def test_open_on_a_failure_rate_over_a_window(vendors):
    breaker = {"failures": 100, "rate": 0.5, "window": "60s", "min_calls": 4, "cooldown": "5s"}
    config = make_config(sections(vendors, breaker))
    clock = Clock()
    async with Ductwork(config, env="dev") as dw:
        guard_for(dw).clock = clock
        state = lambda: dw.fallbacks.breaker_state("pay", "alpha")  # noqa: E731
        for mode in ("ok", "ok", "503"):
            vendors.mode["alpha"] = mode
            await dw.fallbacks.run("pay", {"to": "n"})
        assert await state() == "closed"  # 1 failure in 3 calls: under min_calls
        await dw.fallbacks.run("pay", {"to": "n"})  # 2 of 4 failed: rate 0.5 reached
        assert await state() == "open"
        clock.now += 5
        vendors.mode["alpha"] = "ok"
        assert (await dw.fallbacks.run("pay", {"to": "n"})).provider == "alpha"
        assert await state() == "closed"


async def test_quota_circuits_drop_a_provider_from_the_pick(vendors):
    config = make_config(
        {
            "apps": vendors.apps(),
            "quotas": {
                "sms": {
                    "breaker": {"failures": 1, "cooldown": "1h"},
                    "providers": [provider("alpha", weight=99), provider("beta", weight=1)],
                }
            },
        }
    )
    vendors.mode["alpha"] = "503"
    async with Ductwork(config, env="dev") as dw:
        guard_for(dw).clock = Clock()
        while vendors.hits["alpha"] == 0:  # until alpha is picked once (weight 99: soon)
            await dw.quotas.run("sms", {"to": "n"})
        assert await dw.quotas.breaker_state("sms", "alpha") == "open"
        for _ in range(20):
            result = await dw.quotas.run("sms", {"to": "n"})
            assert result.providers_tried == ["beta"]
    assert vendors.hits["alpha"] == 1


SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from ductwork.client import Ductwork

    async def main():
        async with Ductwork.from_config(sys.argv[1], env="dev") as dw:
            state = await dw.fallbacks.breaker_state("pay", "alpha")
            result = await dw.fallbacks.run("pay", {"to": "other"})
            print(json.dumps({"state": state, "tried": result.providers_tried}))

    asyncio.run(main())
    """
)


async def test_circuit_state_is_shared_across_processes_through_redis(vendors, tmp_path: Path):
    data = {
        "product": unique_product(),
        "environments": ["dev"],
        "caches": {"shared": {"dev": {"provider": "redis", "url": REDIS}}},
        **sections(vendors, {"failures": 2, "cooldown": "1h", "cache": "shared"}),
    }
    path = tmp_path / "ductwork.yaml"
    path.write_text(yaml.safe_dump(data))
    vendors.mode["alpha"] = "503"
    async with Ductwork(Config.load(path), env="dev") as dw:
        try:
            for _ in range(2):
                await dw.fallbacks.run("pay", {"to": "n"})
            assert await dw.fallbacks.breaker_state("pay", "alpha") == "open"
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                SCRIPT,
                str(path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            seen = json.loads(out.decode().strip().splitlines()[-1])
            assert seen == {"state": "open", "tried": ["beta"]}  # the other process skipped it
            assert vendors.hits["alpha"] == 2
        finally:
            await dw.caches.clear("shared")
