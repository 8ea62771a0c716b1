"""Every kind of target behind one fallback: database action, notification, feature."""

from __future__ import annotations

import math

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import AllProvidersFailedError, ConfigError, NotFoundError, ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import make_config


def config(root):
    return make_config(
        {
            "databases": {
                "main": {
                    "dev": {"provider": "sqlite", "path": str(root / "main.db")},
                    "actions": {
                        "broken": {
                            "query": "SELECT * FROM no_such_table WHERE id = :id",
                            "input": {"id": "int"},
                            "result": "one",
                        },
                        "answer": {
                            "query": "SELECT :id * 2 AS doubled",
                            "input": {"id": "int"},
                            "result": "one",
                        },
                    },
                }
            },
            "notifications": {
                "mail": {
                    "dev": {"provider": "mailbox", "path": str(root / "outbox")},
                    "messages": {"note": {"email": {"subject": "n {{ n }}", "body": "b"}}},
                }
            },
            "features": {
                "double": {
                    "input": {"n": "int"},
                    "sequences": [
                        {
                            "tag": "s",
                            "steps": [
                                {
                                    "tag": "q",
                                    "type": "database",
                                    "target": "main:answer",
                                    "input": {"id": "{{ input.n }}"},
                                }
                            ],
                        }
                    ],
                    "output": {"doubled": "{{ steps.s.q.output.doubled }}"},
                }
            },
            "fallbacks": {
                "chain": {
                    "input": {"n": "int"},
                    "providers": [
                        {
                            "name": "db-broken",
                            "target": "main:broken",
                            "input": {"id": "{{ input.n }}"},
                        },
                        {
                            "name": "feature",
                            "target": "double",
                            "input": {"n": "{{ input.n }}"},
                            "output": {"value": "{{ result.doubled }}", "by": "feature"},
                        },
                    ],
                },
                "db": {
                    "input": {"n": "int"},
                    "providers": [
                        {
                            "name": "db",
                            "target": "main:answer",
                            "input": {"id": "{{ input.n }}"},
                            "output": {"value": "{{ result.doubled }}"},
                        }
                    ],
                },
                "broken": {
                    "providers": [
                        {
                            "name": "db-broken",
                            "target": "main:broken",
                            "input": {"id": 1},
                            "retries": 2,
                        }
                    ],
                },
                "mail": {
                    "providers": [
                        {
                            "name": "mail",
                            "target": "mail:note",
                            "input": {"to": "a@example.com", "data": {"n": "{{ input.n }}"}},
                            "output": {"to": "{{ result.to }}"},
                        }
                    ],
                },
            },
        },
        root=root,
    )


async def test_database_feature_and_notification_targets(tmp_path):
    async with Ductwork(config(tmp_path), env="dev") as dw:
        db = await dw.fallbacks.run("db", {"n": 4})
        assert db.output == {"value": 8} and db.provider == "db"
        chained = await dw.fallbacks.run("chain", {"n": 21})
        assert chained.providers_tried == ["db-broken", "feature"]
        assert chained.output == {"value": 42, "by": "feature"}
        sent = await dw.fallbacks.run("mail", {"n": 3})
        assert sent.output["to"] in (["a@example.com"], "a@example.com")
        with pytest.raises(NotFoundError, match="no fallback 'nope'"):
            await dw.fallbacks.run("nope", {})
        with pytest.raises(NotFoundError, match="no provider 'x'"):
            await dw.fallbacks.breaker_state("db", "x")


async def test_a_failing_database_target_is_listed_and_bad_input_refused(tmp_path):
    async with Ductwork(config(tmp_path), env="dev") as dw:
        with pytest.raises(ValidationError, match="fallback 'chain': input does not match"):
            await dw.fallbacks.run("chain", {"n": "x"})
        with pytest.raises(AllProvidersFailedError) as caught:
            await dw.fallbacks.run("broken", {})
    (failure,) = caught.value.failures
    assert failure.attempts == 3 and "no_such_table" in failure.error


weights = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-10, max_value=10**6),
)


@settings(deadline=None, max_examples=60)
@given(weights)
def test_weights_are_accepted_exactly_when_positive_and_finite(weight):
    data = {
        "product": "w",
        "environments": ["dev"],
        "features": {
            "f": {
                "sequences": [{"tag": "s", "steps": [{"tag": "t", "type": "sleep", "duration": 1}]}]
            }
        },
        "quotas": {"q": {"providers": [{"name": "a", "target": "f", "weight": weight}]}},
    }
    good = (
        not (isinstance(weight, float) and math.isnan(weight))
        and math.isfinite(weight)
        and weight > 0
    )
    if good:
        assert (
            Config.from_dict(data).product.resilience_plans.quotas["q"].providers[0].weight
            == weight
        )
    else:
        with pytest.raises(ConfigError, match=r"quotas\.q\.providers\.(a|0)\.weight"):
            Config.from_dict(data)
