"""``features:`` in ductwork.yaml: what config load (and `config validate`) refuses, by place."""

from __future__ import annotations

from typing import Any

import pytest
from ductwork.config.loader import Config
from ductwork.errors import ConfigError


def product(*sequences: dict[str, Any], **feature: Any) -> dict[str, Any]:
    return {
        "product": "p",
        "environments": ["dev"],
        "databases": {
            "main": {
                "dev": {"provider": "sqlite", "path": "x.db"},
                "actions": {"ins": {"query": "select :v", "input": {"v": "int"}}},
            }
        },
        "features": {"f": {"sequences": list(sequences), **feature}},
    }


def seq(tag: str, *steps: dict[str, Any], parents: list[str] | None = None) -> dict[str, Any]:
    return {"tag": tag, "parents": parents or [], "steps": list(steps)}


DB = {"type": "database", "target": "main:ins", "input": {"v": 1}}


def test_a_valid_feature_compiles_into_layers():
    cfg = Config.from_dict(
        product(
            seq("a", {"tag": "x", **DB}),
            seq("b", {"tag": "y", **DB, "input": {"v": "{{ steps.a.x.output }}"}}, parents=["a"]),
            seq("c", {"tag": "z", **DB}, parents=["a"]),
        )
    )
    plan = cfg.product.feature_plans["f"]
    assert [[s.tag for s in layer] for layer in plan.layers] == [["a"], ["b", "c"]]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            product(seq("a", {"tag": "x", **DB, "target": "main:nope"})),
            r"features\.f\.a\.x\.target: databases\.main has no action 'nope'",
        ),
        (
            product(seq("a", {"tag": "x", **DB, "target": "other:ins"})),
            r"features\.f\.a\.x\.target: unknown databases resource 'other'",
        ),
        (
            product(seq("a", {"tag": "x", "type": "teleport"})),
            r"features\.f\.a\.x\.type: unknown step type 'teleport'",
        ),
        (
            product(
                seq("a", {"tag": "x", **DB}, parents=["b"]),
                seq("b", {"tag": "y", **DB}, parents=["a"]),
            ),
            r"features\.f\.a\.parents: a cycle in parents: a -> b -> a",
        ),
        (
            product(seq("a", {"tag": "x", **DB}, parents=["zz"])),
            r"features\.f\.a\.parents: unknown parent 'zz'",
        ),
        (
            product(
                seq("a", {"tag": "x", **DB}),
                seq("b", {"tag": "y", **DB, "input": {"v": "{{ steps.a.x.output }}"}}),
            ),
            r"features\.f\.b\.y\.input: steps\.a\.x does not run before this step",
        ),
        (
            product(
                seq(
                    "a",
                    {"tag": "x", **DB, "input": {"v": "{{ steps.a.y.output }}"}},
                    {"tag": "y", **DB},
                )
            ),
            r"features\.f\.a\.x\.input: steps\.a\.y does not run before",
        ),
        (
            product(seq("a", {"tag": "x", **DB, "condition": "inptu.ok"})),
            r"features\.f\.a\.x\.condition: .*undefined name\(s\) inptu",
        ),
        (
            product(seq("a", {"tag": "x", **DB, "input": {"v": "{{ input.v + }}"}})),
            r"features\.f\.a\.x\.input\.v: .*does not parse",
        ),
        (
            product(seq("a", {"tag": "x", **DB}), output={"o": "{{ steps.a.q.output }}"}),
            r"features\.f\.output: steps\.a\.q is not a step",
        ),
        (
            product(seq("a", {"tag": "x", "type": "sleep"})),
            r"features\.f\.a\.x\.target: a sleep step needs 'duration'",
        ),
    ],
)
def test_config_load_refuses_with_the_place(data, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_dict(data)


def test_the_error_names_the_file(tmp_path):
    import re

    import yaml

    file = tmp_path / "ductwork.yaml"
    file.write_text(yaml.safe_dump(product(seq("a", {"tag": "x", **DB, "target": "main:no"}))))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(file))}, features\.f\.a\.x\.target: "):
        Config.load(file)
