"""Every send is in the delivery log: direct, dispatched through the jobs engine, and the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from ductwork import ProviderError, ValidationError
from ductwork.cli.app import cli
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.demo import sample_config
from ductwork.engine.worker import Worker


def _config(tmp_path: Path, **mail: Any) -> Config:
    raw = yaml.safe_load(sample_config())
    raw["notifications"]["mail"].update(mail)
    return Config.from_dict(raw, root=tmp_path)


def _broken(tmp_path: Path) -> Config:
    """A mailbox whose folder is a file: every send fails in the provider."""
    (tmp_path / "blocked").write_text("not a folder")
    return _config(tmp_path, dev={"provider": "mailbox", "path": "blocked/outbox"})


async def test_a_send_is_logged_sent_with_its_receipt_and_redacted_data(tmp_path):
    async with Ductwork(_config(tmp_path), env="dev") as dw:
        receipt = await dw.notifications.send(
            "mail", "welcome", to="Ada <ada@example.com>", data={"name": "Ada", "token": "t0k"}
        )
        [entry] = await dw.notifications.log()
    assert entry.status == "sent" and entry.attempts == 1
    assert entry.provider_message_id == receipt.id
    assert (entry.notification, entry.message, entry.channel) == ("mail", "mail:welcome", "email")
    assert (entry.provider, entry.env) == ("mailbox", "dev")
    assert entry.to == ["Ada <ada@example.com>"]
    assert entry.data == {"name": "Ada", "token": "***"}
    assert entry.error is None and entry.duration is not None


async def test_a_failing_provider_is_logged_failed_with_its_error(tmp_path):
    async with Ductwork(_broken(tmp_path), env="dev") as dw:
        with pytest.raises(ProviderError):
            await dw.notifications.send("mail", "welcome", to="ada@example.com", data={"name": "A"})
        [entry] = await dw.notifications.log(status="failed")
    assert entry.attempts == 1
    assert entry.error is not None and entry.error.startswith("ProviderError:")
    assert "outbox" in entry.error


async def test_refused_input_is_not_a_delivery_and_log_false_records_nothing(tmp_path):
    async with Ductwork(_config(tmp_path), env="dev") as dw:
        with pytest.raises(ValidationError):
            await dw.notifications.send("mail", "welcome", to="nobody", data={"name": "A"})
        assert await dw.notifications.log() == []
    async with Ductwork(_config(tmp_path / "quiet", log=False), env="dev") as dw:
        await dw.notifications.send("mail", "welcome", to="ada@example.com", data={"name": "A"})
        assert await dw.notifications.log() == []


async def _work(dw: Ductwork, job_id: str) -> str:
    """Run the worker until job ``job_id`` has finished; its status."""
    worker = Worker(dw, await dw.jobs.store(), poll_interval=0.02, tick=0.1, burst=True)
    await asyncio.wait_for(worker.serve(), timeout=60)
    return (await dw.jobs.get(job_id)).status


async def test_a_dispatched_send_that_keeps_failing_is_one_failed_entry_counting_each_try(
    tmp_path,
):
    async with Ductwork(_broken(tmp_path), env="dev") as dw:
        job = await dw.notifications.dispatch(
            "mail",
            "welcome",
            to="ada@example.com",
            data={"name": "Ada"},
            retries={"max": 2, "backoff": "1ms", "cap": "1ms"},
        )
        assert await _work(dw, job.job_id) == "failed"
        [entry] = await dw.notifications.log()
    assert entry.status == "failed" and entry.attempts == 3
    assert entry.idempotency_key == job.job_id
    assert entry.error is not None and "ProviderError" in entry.error


async def test_a_dispatched_send_is_logged_sent(tmp_path):
    async with Ductwork(_config(tmp_path), env="dev") as dw:
        job = await dw.notifications.dispatch(
            "mail", "welcome", to="ada@example.com", data={"name": "Ada"}
        )
        assert await _work(dw, job.job_id) == "succeeded"
        [entry] = await dw.notifications.log(status="sent", recipient="ADA@example.com")
    assert (entry.attempts, entry.idempotency_key) == (1, job.job_id)


def test_notify_log_prints_a_table_and_json_with_filters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    run("init")
    run("notify", "send", "mail", "welcome", "--to", "ada@example.com", "--data", '{"name":"A"}')
    run("notify", "send", "mail", "--to", "bob@example.com", "--body", "hi", "--subject", "s")
    table = run("notify", "log")
    lines = table.splitlines()
    assert lines[0].split("\t")[:3] == ["id", "created", "status"]
    assert len(lines) == 3 and "mail (ad hoc)" in lines[1] and "mail:welcome" in lines[2]
    only = json.loads(run("notify", "log", "--json", "--to", "ada@example.com", "--since", "1h"))
    assert [e["message"] for e in only] == ["mail:welcome"]
    assert json.loads(run("notify", "log", "--json", "--status", "failed")) == []
    assert json.loads(run("notify", "log", "--json", "--message", "mail:welcome", "--limit", "5"))
    assert json.loads(run("notify", "log", "--json", "--until", "2000-01-01T00:00")) == []
    out = run("notify", "log", "--since", "yesterday-ish", code=1)
    assert "--since" in out and "ISO 8601" in out


async def test_a_feature_steps_send_is_logged_under_its_run_and_step(tmp_path):
    async with Ductwork(_config(tmp_path), env="dev") as dw:
        await dw.features.run("signup", {"id": 1, "name": "Ada", "email": "ada@example.com"})
        [entry] = await dw.notifications.log(message="mail:welcome")
    assert entry.status == "sent" and entry.attempts == 1
    assert entry.idempotency_key is not None and entry.idempotency_key.endswith(":welcome/email")
    assert entry.provider_message_id == entry.idempotency_key


def test_notify_prune_removes_entries_past_their_age(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(cli, ["--json", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    runner.invoke(cli, ["init"], catch_exceptions=False)
    run("notify", "send", "mail", "welcome", "--to", "ada@example.com", "--data", '{"name":"A"}')
    assert run("notify", "prune") == {"dry_run": False, "pruned": 0}  # younger than 30 days
    assert run("notify", "prune", "--older-than", "0s", "--dry-run")["pruned"] == 1
    assert len(run("notify", "log")) == 1
    assert run("notify", "prune", "--older-than", "0s")["pruned"] == 1
    assert run("notify", "log") == []
