"""Quotas and fallbacks against real HTTP vendors that fail on command and recover."""

from __future__ import annotations

import pytest
from ductwork.client import Ductwork
from ductwork.errors import AllProvidersFailedError, ProviderError

from .conftest import Vendors, make_config, provider


def product(vendors: Vendors, *, down: tuple[str, ...] = (), **extra: object):
    return make_config(
        {
            "apps": vendors.apps(timeout="1s", down=down),
            "quotas": {
                "sms": {
                    "input": {"to": "str"},
                    "breaker": False,
                    "providers": [
                        provider("alpha", weight=70),
                        provider("beta", weight=30),
                    ],
                }
            },
            "fallbacks": {
                "pay": {
                    "input": {"to": "str"},
                    "breaker": False,
                    "providers": [
                        provider("alpha", retries=1),
                        provider("beta"),
                        provider("gamma"),
                    ],
                }
            },
            **extra,
        }
    )


async def test_quota_answers_in_one_shape_whoever_answers(vendors):
    async with Ductwork(product(vendors), env="dev") as dw:
        seen = set()
        for i in range(40):
            result = await dw.quotas.run("sms", {"to": f"n{i}"})
            assert set(result.output) == {"id", "vendor"}
            assert result.output["id"].endswith(f"-n{i}")
            assert result.providers_tried == [result.provider]
            assert result.was_healthy and result.retries_used == 0 and result.latency > 0
            seen.add(result.provider)
    assert seen == {"alpha", "beta"}
    assert vendors.hits["alpha"] + vendors.hits["beta"] == 40


@pytest.mark.parametrize("failure", ["503", "slow", "refused"])
async def test_quota_switches_to_another_provider_and_back(vendors, failure):
    down = ("alpha",) if failure == "refused" else ()
    if failure != "refused":
        vendors.mode["alpha"] = failure
    async with Ductwork(product(vendors, down=down), env="dev") as dw:
        dw.quotas.plan("sms")  # known
        switched = 0
        for i in range(12):
            result = await dw.quotas.run("sms", {"to": f"n{i}"})
            assert result.provider == "beta" and result.output["vendor"] == "beta"
            switched += result.providers_tried == ["alpha", "beta"]
        assert switched > 0  # alpha (weight 70) was picked first at least once, then beta
        if failure != "refused":  # the vendor recovers: alpha answers again
            vendors.mode["alpha"] = "ok"
            answered = {(await dw.quotas.run("sms", {"to": "x"})).provider for _ in range(20)}
            assert "alpha" in answered


async def test_fallback_walks_the_order_and_lists_every_failure(vendors):
    vendors.mode.update(alpha="503", beta="slow")
    async with Ductwork(product(vendors, down=("gamma",)), env="dev") as dw:
        with pytest.raises(AllProvidersFailedError) as caught:
            await dw.fallbacks.run("pay", {"to": "n1"})
        error = caught.value
        assert isinstance(error, ProviderError)
        assert [f.provider for f in error.failures] == ["alpha", "beta", "gamma"]
        alpha, beta, gamma = error.failures
        assert alpha.attempts == 2 and "HTTPStatusError" in alpha.error and "503" in alpha.error
        assert beta.attempts == 1 and "time" in beta.error.lower()
        assert gamma.attempts == 1 and "ConnectionFailedError" in gamma.error
        for name in ("alpha", "beta", "gamma"):
            assert name in str(error)
        assert vendors.hits["alpha"] == 2 and vendors.hits["beta"] == 1

        vendors.mode["beta"] = "ok"  # beta recovers: alpha still fails, beta answers
        result = await dw.fallbacks.run("pay", {"to": "n2"})
        assert result.provider == "beta" and result.providers_tried == ["alpha", "beta"]
        assert result.output == {"id": "B-n2", "vendor": "beta"} and result.retries_used == 1

        vendors.mode["alpha"] = "ok"  # alpha recovers: first in order answers
        result = await dw.fallbacks.run("pay", {"to": "n3"})
        assert result.provider == "alpha" and result.providers_tried == ["alpha"]
        assert result.output == {"id": "A-n3", "vendor": "alpha"}


async def test_retries_stay_on_a_provider_before_switching(vendors):
    vendors.mode["alpha"] = "503"
    async with Ductwork(product(vendors), env="dev") as dw:
        result = await dw.fallbacks.run("pay", {"to": "n"})
    assert result.provider == "beta" and result.retries_used == 1
    assert vendors.hits["alpha"] == 2


async def test_an_answer_the_output_mapping_cannot_read_is_a_failure(vendors):
    config = make_config(
        {
            "apps": vendors.apps(),
            "fallbacks": {
                "pay": {
                    "providers": [
                        # alpha answers {"sid": …}: this mapping reads a field it lacks
                        provider("alpha", output={"id": "{{ result.body.nothing.here }}"}),
                        provider("beta"),
                    ]
                }
            },
        }
    )
    async with Ductwork(config, env="dev") as dw:
        result = await dw.fallbacks.run("pay", {"to": "n"})
    assert result.provider == "beta" and result.providers_tried == ["alpha", "beta"]


async def test_secrets_never_reach_the_failure_list(vendors):
    vendors.mode["alpha"] = "503"
    apps = vendors.apps()
    apps["alpha"]["dev"]["auth"] = {"kind": "bearer", "token": "tok-very-secret-123"}
    apps["alpha"]["dev"]["base_url"] += "?key=tok-very-secret-123"
    config = make_config({"apps": apps, "fallbacks": {"pay": {"providers": [provider("alpha")]}}})
    async with Ductwork(config, env="dev") as dw:
        with pytest.raises(AllProvidersFailedError) as caught:
            await dw.fallbacks.run("pay", {"to": "n"})
    assert "tok-very-secret-123" not in str(caught.value)
    assert all("tok-very-secret-123" not in f.error for f in caught.value.failures)
