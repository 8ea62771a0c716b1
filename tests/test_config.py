"""Loading ductwork.yaml: structure, env choice, provider options, references, errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ductwork import ConfigError, MissingDependencyError, NotFoundError, UnknownProviderError
from ductwork.config.durations import parse_duration
from ductwork.config.loader import Config
from ductwork.demo import sample_config
from hypothesis import given, settings
from hypothesis import strategies as st

BASE = yaml.safe_load(sample_config())


def load(data, tmp_path: Path | None = None) -> Config:
    return Config.from_dict(data, root=tmp_path, file=Path("ductwork.yaml"))


def test_sample_config_validates_in_every_env(tmp_path):
    cfg = load(BASE, tmp_path)
    for env in cfg.product.environments:
        assert len(cfg.validate(env)) == 5


def test_typo_in_a_provider_option_names_env_resource_and_field(tmp_path):
    data = copy.deepcopy(BASE)
    data["storage"]["files"]["prd"] = {"provider": "local", "pth": "x"}
    cfg = load(data, tmp_path)
    cfg.validate("dev")  # the other env is unaffected
    with pytest.raises(ConfigError) as info:
        cfg.validate("prd")
    message = str(info.value)
    assert "ductwork.yaml" in message
    assert "env 'prd'" in message
    assert "storage.files.prd.pth" in message
    assert "did you mean 'path'" in message


def test_provider_from_an_uninstalled_extra_names_the_install_command(tmp_path, monkeypatch):
    data = copy.deepcopy(BASE)
    data["storage"]["files"]["prd"] = {"provider": "s3", "bucket": "b"}
    from ductwork import plugins

    monkeypatch.setenv(plugins.AUTOLOAD_ENV, "1")
    plugins.reset_registry()
    try:
        with pytest.raises(MissingDependencyError) as info:
            load(data, tmp_path).resolve("storage", "files", "prd")
    finally:
        monkeypatch.delenv(plugins.AUTOLOAD_ENV)
        plugins.reset_registry()
    assert 'pip install "ductwork[s3]"' in str(info.value)
    assert info.value.install == 'pip install "ductwork[s3]"'


def test_unknown_provider_suggests_the_closest(tmp_path):
    data = copy.deepcopy(BASE)
    data["caches"]["hot"]["prd"] = {"provider": "memroy"}
    with pytest.raises(UnknownProviderError, match="did you mean 'memory'"):
        load(data, tmp_path).resolve("caches", "hot", "prd")


def test_a_key_that_is_neither_env_nor_setting_is_refused_at_load():
    data = copy.deepcopy(BASE)
    data["caches"]["hot"]["stg"] = {"provider": "memory"}
    with pytest.raises(ConfigError) as info:
        load(data)
    assert "caches.hot.stg" in str(info.value)
    assert "not an environment" in str(info.value)


def test_missing_env_settings_say_what_to_add(tmp_path):
    data = copy.deepcopy(BASE)
    del data["caches"]["hot"]["prd"]
    with pytest.raises(ConfigError, match=r"caches.hot has no settings for env 'prd'"):
        load(data, tmp_path).validate("prd")


def test_env_comes_from_argument_then_variable_then_default(monkeypatch):
    cfg = load(BASE)
    assert cfg.env_name() == "dev"
    monkeypatch.setenv("DUCTWORK_ENV", "prd")
    assert cfg.env_name() == "prd"
    assert cfg.env_name("dev") == "dev"
    with pytest.raises(ConfigError, match="did you mean 'prd'"):
        cfg.env_name("prod")


def test_default_env_must_be_listed():
    data = {**BASE, "default_env": "stg"}
    with pytest.raises(ConfigError, match="default_env 'stg' is not one of environments"):
        load(data)


def test_invalid_yaml_names_the_line(tmp_path):
    file = tmp_path / "ductwork.yaml"
    file.write_text("product: shop\nenvironments: [dev\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        Config.load(file)


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="ductwork init"):
        Config.load(tmp_path / "nope.yaml")


def test_unknown_resource_tag_suggests_the_closest():
    with pytest.raises(NotFoundError, match="did you mean 'files'"):
        load(BASE).resource("storage", "file")


def test_references_resolve_and_are_redacted_in_show(tmp_path, monkeypatch):
    secret = "s3cr3t-value-never-printed"
    (tmp_path / "token.txt").write_text("file-secret-value\n")
    data = copy.deepcopy(BASE)
    data["storage"]["files"]["prd"] = {"provider": "local", "path": "${env:FILES_ROOT}/x"}
    data["caches"]["hot"]["prd"] = {"provider": "memory", "namespace": "${file:token.txt}"}
    data["brokers"]["bus"]["prd"] = {"provider": "memory", "namespace": "${secret:BUS_NS}"}
    monkeypatch.setenv("FILES_ROOT", secret)
    monkeypatch.setenv("BUS_NS", "another-secret-ns")
    cfg = load(data, tmp_path)
    resolved = cfg.resolve("storage", "files", "prd")
    assert resolved.options.path == f"{secret}/x"  # type: ignore[attr-defined]
    assert cfg.resolve("caches", "hot", "prd").options.namespace == "file-secret-value"  # type: ignore[attr-defined]
    shown = yaml.safe_dump(cfg.show("prd"))
    for value in (secret, "file-secret-value", "another-secret-ns"):
        assert value not in shown
    assert "***" in shown


def test_reference_default_is_used_when_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    data = copy.deepcopy(BASE)
    data["caches"]["hot"]["prd"] = {
        "provider": "memory",
        "namespace": "${env:NOT_SET_ANYWHERE:-fallback}",
    }
    assert load(data, tmp_path).resolve("caches", "hot", "prd").options.namespace == "fallback"  # type: ignore[attr-defined]


def test_unset_reference_fails_naming_the_variable_only_for_its_env(tmp_path, monkeypatch):
    monkeypatch.delenv("MISSING_DB_PATH", raising=False)
    data = copy.deepcopy(BASE)
    data["databases"]["main"]["prd"] = {"provider": "sqlite", "path": "${env:MISSING_DB_PATH}"}
    cfg = load(data, tmp_path)
    cfg.validate("dev")
    with pytest.raises(ConfigError, match="MISSING_DB_PATH is not set") as info:
        cfg.validate("prd")
    assert "databases.main.prd.path" in str(info.value)


def test_action_input_types_are_checked_at_load():
    data = copy.deepcopy(BASE)
    data["databases"]["main"]["actions"]["get_user"]["input"] = {"id": "integer"}
    with pytest.raises(ConfigError, match="use one of"):
        load(data)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), (5, 5.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@given(st.text(max_size=12))
def test_bad_durations_never_pass_silently(text):
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert value >= 0


slugs = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    envs=st.lists(slugs, min_size=1, max_size=4, unique=True),
    tags=st.lists(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True),
        min_size=1,
        max_size=4,
        unique=True,
    ),
)
def test_any_well_formed_product_loads_and_resolves(envs, tags):
    data = {
        "product": "p",
        "environments": envs,
        "caches": {
            t: {e: {"provider": "memory", "namespace": f"{t}-{e}"} for e in envs} for t in tags
        },
    }
    cfg = load(data)
    for env in envs:
        assert {r.tag for r in cfg.validate(env)} == set(tags)


@settings(max_examples=60, deadline=None)
@given(extra=st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
def test_any_unknown_option_is_refused_with_its_path(extra):
    if extra in ("namespace", "max_entries", "provider"):
        return
    data = {
        "product": "p",
        "environments": ["dev"],
        "caches": {"c": {"dev": {"provider": "memory", extra: 1}}},
    }
    with pytest.raises(ConfigError) as info:
        load(data).validate("dev")
    assert f"caches.c.dev.{extra}" in str(info.value)


def test_secrets_are_masked_in_reprs_and_logs(tmp_path, monkeypatch, caplog):
    import logging

    from ductwork._redact import get_logger

    monkeypatch.setenv("NS_SECRET", "hidden-namespace-value")
    data = copy.deepcopy(BASE)
    data["caches"]["hot"]["prd"] = {"provider": "memory", "namespace": "${env:NS_SECRET}"}
    options = load(data, tmp_path).resolve("caches", "hot", "prd").options
    assert "hidden-namespace-value" not in repr(options)
    with caplog.at_level(logging.INFO, logger="ductwork.test"):
        get_logger("ductwork.test").info("connecting with %s", "hidden-namespace-value")
    assert "hidden-namespace-value" not in caplog.text
    assert "connecting with ***" in caplog.text


def test_url_passwords_are_masked_in_errors():
    from ductwork import ProviderError

    error = ProviderError("cannot connect to postgresql://app:pa55word@db:5432/app")
    assert "pa55word" not in str(error)
    assert "postgresql://app:***@db:5432/app" in str(error)


def test_references_in_resource_settings_resolve_at_load(monkeypatch):
    monkeypatch.setenv("TOPIC_NAME", "orders.placed.v2")
    data = copy.deepcopy(BASE)
    data["brokers"]["bus"]["topics"] = {
        "user_created": "${env:TOPIC_NAME}",
        "other": "${env:UNSET_TOPIC_ZZ:-fallback.topic}",
    }
    bus = load(data).product.brokers["bus"]
    assert bus.topics == {"user_created": "orders.placed.v2", "other": "fallback.topic"}


def test_a_top_level_key_named_envs_is_refused_clearly():
    with pytest.raises(ConfigError, match="envs"):
        load({**BASE, "envs": {}})


def test_a_plain_server_address_is_not_a_secret_but_urls_with_secrets_stay_hidden():
    from ductwork._redact import redact, register_secret

    register_secret("redis://127.0.0.1:6399/0")  # what errors show as the endpoint
    assert redact("endpoint=redis://127.0.0.1:6399/0") == "endpoint=redis://127.0.0.1:6399/0"
    register_secret("https://hooks.example.com/services/T0/B0/tok3n")  # secret in the path
    assert "tok3n" not in redact("posting to https://hooks.example.com/services/T0/B0/tok3n")
    register_secret("amqp://app:s3cr3tpw@mq.internal:5672/vh")
    assert "s3cr3tpw" not in redact("password s3cr3tpw was refused")
    register_secret("redis://127.0.0.1:6399/0?token=abc123")  # a query may carry a credential
    assert "abc123" not in redact("redis://127.0.0.1:6399/0?token=abc123")
