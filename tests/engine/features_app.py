"""A product for the feature tests: side effects are rows in a real table; functions by name.

Imported by the tests and by ``feature_worker.py`` (a real worker process); the product's
``modules:`` names this module so function steps find their callables.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from ductwork.features.functions import function

SIDE = "feature_side_effects"


def write_product(folder: Path, engine_url: str, side_url: str) -> Path:
    """A ductwork.yaml in ``folder``: run store ``engine_url``, side effects at ``side_url``."""
    data: dict[str, Any] = {
        "product": "shop",
        "environments": ["dev"],
        "engine": {"dev": {"url": engine_url, "lease": 2, "heartbeat": 0.5}},
        "modules": ["features_app"],
        "caches": {"hot": {"dev": {"provider": "memory"}}},
        "features": {
            "three": {
                "input": {"tag": "str"},
                "sequences": [
                    {
                        "tag": "main",
                        "steps": [
                            {
                                "tag": "one",
                                "type": "function",
                                "target": "record",
                                "input": {"url": side_url, "what": "{{ input.tag }}:one"},
                            },
                            {
                                "tag": "two",
                                "type": "function",
                                "target": "record",
                                "input": {"url": side_url, "what": "{{ input.tag }}:two"},
                            },
                            {
                                "tag": "three",
                                "type": "function",
                                "target": "gate",
                                "input": {
                                    "url": side_url,
                                    "what": "{{ input.tag }}:three",
                                    "folder": str(folder),
                                },
                            },
                        ],
                    }
                ],
                "output": {"last": "{{ steps.main.three.output }}"},
            },
            "parallel": {
                "sequences": [
                    {
                        "tag": "first",
                        "steps": [
                            {
                                "tag": "go",
                                "type": "function",
                                "target": "echo",
                                "input": {"value": 1},
                            }
                        ],
                    },
                    {
                        "tag": "left",
                        "parents": ["first"],
                        "steps": [
                            {
                                "tag": "nap",
                                "type": "function",
                                "target": "nap",
                                "input": {"seconds": 0.3},
                            }
                        ],
                    },
                    {
                        "tag": "right",
                        "parents": ["first"],
                        "steps": [
                            {
                                "tag": "nap",
                                "type": "function",
                                "target": "nap",
                                "input": {"seconds": 0.3},
                            }
                        ],
                    },
                    {
                        "tag": "last",
                        "parents": ["left", "right"],
                        "steps": [
                            {
                                "tag": "sum",
                                "type": "function",
                                "target": "echo",
                                "input": {
                                    "value": "{{ [steps.left.nap.output, steps.right.nap.output] }}"
                                },
                            }
                        ],
                    },
                ],
                "output": "{{ steps.last.sum.output }}",
            },
            "sleepy": {
                "sequences": [
                    {
                        "tag": "s",
                        "steps": [
                            {"tag": "nap", "type": "sleep", "duration": 2},
                            {
                                "tag": "after",
                                "type": "function",
                                "target": "echo",
                                "input": {"value": "woke"},
                            },
                        ],
                    }
                ],
                "output": "{{ steps.s.after.output }}",
            },
            "approval": {
                "input": {"who": "str"},
                "sequences": [
                    {
                        "tag": "s",
                        "steps": [
                            {"tag": "approved", "type": "wait", "timeout": "1h"},
                            {
                                "tag": "done",
                                "type": "function",
                                "target": "echo",
                                "input": {
                                    "value": "{{ input.who }} by {{ steps.s.approved.output.by }}"
                                },
                            },
                        ],
                    }
                ],
                "output": "{{ steps.s.done.output }}",
            },
            "flaky": {
                "sequences": [
                    {
                        "tag": "s",
                        "steps": [
                            {
                                "tag": "try",
                                "type": "function",
                                "target": "fail_times",
                                "input": {"folder": str(folder), "times": 2},
                                "retries": {"max": 3, "backoff": "10ms"},
                            },
                            {
                                "tag": "soft",
                                "type": "function",
                                "target": "fail_times",
                                "input": {"folder": str(folder), "times": 99, "name": "soft"},
                                "allow_fail": True,
                            },
                            {
                                "tag": "hard",
                                "type": "function",
                                "target": "fail_times",
                                "input": {
                                    "folder": str(folder),
                                    "times": "{{ 99 }}",
                                    "name": "hard",
                                },
                            },
                        ],
                    }
                ],
            },
        },
    }
    file = folder / "ductwork.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    return file


@asynccontextmanager
async def client(url: str, folder: Path) -> AsyncIterator[Any]:
    """A client on the test product, its run store emptied; ``side_url`` set on it."""
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config
    from ductwork.engine.schema import metadata

    side = f"sqlite:///{folder}/side.db"
    async with Ductwork(Config.load(write_product(folder, url, side)), env="dev") as dw:
        store = await dw.jobs.store()
        async with store.tx() as conn:
            for table in reversed(metadata.sorted_tables):
                if table.name != "ductwork_engine_version":
                    await conn.execute(table.delete())
        dw.side_url = side
        yield dw


async def _execute(url: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    if url.startswith("sqlite:///"):
        url = url.replace("sqlite:///", "sqlite+aiosqlite:///")
    else:
        url = url.replace("postgresql://", "postgresql+asyncpg://")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(f"CREATE TABLE IF NOT EXISTS {SIDE} (what VARCHAR(100), pid INTEGER)")
            )
            result = await conn.execute(text(sql), params or {})
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def count(url: str, what: str) -> int:
    """How many times the side effect ``what`` happened."""
    rows = await _execute(url, f"SELECT count(*) FROM {SIDE} WHERE what = :w", {"w": what})
    return int(rows[0][0])


@function()
async def record(url: str, what: str) -> str:
    """A side effect: one row in a real table."""
    await _execute(
        url, f"INSERT INTO {SIDE} (what, pid) VALUES (:w, :p)", {"w": what, "p": os.getpid()}
    )
    return what


@function()
async def gate(url: str, what: str, folder: str) -> str:
    """Records a row; then obeys the test's fault files (hang here, or die before checkpoint)."""
    base = Path(folder)
    (base / f"started-{os.getpid()}").write_text("")
    if (base / f"hang-{os.getpid()}").exists():
        await asyncio.sleep(3600)  # the victim of a kill -9 never finishes
    await _execute(
        url, f"INSERT INTO {SIDE} (what, pid) VALUES (:w, :p)", {"w": what, "p": os.getpid()}
    )
    fault = base / "fault-after-side-effect"
    if fault.exists():
        fault.unlink()
        os._exit(9)  # the side effect happened; its checkpoint never will
    return what


@function()
def echo(value: Any) -> Any:
    return value


@function()
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@function()
def fail_times(folder: str, times: int, name: str = "try") -> int:
    """Fails ``times`` times (counted in a file), then succeeds."""
    counter = Path(folder) / f"fails-{name}"
    done = int(counter.read_text()) if counter.exists() else 0
    if done < times:
        counter.write_text(str(done + 1))
        raise RuntimeError(f"planned failure {done + 1} of {times}")
    return done
