"""A probed HTTP server (counts requests, answers 200 or 503 on command) and a product using it."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from ductwork.testing.servers import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Probed:
    """What the server saw, and how it answers."""

    url: str = ""
    pings: int = 0
    status: int = 200


def _app(probed: Probed) -> Starlette:
    async def ping(request: Request) -> Response:
        probed.pings += 1
        return JSONResponse({"n": probed.pings}, status_code=probed.status)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("delay", "2")))
        return JSONResponse({"late": True})

    return Starlette(routes=[Route("/ping", ping), Route("/slow", slow)])


@pytest.fixture
def probed() -> Any:
    state = Probed()
    port = free_port()
    config = uvicorn.Config(
        _app(state), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:  # readiness of the server thread
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    state.url = f"http://127.0.0.1:{port}"
    yield state
    server.should_exit = True
    thread.join(10)


def product(
    root: Path,
    api_url: str,
    engine_url: str,
    *,
    interval: str = "1s",
    failures: int = 2,
    successes: int = 2,
    alert: bool = True,
) -> dict[str, Any]:
    """A product whose healthcheck ``api`` probes ``api_url``/ping, alerting by mail and event."""
    check: dict[str, Any] = {
        "probe": {"action": "api:ping"},
        "interval": interval,
        "timeout": "5s",
        "failures": failures,
        "successes": successes,
    }
    if alert:
        check["alert"] = {
            "notification": "mail:provider_down",
            "to": "ops@example.com",
            "event": "bus:health_changed",
        }
    return {
        "product": "shop",
        "environments": ["dev"],
        "engine": {"dev": {"url": engine_url, "poll_interval": "0.1s"}},
        "apps": {
            "api": {
                "dev": {"base_url": api_url, "timeout": "5s"},
                "actions": {"ping": {"path": "/ping"}, "slow": {"path": "/slow"}},
            }
        },
        "storage": {"files": {"dev": {"provider": "local", "path": str(root / "files")}}},
        "databases": {"main": {"dev": {"provider": "sqlite", "path": str(root / "main.db")}}},
        "brokers": {
            "bus": {
                "dev": {"provider": "sqlite", "path": str(root / "events.db")},
                "topics": {"health_changed": "health.changed", "probe": "health.probe"},
            }
        },
        "notifications": {
            "mail": {
                "dev": {"provider": "mailbox", "path": str(root / "outbox")},
                "messages": {
                    "provider_down": {
                        "email": {
                            "subject": "{{ healthcheck }} is {{ status }}",
                            "body": "{{ healthcheck }}: {{ previous }} -> {{ status }} "
                            "({{ error }})",
                        }
                    }
                },
            }
        },
        "healthchecks": {"api": check},
    }


def write(root: Path, config: dict[str, Any]) -> Path:
    path = root / "ductwork.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def engine_url(request: Any, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/engine.db"
    return str(request.getfixturevalue("private_pg"))  # tests/conftest.py
