"""Functions and code-first features from plugins (the hooks), input checked from type hints,
`config validate` naming a missing function, and the sync facade."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from ductwork import hookimpl
from ductwork.cli.app import cli
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import ConfigError, FeatureFailedError, ValidationError
from ductwork.features.code import FeatureContext, feature
from ductwork.features.functions import call_function
from ductwork.plugins import get_registry
from ductwork.sync import SyncDuctwork


def add(a: int, b: int = 1) -> int:
    return a + b


@feature("plugged")
async def plugged(ctx: FeatureContext, input: Any) -> int:
    return int(await ctx.function("sum", "plugin_add", {"a": input["a"], "b": input["b"]}))


class Plugin:
    @hookimpl
    def register_functions(self, register):
        register("plugin_add", add)

    @hookimpl
    def register_features(self, register):
        register(plugged)


@pytest.fixture(autouse=True, scope="module")
def plugin():
    from ductwork.features import functions
    from ductwork.processor import _feature_runs as ns

    registry = get_registry()
    registry.manager.register(Plugin(), name="test-features-plugin")
    functions._loaded = False
    ns._modules_loaded.clear()
    yield
    registry.manager.unregister(name="test-features-plugin")


def write(tmp_path: Path, target: str) -> Path:
    data = {
        "product": "p",
        "environments": ["dev"],
        "features": {
            "calc": {
                "input": {"a": "int"},
                "sequences": [
                    {
                        "tag": "s",
                        "steps": [
                            {
                                "tag": "add",
                                "type": "function",
                                "target": target,
                                "input": {"a": "{{ input.a }}", "b": 10},
                            }
                        ],
                    }
                ],
                "output": "{{ steps.s.add.output }}",
            }
        },
    }
    file = tmp_path / "ductwork.yaml"
    file.write_text(yaml.safe_dump(data))
    return file


async def test_hooks_register_functions_and_features(tmp_path):
    async with Ductwork(Config.load(write(tmp_path, "plugin_add")), env="dev") as dw:
        assert await dw.features.run("calc", {"a": 1}) == 11
        assert await dw.features.run("plugged", {"a": 2, "b": 3}) == 5
        assert "plugged" in dw.features.tags()


async def test_function_input_is_checked_from_type_hints():
    assert await call_function("plugin_add", {"a": "4"}) == 5  # coerced as the hint says
    with pytest.raises(ValidationError, match="function 'plugin_add': invalid input: a:"):
        await call_function("plugin_add", {"a": "four"})
    with pytest.raises(ValidationError, match="c: Extra inputs"):
        await call_function("plugin_add", {"a": 1, "c": 2})


async def test_a_function_step_with_bad_input_fails_the_run(tmp_path):
    async with Ductwork(Config.load(write(tmp_path, "plugin_add")), env="dev") as dw:
        with pytest.raises(FeatureFailedError, match="invalid input"):
            await dw.features.run("plugged", {"a": "x", "b": 1})


def test_config_validate_names_a_missing_function(tmp_path):
    file = write(tmp_path, "nope")
    with pytest.raises(ConfigError, match=r"features\.calc\.s\.add\.target: no function 'nope'"):
        Ductwork(Config.load(file), env="dev").features.check()
    result = CliRunner().invoke(cli, ["config", "validate", "--config", str(file)])
    assert result.exit_code == 1 and "no function 'nope'" in result.output


def test_the_sync_facade_runs_features(tmp_path):
    with SyncDuctwork(Ductwork(Config.load(write(tmp_path, "plugin_add")), env="dev")) as dw:
        assert dw.features.run("calc", {"a": 5}) == 15
        run_id = dw.features.list("calc")[0].job_id
        assert dw.features.output(run_id).status == "succeeded"


def test_the_cli_runs_lists_and_draws_a_run(tmp_path):

    file = str(write(tmp_path, "plugin_add"))
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(cli, [*args, "--config", file], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert invoke("features", "run", "calc", "--input", '{"a": 2}').strip() == "12"
    listed = json.loads(invoke("features", "ls", "--json"))
    assert "calc" in listed["features"] and listed["runs"][0]["status"] == "succeeded"
    run_id = listed["runs"][0]["job_id"]
    shown = invoke("features", "show", run_id)
    assert "s/add" in shown and "succeeded" in shown and "█" in shown
    refused = runner.invoke(cli, ["features", "resume", run_id, "--config", file])
    assert refused.exit_code == 1 and "it is succeeded" in refused.output


async def test_a_function_with_an_idempotency_key_parameter_gets_the_step_key(tmp_path):
    from ductwork.features.functions import register_function

    def keyed(a: int, b: int, idempotency_key: str = "") -> str:
        return idempotency_key

    register_function("keyed", keyed)
    async with Ductwork(Config.load(write(tmp_path, "keyed")), env="dev") as dw:
        key = await dw.features.run("calc", {"a": 1})
        run_id = (await dw.features.list("calc"))[0].job_id
    assert key == f"{run_id}:s/add"
