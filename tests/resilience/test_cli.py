"""`ductwork quotas|fallbacks run|breaker`, as a user runs them."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner
from ductwork.cli.app import cli

from .conftest import unique_product

CONFIG = {
    "environments": ["dev"],
    "notifications": {
        "mail": {
            "dev": {"provider": "mailbox", "path": "outbox"},
            "messages": {"note": {"email": {"subject": "n {{ n }}", "body": "b"}}},
        }
    },
    "quotas": {
        "note": {
            "input": {"n": "int"},
            "providers": [
                {
                    "name": "mail",
                    "target": "mail:note",
                    "weight": 2,
                    "input": {"to": "a@example.com", "data": {"n": "{{ input.n }}"}},
                    "output": {"sent": True},
                },
            ],
        }
    },
}


def test_run_and_breaker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ductwork.yaml").write_text(yaml.safe_dump({"product": unique_product(), **CONFIG}))
    runner = CliRunner()
    result = runner.invoke(cli, ["quotas", "run", "note", "-i", '{"n": 3}'], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["output"] == {"sent": True} and answer["provider"] == "mail"
    assert len(list((tmp_path / "outbox").iterdir())) == 1
    result = runner.invoke(cli, ["quotas", "breaker", "note"], catch_exceptions=False)
    assert result.exit_code == 0 and "mail:note" in result.output and "closed" in result.output
    result = runner.invoke(cli, ["fallbacks", "run", "note"], catch_exceptions=False)
    assert result.exit_code == 1 and "no fallback 'note'" in result.output
