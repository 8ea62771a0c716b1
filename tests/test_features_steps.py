"""Every built-in step type against the sample product's embedded providers."""

from __future__ import annotations

from pathlib import Path

import yaml
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.demo import sample_config

STEPS = {
    "files": {
        "input": {"name": "str"},
        "sequences": [
            {
                "tag": "io",
                "steps": [
                    {
                        "tag": "save",
                        "type": "storage",
                        "operation": "save",
                        "target": "files",
                        "input": {
                            "key": "notes/{{ input.name }}.txt",
                            "data": "hi {{ input.name }}",
                        },
                    },
                    {
                        "tag": "read",
                        "type": "storage",
                        "operation": "read",
                        "target": "files",
                        "input": {"key": "notes/{{ input.name }}.txt"},
                    },
                    {
                        "tag": "json",
                        "type": "storage",
                        "operation": "save",
                        "target": "files",
                        "input": {"key": "notes/data.json", "data": {"n": 1}},
                    },
                    {
                        "tag": "delete",
                        "type": "storage",
                        "operation": "delete",
                        "target": "files",
                        "input": {"key": "notes/{{ input.name }}.txt"},
                    },
                ],
            },
            {
                "tag": "cache",
                "steps": [
                    {
                        "tag": "set",
                        "type": "cache",
                        "operation": "set",
                        "target": "hot",
                        "input": {"key": "k:{{ input.name }}", "value": [1, 2]},
                    },
                    {
                        "tag": "get",
                        "type": "cache",
                        "operation": "get",
                        "target": "hot",
                        "input": {"key": "k:{{ input.name }}"},
                    },
                    {
                        "tag": "skip",
                        "type": "cache",
                        "operation": "delete",
                        "target": "hot",
                        "input": {"key": "k"},
                        "condition": "input.name == 'nobody'",
                    },
                ],
            },
            {
                "tag": "later",
                "parents": ["io", "cache"],
                "steps": [
                    {
                        "tag": "child",
                        "type": "feature",
                        "target": "child",
                        "input": {"n": "{{ steps.cache.get.output | length }}"},
                    },
                    {
                        "tag": "job",
                        "type": "dispatch",
                        "of": "notification",
                        "target": "mail:welcome",
                        "schedule": {"every": "1h", "limit": 2},
                        "input": {"to": "a@example.com", "data": {"name": "{{ input.name }}"}},
                    },
                ],
            },
        ],
        "output": {
            "read": "{{ steps.io.read.output.text }}",
            "deleted": "{{ steps.io.delete.output.deleted }}",
            "cached": "{{ steps.cache.get.output }}",
            "skipped": "{{ steps.cache.skip.status }}",
            "child": "{{ steps.later.child.output }}",
            "job": "{{ steps.later.job.output.recurring }}",
        },
    },
    "child": {
        "input": {"n": "int"},
        "sequences": [
            {
                "tag": "c",
                "steps": [
                    {"tag": "one", "type": "database", "target": "main:create_users_table"},
                ],
            },
        ],
        "output": "{{ input.n * 10 }}",
    },
}


async def test_every_step_type_on_the_embedded_providers(tmp_path: Path):
    data = yaml.safe_load(sample_config())
    data["features"].update(STEPS)
    file = tmp_path / "ductwork.yaml"
    file.write_text(yaml.safe_dump(data))
    async with Ductwork(Config.load(file), env="dev") as dw:
        out = await dw.features.run("files", {"name": "ann"})
        assert out == {
            "read": "hi ann",
            "deleted": True,
            "cached": [1, 2],
            "skipped": "skipped",
            "child": 20,
            "job": True,
        }
        assert await dw.storage.read_file("files", "notes/data.json") == b'{"n": 1}'
        run_id = (await dw.features.list("files"))[0].job_id
        keys = [s["key"] for s in (await dw.features.output(run_id)).steps]
        assert "later/child" in keys and "later/child/c/one" not in keys
        # the child feature ran as a run of its own, linked to its parent
        [child] = await dw.features.list("child")
        shown = await dw.features.output(child.job_id)
        assert shown.parent_run_id == run_id and shown.status == "succeeded"
        assert [s["key"] for s in shown.steps] == ["c/one"]
        jobs = await dw.jobs.list(kind="notifications.send")
        assert len(jobs) == 1 and jobs[0].recurring
