"""The ductwork command, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from ductwork.cli.app import cli


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return invoke


def test_init_then_validate_then_every_namespace(run, tmp_path):
    run("init")
    assert (tmp_path / "ductwork.yaml").exists()
    assert "valid" in run("config", "validate", "--env", "dev").output
    (tmp_path / "in.txt").write_text("cli file")
    run("storage", "save", "files", "docs/in.txt", "in.txt")
    assert run("storage", "read", "files", "docs/in.txt").output == "cli file"
    listing = json.loads(run("--json", "storage", "ls", "files", "docs/").output)
    assert [i["key"] for i in listing["items"]] == ["docs/in.txt"]
    assert json.loads(run("storage", "rm", "files", "docs/in.txt", "--json").output) == {
        "deleted": True
    }
    run("db", "action", "main", "create_users_table")
    run("db", "action", "main", "add_user", "--input", '{"id": 1, "name": "Ada", "email": "a@x"}')
    assert (
        json.loads(run("db", "action", "main", "get_user", "--input", '{"id": 1}').output)["name"]
        == "Ada"
    )
    rows = json.loads(
        run(
            "db",
            "exec",
            "main",
            "SELECT name FROM users WHERE id = :id",
            "--params",
            '{"id": 1}',
            "--json",
        ).output
    )
    assert rows["rows"] == [{"name": "Ada"}]
    # CliRunner runs in this process, where memory caches of one namespace share values (other
    # tests' too): start from an empty one
    run("cache", "clear", "hot", "--yes")
    run("cache", "set", "hot", "k", '{"a": 1}', "--ttl", "30s")
    assert json.loads(run("cache", "get", "hot", "k").output) == {"a": 1}
    run("cache", "set", "hot", "k2", "2")
    assert run("cache", "ls", "hot").output.split() == ["k", "k2"]
    assert json.loads(run("cache", "ls", "hot", "k2", "--json").output) == ["k2"]
    assert run("cache", "delete", "hot", "k2").output.strip() == "deleted k2"
    assert run("cache", "clear", "hot", "--yes").output.strip() == "deleted 1 key(s)"
    assert run("cache", "ls", "hot").output == ""
    run("notify", "send", "mail", "welcome", "--to", "ada@example.com", "--data", '{"name": "Ada"}')
    assert len(list((tmp_path / ".ductwork/outbox").glob("*.eml"))) == 1
    published = json.loads(
        run("events", "publish", "bus", "user_created", '{"id": 1}', "--json").output
    )
    assert published["id"]


def test_bad_json_input_is_a_clear_error(run):
    run("init")
    result = run("db", "action", "main", "get_user", "--input", "{id: 1}", code=1)
    assert "--input is not valid JSON" in result.output


def test_errors_are_one_line_with_no_traceback(run):
    result = run("config", "validate", code=1)
    assert "ConfigError" in result.output and "ductwork init" in result.output
    assert "Traceback" not in result.output


def test_config_show_redacts_secrets(run, tmp_path, monkeypatch):
    run("init")
    text = (
        (tmp_path / "ductwork.yaml")
        .read_text()
        .replace("prd: {provider: memory}", 'prd: {provider: memory, namespace: "${env:CACHE_NS}"}')
    )
    (tmp_path / "ductwork.yaml").write_text(text)
    monkeypatch.setenv("CACHE_NS", "top-secret-namespace")
    shown = run("config", "show", "--env", "prd").output
    assert "top-secret-namespace" not in shown
    assert "namespace: '***'" in shown


def test_schema_includes_provider_options(run):
    schema = json.loads(run("config", "schema").output)
    storage = schema["$defs"]["StorageResource"]["additionalProperties"]["oneOf"]
    local = next(v for v in storage if v["title"] == "storage:local")
    assert "path" in local["properties"]
    assert local["additionalProperties"] is False


def test_plugins_list_shows_builtin_and_contrib(run):
    data = json.loads(run("plugins", "list", "--json").output)
    names = {p["plugin"]: p for p in data["plugins"]}
    assert "cache:dbm" in names["dbm"]["providers"]
    assert names["dbm"]["distribution"] == "ductwork-dbm"
    assert "storage:local" in names["ductwork.builtin.plugin"]["providers"]


def test_plugins_list_shows_the_channel_notifiers(run):
    data = json.loads(run("plugins", "list", "--json").output)
    names = {p["plugin"]: p for p in data["plugins"]}
    for name in ("apprise", "expo", "fcm", "postmark"):
        assert names[name]["distribution"] == f"ductwork-{name}"
        assert f"notifier:{name}" in names[name]["providers"]


def test_doctor_reports_each_resource(run, tmp_path):
    run("init")
    data = json.loads(run("doctor", "--env", "dev", "--json").output)
    assert data["ok"] is True
    assert {r["resource"] for r in data["resources"]} == {
        "storage.files",
        "brokers.bus",
        "databases.main",
        "caches.hot",
        "notifications.mail",
    }
    text = (
        (tmp_path / "ductwork.yaml")
        .read_text()
        .replace(
            "prd: {provider: sqlite, path: .ductwork/prd-main.db}",
            'prd: {provider: sqlite, path: "${env:NO_SUCH_VAR_HERE}"}',
        )
    )
    (tmp_path / "ductwork.yaml").write_text(text)
    bad = json.loads(run("doctor", "--env", "prd", "--json", code=1).output)
    [failed] = [r for r in bad["resources"] if not r["ok"]]
    assert failed["resource"] == "databases.main"
    assert "NO_SUCH_VAR_HERE is not set" in failed["detail"]


def test_demo_runs_as_the_readme_says(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
    out = subprocess.run(
        [sys.executable, "-m", "ductwork", "demo", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    steps = json.loads(out.stdout)
    assert [s["namespace"] for s in steps] == [
        "storage",
        "events",
        "databases",
        "caches",
        "notifications",
        "features",
    ]
    assert not any(Path(tmp_path).iterdir())  # the demo cleans up after itself


def test_init_template_feature_runs_with_the_short_input_flag(run):
    from ductwork.cli import features  # noqa: F401 - registers the command

    run("init")
    person = '{"id": 7, "name": "Ada", "email": "ada@example.com"}'
    out = json.loads(run("features", "run", "signup", "-i", person, "--env", "dev").output)
    assert out["user"] == 7
    assert out["message"]
    assert out["welcome_receipt"]
    # the same spelling on the other commands that take an input
    run("db", "action", "main", "create_users_table")
    got = run("db", "action", "main", "get_user", "-i", '{"id": 7}', "--json").output
    assert json.loads(got)["name"] == "Ada"
    refused = run("features", "run", "signup", "-i", '{"id": "x"}', "--env", "dev", code=1)
    assert "does not match its schema" in refused.output
    listing = json.loads(run("--json", "features", "ls", "--env", "dev").output)
    assert len(listing["runs"]) == 1  # the refused input stored nothing


def test_tables_print_whole_values_to_a_pipe(run):
    """Piped output is one tab-separated line per row, nothing cut, no markup."""
    lines = run("plugins", "list").output.splitlines()
    assert lines[0].split("\t") == ["plugin", "distribution", "version", "providers", "status"]
    sql = next(line.split("\t") for line in lines if line.startswith("sql\t"))
    assert "database:postgres" in sql[3] and sql[4] == "ok"
    run("init")
    run("db", "action", "main", "create_users_table")
    run("db", "action", "main", "add_user", "-i", '{"id": 1, "name": "A\\tB", "email": "a@x"}')
    rows = run("db", "exec", "main", "SELECT id, name, email FROM users").output.splitlines()
    assert rows == ["id\tname\temail", "1\tA B\ta@x"]


def test_tables_on_a_terminal_are_drawn(monkeypatch, capsys):
    from ductwork.cli import output

    monkeypatch.setattr(output, "is_terminal", lambda: True)
    output.print_table(["key", output.Column("value", shrinks=False)], [["a", output.Cell("ok")]])
    drawn = capsys.readouterr().out
    assert "\t" not in drawn and drawn.split()[:4] == ["key", "value", "a", "ok"]


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((" ".join((*path, name)), command))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_every_command_says_what_it_does_in_help():
    tree = _commands(cli)
    assert len(tree) > 50  # the whole tree, its groups' commands too
    silent = [name for name, command in tree if not command.get_short_help_str().strip()]
    assert silent == []
    unexplained = [
        f"{name} {param.opts[0]}"
        for name, command in tree
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not param.help
    ]
    assert unexplained == []


def test_limit_is_one_option_everywhere(run):
    run("init")
    for args in (("jobs", "ls"), ("storage", "ls", "files"), ("notify", "log", "mail")):
        refused = run(*args, "--limit", "0", code=2).output
        assert "--limit" in refused and "0 is not in the range x>=1" in refused
