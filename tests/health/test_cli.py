"""``ductwork health`` and ``ductwork doctor`` on states the monitor stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner
from ductwork.cli.app import cli
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.health.monitor import install, record
from ductwork.health.probes import ProbeResult

from .conftest import product, write


def _config(tmp_path: Path) -> Path:
    config = product(tmp_path, "http://127.0.0.1:9", f"sqlite:///{tmp_path}/engine.db")
    config["healthchecks"]["files"] = {"probe": {"storage": "files"}}
    config["healthchecks"]["api"]["failures"] = 1
    config.pop("apps")  # doctor would probe the app's base URL (nothing listens there)
    config["healthchecks"]["api"]["probe"] = {"database": "main"}
    return write(tmp_path, config)


async def _fail_api(path: Path) -> None:
    async with Ductwork(Config.load(path)) as dw:
        await install(dw)
        defn = dw.config.product.healthchecks["api"]
        down = ProbeResult(False, 0.25, "ProviderError: refused")
        await record(await dw.jobs.store(), "dev", "api", defn, down, slot=1)


def test_health_shows_each_check_and_fails_while_one_is_unhealthy(tmp_path: Path):
    path = _config(tmp_path)
    runner = CliRunner()
    before = runner.invoke(cli, ["--config", str(path), "health"])
    assert before.exit_code == 0, before.output
    assert [line.split("\t")[:2] for line in before.output.splitlines()[1:]] == [
        ["api", "unknown"],
        ["files", "unknown"],
    ]
    asyncio.run(_fail_api(path))
    after = runner.invoke(cli, ["--config", str(path), "health", "--json"])
    assert after.exit_code == 1
    data = json.loads(after.output)
    api = data["healthchecks"][0]
    assert data["env"] == "dev" and api["healthcheck"] == "api"
    assert (api["status"], api["latency"], api["last_error"]) == (
        "unhealthy",
        0.25,
        "ProviderError: refused",
    )
    doctor = runner.invoke(cli, ["--config", str(path), "doctor"])
    assert doctor.exit_code == 1
    rows = {line.split("\t")[0]: line.split("\t") for line in doctor.output.splitlines()}
    assert rows["healthchecks.api"][1:4] == ["database main", "FAIL", "250.0 ms"]
    assert "unhealthy since" in rows["healthchecks.api"][4] and "refused" in doctor.output
    assert rows["healthchecks.files"][2] == "ok"
    assert "no probe recorded yet" in rows["healthchecks.files"][4]


def test_health_without_healthchecks_says_so(tmp_path: Path):
    config = product(tmp_path, "http://127.0.0.1:9", f"sqlite:///{tmp_path}/engine.db")
    config.pop("healthchecks")
    path = write(tmp_path, config)
    shown = CliRunner().invoke(cli, ["--config", str(path), "health"])
    assert shown.exit_code == 0 and "no healthchecks declared" in shown.output
