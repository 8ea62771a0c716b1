"""Weighted picks: a chi-square test against the configured weights; unhealthy providers."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from ductwork.client import Ductwork
from ductwork.errors import AllProvidersFailedError
from ductwork.features.functions import register_function
from ductwork.processor.health import Health, HealthState
from ductwork.resilience.guard import guard_for

from .conftest import make_config

# chi-square critical values at p = 0.001 (df = 1, 2): a fair picker fails 1 run in 1000
CRITICAL = {1: 10.828, 2: 13.816}
PICKS = 10_000


async def _vendor(vendor: str) -> dict[str, str]:
    return {"vendor": vendor}


register_function("resilience_vendor", _vendor)


def _provider(name: str, weight: float, healthcheck: str | None = None) -> dict[str, object]:
    found: dict[str, object] = {
        "name": name,
        "type": "function",
        "target": "resilience_vendor",
        "input": {"vendor": name},
        "weight": weight,
    }
    if healthcheck:
        found["healthcheck"] = healthcheck
    return found


def probed(*vendors: str) -> dict[str, object]:
    """Each vendor's status app (never called here) and a healthcheck probing it."""
    return {
        "apps": {
            n: {"dev": {"base_url": "http://127.0.0.1:9"}, "actions": {"status": {"path": "/"}}}
            for n in vendors
        },
        "healthchecks": {f"{n}-up": {"probe": {"action": f"{n}:status"}} for n in vendors},
    }


def config(weights: dict[str, float]):
    return make_config(
        {
            **probed(*weights),
            "quotas": {
                "sms": {"providers": [_provider(n, w, f"{n}-up") for n, w in weights.items()]}
            },
        }
    )


class Unhealthy(Health):
    """The health contract with some checks known unhealthy (the monitor is another part's)."""

    def __init__(self, client: Ductwork, down: set[str]) -> None:
        super().__init__(client)
        self.down = down

    async def status(self, env: str | None = None) -> dict[str, HealthState]:
        states = await super().status(env)
        return {
            t: HealthState(t, "unhealthy" if t in self.down else s.status)
            for t, s in states.items()
        }


def chi_square(counts: Counter[str], weights: dict[str, float]) -> float:
    total, share = sum(counts.values()), sum(weights.values())
    expected = {n: total * w / share for n, w in weights.items()}
    return sum((counts[n] - e) ** 2 / e for n, e in expected.items())


async def picks(dw: Ductwork, n: int = PICKS) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(n):
        result = await dw.quotas.run("sms", {})
        assert result.output == {"vendor": result.provider}
        counts[result.provider] += 1
    return counts


async def test_picks_follow_the_weights():
    weights = {"a": 50.0, "b": 30.0, "c": 20.0}
    async with Ductwork(config(weights), env="dev") as dw:
        guard_for(dw).random = random.Random(20261204)
        counts = await picks(dw)
    assert sum(counts.values()) == PICKS
    assert chi_square(counts, weights) < CRITICAL[2], counts


async def test_relative_weights_are_the_same_quota():
    """70/30 and 7/3 pick identically under the same seed."""
    found = []
    for weights in ({"a": 70.0, "b": 30.0}, {"a": 7.0, "b": 3.0}):
        async with Ductwork(config(weights), env="dev") as dw:
            guard_for(dw).random = random.Random(7)
            found.append(await picks(dw, 500))
    assert found[0] == found[1]


async def test_an_unhealthy_provider_gets_none_and_its_weight_is_spread():
    weights = {"a": 50.0, "b": 30.0, "c": 20.0}
    async with Ductwork(config(weights), env="dev") as dw:
        dw.health = Unhealthy(dw, {"a-up"})
        guard_for(dw).random = random.Random(99)
        counts = await picks(dw)
    assert counts["a"] == 0
    assert chi_square(counts, {"b": 30.0, "c": 20.0}) < CRITICAL[1], counts


async def test_when_none_is_healthy_all_are_tried_and_was_healthy_says_so():
    async with Ductwork(config({"a": 1.0, "b": 1.0}), env="dev") as dw:
        dw.health = Unhealthy(dw, {"a-up", "b-up"})
        result = await dw.quotas.run("sms", {})
    assert result.was_healthy is False and result.provider in ("a", "b")


async def test_fallback_skips_unhealthy_providers():
    register_function("resilience_broken", _broken)
    config = make_config(
        {
            **probed("a"),
            "fallbacks": {
                "pay": {
                    "providers": [
                        {
                            "name": "a",
                            "type": "function",
                            "target": "resilience_vendor",
                            "input": {"vendor": "a"},
                            "healthcheck": "a-up",
                        },
                        {"name": "b", "type": "function", "target": "resilience_broken"},
                    ]
                }
            },
        }
    )
    async with Ductwork(config, env="dev") as dw:
        assert (await dw.fallbacks.run("pay", {})).provider == "a"
        dw.health = Unhealthy(dw, {"a-up"})
        with pytest.raises(AllProvidersFailedError) as caught:
            await dw.fallbacks.run("pay", {})
    a, b = caught.value.failures
    assert (a.provider, a.attempts, a.error) == ("a", 0, "unhealthy (healthcheck a-up)")
    assert b.provider == "b" and "vendor down" in b.error


def _broken() -> None:
    raise RuntimeError("vendor down")
