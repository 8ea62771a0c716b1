"""``ductwork doctor`` probes each app's base URL in the env, without its credentials."""

from __future__ import annotations

import json
import socket

import yaml
from click.testing import CliRunner
from ductwork.cli.app import cli


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_reports_reachable_unreachable_and_unresolved_apps(server, tmp_path, monkeypatch):
    down = f"http://127.0.0.1:{_closed_port()}"
    product = {
        "product": "shop",
        "environments": ["dev"],
        "apps": {
            "up": {
                "dev": {
                    "base_url": server.url,
                    "auth": {"kind": "bearer", "token": "doctor-token-never-sent"},
                }
            },
            "down": {"dev": {"base_url": down}},
            "unset": {"dev": {"base_url": "${env:DOCTOR_NO_SUCH_URL}"}},
        },
    }
    (tmp_path / "ductwork.yaml").write_text(yaml.safe_dump(product))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCTOR_NO_SUCH_URL", raising=False)

    result = CliRunner().invoke(cli, ["doctor", "--env", "dev", "--json"])

    assert result.exit_code == 1, result.output
    rows = {r["resource"]: r for r in json.loads(result.output)["resources"]}
    assert set(rows) == {"apps.up", "apps.down", "apps.unset"}
    assert rows["apps.up"]["ok"] is True
    assert rows["apps.up"]["latency_ms"] > 0
    assert f"reachable at {server.url}" in rows["apps.up"]["detail"]
    assert rows["apps.down"]["ok"] is False
    assert f"cannot reach {down}" in rows["apps.down"]["detail"]
    assert rows["apps.unset"]["ok"] is False
    assert "DOCTOR_NO_SUCH_URL" in rows["apps.unset"]["detail"]
    # One HEAD reached the server, and it carried none of the app's credentials.
    assert server.state.requests == 1
    assert server.state.authorizations == []
    assert "doctor-token-never-sent" not in result.output
