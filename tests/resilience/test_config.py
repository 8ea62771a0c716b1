"""Bad quotas and fallbacks are refused at load and by `ductwork config validate`, named."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from ductwork.cli.app import cli
from ductwork.config.loader import Config
from ductwork.errors import ConfigError

APPS = {
    "twilio": {
        "dev": {"base_url": "http://127.0.0.1:9"},
        "actions": {"send": {"method": "POST", "path": "/send", "body": {"to": "str"}}},
    },
    "mail": {  # an app and a notifier of the same tag, both with 'send'
        "dev": {"base_url": "http://127.0.0.1:9"},
        "actions": {"send": {"method": "POST", "path": "/send"}},
    },
}
BASE: dict[str, Any] = {
    "product": "shop",
    "environments": ["dev"],
    "apps": APPS,
    "notifications": {
        "mail": {"dev": {"provider": "mailbox"}, "messages": {"send": {"email": {"body": "hi"}}}}
    },
    "healthchecks": {"twilio-up": {"probe": {"action": "twilio:send"}}},
}


def load(section: str, body: dict[str, Any]) -> Config:
    return Config.from_dict({**BASE, section: {"sms": body}})


def one(**fields: Any) -> dict[str, Any]:
    return {"providers": [{"name": "tw", "target": "twilio:send", **fields}]}


CASES = [
    ("quotas", one(weight=0), "quotas.sms.providers.tw.weight", "positive number"),
    ("quotas", one(weight=-3), "quotas.sms.providers.tw.weight", "positive number"),
    ("quotas", one(weight="seventy"), "quotas.sms.providers.0.weight", "valid number"),
    ("quotas", one(weight=float("inf")), "quotas.sms.providers.tw.weight", "positive number"),
    ("quotas", {"providers": []}, "quotas.sms.providers", "no providers"),
    ("fallbacks", {"providers": []}, "fallbacks.sms.providers", "no providers"),
    ("fallbacks", {}, "fallbacks.sms.providers", "no providers"),
    (
        "fallbacks",
        {"providers": [{"name": "x", "target": "twilio:sned"}]},
        "fallbacks.sms.providers.x.target",
        "does not exist",
    ),
    (
        "quotas",
        {"providers": [{"name": "x", "target": "nowhere"}]},
        "quotas.sms.providers.x.target",
        "does not exist",
    ),
    (
        "quotas",
        {"providers": [{"name": "x", "target": "mail:send"}]},
        "quotas.sms.providers.x.target",
        "set 'type'",
    ),
    (
        "quotas",
        {"providers": [{"name": "x", "type": "database", "target": "twilio:send"}]},
        "quotas.sms.providers.x.target",
        "unknown databases resource",
    ),
    (
        "quotas",
        {"providers": [{"name": "x", "type": "storage", "target": "files"}]},
        "quotas.sms.providers.x.type",
        "cannot be a provider",
    ),
    ("fallbacks", one(healthcheck="nope"), "fallbacks.sms.providers.tw.healthcheck", "nope"),
    (
        "quotas",
        {**one(), "healthcheck": "nope"},
        "quotas.sms.providers.tw.(the group's) healthcheck",
        "no healthcheck 'nope'",
    ),
    (
        "quotas",
        one(output={"id": "{{ reslt.body.sid }}"}),
        "quotas.sms.providers.tw.output.id",
        "undefined name(s) reslt",
    ),
    (
        "fallbacks",
        one(input={"to": "{{ inptu.to }}"}),
        "fallbacks.sms.providers.tw.input.to",
        "undefined name(s) inptu",
    ),
    (
        "fallbacks",
        {**one(), "limits": {"key": "{{ input.user", "max": 1, "per": "1m"}},
        "fallbacks.sms.limits.key",
        "does not parse",
    ),
    (
        "fallbacks",
        {**one(), "limits": {"max": 1, "per": "1m", "cache": "redis"}},
        "fallbacks.sms.limits.cache",
        "no cache 'redis'",
    ),
    (
        "fallbacks",
        one(breaker={"cache": "redis"}),
        "fallbacks.sms.providers.tw.breaker.cache",
        "no cache 'redis'",
    ),
    (
        "quotas",
        {"providers": [{"name": "a", "target": "twilio:send"}] * 2},
        "quotas.sms.providers",
        "repeated: a",
    ),
]


@pytest.mark.parametrize(("section", "body", "path", "message"), CASES)
def test_bad_definitions_name_the_place(section, body, path, message):
    with pytest.raises(ConfigError) as caught:
        load(section, body)
    assert path in str(caught.value) and message in str(caught.value)


def test_good_definitions_compile():
    config = Config.from_dict(
        {
            **BASE,
            "quotas": {
                "sms": {
                    "input": {"to": "str"},
                    "healthcheck": "twilio-up",
                    "limits": {"key": "{{ input.to }}", "max": 5, "per": "1m"},
                    "providers": [
                        {"name": "tw", "target": "twilio:send", "weight": 70},
                        {
                            "name": "mail",
                            "type": "notification",
                            "target": "mail:send",
                            "weight": 30,
                            "input": {"to": "{{ input.to }}@example.com"},
                        },
                    ],
                }
            },
            "fallbacks": {"pay": {"providers": [{"name": "tw", "target": "twilio:send"}]}},
        }
    )
    plans = config.product.resilience_plans
    quota = plans.quotas["sms"]
    assert [(p.name, p.step.type, p.weight) for p in quota.providers] == [
        ("tw", "action", 70.0),
        ("mail", "notification", 30.0),
    ]
    assert [p.healthcheck for p in quota.providers] == ["twilio-up", "twilio-up"]
    assert plans.fallbacks["pay"].providers[0].breaker is not None


def test_features_can_call_quotas_and_only_known_ones():
    feature = {
        "sequences": [{"tag": "s", "steps": [{"tag": "q", "type": "quota", "target": "nope"}]}]
    }
    with pytest.raises(ConfigError, match=r"features\.f\.s\.q\.target: no quota 'nope'"):
        Config.from_dict({**BASE, "features": {"f": feature}})


def test_config_validate_refuses_a_bad_quota(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ductwork.yaml").write_text(
        yaml.safe_dump({**BASE, "quotas": {"sms": one(weight=0)}})
    )
    result = CliRunner().invoke(cli, ["config", "validate"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "quotas.sms.providers.tw.weight" in result.output and "positive" in result.output
