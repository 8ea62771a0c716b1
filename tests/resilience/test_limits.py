"""Usage limits: counted atomically in the embedded cache or Redis, refused before any call."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from ductwork.client import Ductwork
from ductwork.errors import RateLimitedError
from ductwork.features.functions import register_function
from ductwork.resilience.guard import guard_for

from .conftest import Vendors, make_config, provider

REDIS = "redis://127.0.0.1:6379/0"
CALLS: Counter[str] = Counter()


async def _counted(user: str) -> dict[str, str]:
    CALLS[user] += 1
    await asyncio.sleep(0)  # let the other calls interleave
    return {"user": user}


register_function("resilience_counted", _counted)


def config(limits: dict[str, object]):
    return make_config(
        {
            "caches": {"shared": {"dev": {"provider": "redis", "url": REDIS}}},
            "quotas": {
                "sms": {
                    "input": {"user_id": "str"},
                    "limits": limits,
                    "providers": [
                        {
                            "name": "only",
                            "type": "function",
                            "target": "resilience_counted",
                            "input": {"user": "{{ input.user_id }}"},
                        }
                    ],
                }
            },
        }
    )


@pytest.mark.parametrize("cache", [None, "shared"])
async def test_200_concurrent_calls_against_max_100_let_exactly_100_through(cache):
    limits: dict[str, object] = {"key": "{{ input.user_id }}", "max": 100, "per": "1m"}
    if cache:
        limits["cache"] = cache
    user = f"u-{cache}-{id(limits)}"
    async with Ductwork(config(limits), env="dev") as dw:
        guard_for(dw).clock = lambda: 6_000_015.0  # 15 s into a one-minute window
        try:
            outcomes = await asyncio.gather(
                *(dw.quotas.run("sms", {"user_id": user}) for _ in range(200)),
                return_exceptions=True,
            )
            passed = [o for o in outcomes if not isinstance(o, BaseException)]
            refused = [o for o in outcomes if isinstance(o, RateLimitedError)]
            assert len(passed) == 100 and len(refused) == 100
            assert CALLS[user] == 100  # refused calls reached no provider
            assert all(r.retry_after == pytest.approx(45.0) for r in refused)
            assert refused[0].limit == "quotas.sms.limits"
            other = await dw.quotas.run("sms", {"user_id": user + "-other"})  # its own count
            assert other.output == {"user": user + "-other"}
        finally:
            if cache:
                await dw.caches.clear(cache)


async def test_a_new_window_lets_calls_through_again():
    now = [6_000_000.0]
    async with Ductwork(config({"max": 2, "per": "10s"}), env="dev") as dw:
        guard_for(dw).clock = lambda: now[0]
        for _ in range(2):
            await dw.quotas.run("sms", {"user_id": "a"})
        with pytest.raises(RateLimitedError) as caught:
            await dw.quotas.run("sms", {"user_id": "b"})  # key "all": one count for everyone
        assert caught.value.retry_after == pytest.approx(10.0)
        assert "user" not in str(caught.value)  # the key's value is not echoed
        now[0] += 10
        await dw.quotas.run("sms", {"user_id": "a"})


async def test_action_limits_refuse_before_the_request_is_sent(vendors: Vendors):
    apps = vendors.apps()
    apps["alpha"]["actions"]["send"]["limits"] = {"key": "{{ input.to }}", "max": 2, "per": "1h"}
    async with Ductwork(make_config({"apps": apps}), env="dev") as dw:
        guard_for(dw).clock = lambda: 7_200_000.0
        for _ in range(2):
            await dw.actions.run("alpha", "send", {"to": "x"})
        with pytest.raises(RateLimitedError) as caught:
            await dw.actions.run("alpha", "send", {"to": "x"})
        assert caught.value.limit == "apps.alpha.actions.send.limits"
        assert caught.value.retry_after == pytest.approx(3600.0)
        await dw.actions.run("alpha", "send", {"to": "y"})  # another key
    assert vendors.hits["alpha"] == 3


async def test_fallback_limits_apply_too(vendors: Vendors):
    config = make_config(
        {
            "apps": vendors.apps(),
            "fallbacks": {
                "pay": {"limits": {"max": 1, "per": "1h"}, "providers": [provider("alpha")]}
            },
        }
    )
    async with Ductwork(config, env="dev") as dw:
        guard_for(dw).clock = lambda: 7_200_000.0
        await dw.fallbacks.run("pay", {"to": "x"})
        with pytest.raises(RateLimitedError):
            await dw.fallbacks.run("pay", {"to": "x"})
    assert vendors.hits["alpha"] == 1
