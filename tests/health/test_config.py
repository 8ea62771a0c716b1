"""The healthchecks section: probes and alerts checked at load, each error naming its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ductwork.config.loader import Config
from ductwork.errors import ConfigError
from ductwork.health.models import HealthcheckDef
from ductwork.health.monitor import decide
from hypothesis import given
from hypothesis import strategies as st

from .conftest import product


def _load(tmp_path: Path, check: dict[str, Any]) -> Config:
    config = product(tmp_path, "http://127.0.0.1:1", "sqlite:///:memory:")
    config["healthchecks"] = {"api": check}
    return Config.from_dict(config, root=tmp_path)


@pytest.mark.parametrize(
    ("check", "path", "words"),
    [
        ({"probe": {"ping": "api"}}, "healthchecks.api.probe", "unknown probe kind 'ping'"),
        ({"probe": {}}, "healthchecks.api.probe", "exactly one kind"),
        (
            {"probe": {"action": "api:ping", "storage": "files"}},
            "healthchecks.api.probe",
            "exactly one kind",
        ),
        ({"probe": {"action": "nope:ping"}}, "healthchecks.api.probe.action", "'nope'"),
        ({"probe": {"action": "api:nope"}}, "healthchecks.api.probe.action", "'nope'"),
        ({"probe": {"database": "other"}}, "healthchecks.api.probe.database", "'other'"),
        ({"probe": {"database": "main:nope"}}, "healthchecks.api.probe.database", "'nope'"),
        ({"probe": {"storage": "nope"}}, "healthchecks.api.probe.storage", "'nope'"),
        ({"probe": {"publish": "bus:nope"}}, "healthchecks.api.probe.publish", "'nope'"),
        ({"probe": {"feature": "nope"}}, "healthchecks.api.probe.feature", "'nope'"),
        (
            {"probe": {"storage": "files"}, "alert": {"notification": "mail:nope", "to": "a@b"}},
            "healthchecks.api.alert.notification",
            "'nope'",
        ),
        (
            {"probe": {"storage": "files"}, "alert": {"notification": "sms:down", "to": "a@b"}},
            "healthchecks.api.alert.notification",
            "'sms'",
        ),
        (
            {"probe": {"storage": "files"}, "alert": {"notification": "mail:provider_down"}},
            "healthchecks.api.alert.to",
            "needs 'to'",
        ),
        (
            {"probe": {"storage": "files"}, "alert": {"event": "bus:nope"}},
            "healthchecks.api.alert.event",
            "'nope'",
        ),
        ({"probe": {"storage": "files"}, "alert": {}}, "healthchecks.api.alert", "or both"),
    ],
)
def test_a_bad_probe_or_alert_is_refused_naming_its_field(
    tmp_path: Path, check: dict[str, Any], path: str, words: str
):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, check)
    assert caught.value.path == path
    assert words in str(caught.value) and path in str(caught.value)


def test_thresholds_and_durations_are_checked(tmp_path: Path):
    with pytest.raises(ConfigError, match="failures"):
        _load(tmp_path, {"probe": {"storage": "files"}, "failures": 0})
    loaded = _load(tmp_path, {"probe": {"storage": "files"}, "interval": "15s", "timeout": "2s"})
    defn = loaded.product.healthchecks["api"]
    assert (defn.interval, defn.timeout, defn.failures, defn.successes) == (15.0, 2.0, 3, 1)


def _oracle(results: list[bool], failures: int, successes: int) -> str:
    """The status is the kind of the latest run of results long enough to decide one."""
    status, run_ok, run = "unknown", None, 0
    for ok in results:
        run = run + 1 if ok == run_ok else 1
        run_ok = ok
        if (ok and run >= successes) or (not ok and run >= failures):
            status = "healthy" if ok else "unhealthy"
    return status


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 4), st.integers(1, 4))
def test_the_status_follows_consecutive_results(results: list[bool], fails: int, goods: int):
    defn = HealthcheckDef(probe={"storage": "files"}, failures=fails, successes=goods)
    status, f, s = "unknown", 0, 0
    for ok in results:
        status, f, s = decide(status, f, s, ok, defn)
    assert status == _oracle(results, fails, goods)


_KINDS = ("action", "database", "publish", "storage", "feature")


@given(
    st.dictionaries(
        st.sampled_from([*_KINDS, "input", "ping", "http", ""]),
        st.one_of(
            st.text(max_size=12), st.integers(), st.none(), st.dictionaries(st.text(), st.text())
        ),
        max_size=3,
    )
)
def test_any_probe_shape_loads_or_is_refused_naming_the_probe(probe: dict[str, Any]):
    config = product(Path("/nonexistent"), "http://127.0.0.1:1", "sqlite:///:memory:")
    config["healthchecks"] = {"api": {"probe": probe}}
    try:
        loaded = Config.from_dict(config, root=Path("/nonexistent"))
    except ConfigError as exc:
        assert exc.path is not None and exc.path.startswith("healthchecks.api.probe")
    else:
        kinds = [k for k in loaded.product.healthchecks["api"].probe if k != "input"]
        assert len(kinds) == 1 and kinds[0] in _KINDS
