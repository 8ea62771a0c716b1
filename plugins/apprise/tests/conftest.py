"""Real servers for the apprise notifier, each on a free loopback port.

- ``receiver``: an HTTP endpoint (Starlette under uvicorn) for Apprise's ``json://`` and
  ``form://`` services; it keeps what arrived and can answer a chosen status.
- ``smtp``: aiosmtpd (``ductwork.testing.servers.smtp_server``) for ``mailto://``.
- ``mosquitto``: a private Mosquitto broker for ``mqtt://`` (the system's ``mosquitto``).
- ``synapse``: a private Matrix homeserver (matrix-synapse, SQLite, a dev dependency) with a
  registered user, for ``matrix://``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import yaml
from ductwork.providers.notifier import Notification
from ductwork.testing.servers import (
    _system_executable,
    asgi_server,
    free_port,
    smtp_server,
    start_server,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Arrival:
    path: str
    headers: dict[str, str]
    payload: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Receiver:
    url: str
    arrivals: list[Arrival] = field(default_factory=list)
    # path -> (status, extra headers) to answer instead of 200
    answers: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def notifications(self) -> list[Notification]:
        """What arrived on /in/<channel>, as notifications (recipients from the X-To header)."""
        with self.lock:
            found = [a for a in self.arrivals if a.path.startswith("/in/")]
        return [
            Notification(
                channel=a.path.removeprefix("/in/"),  # type: ignore[arg-type]
                to=[unquote(t) for t in a.headers.get("x-to", "").split(",") if t],
                subject=a.payload.get("title"),
                body=a.payload.get("message", ""),
            )
            for a in found
        ]

    def at(self, path: str) -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if a.path == path]


def _receiver_app(state: Receiver) -> Starlette:
    async def receive(request: Request) -> Response:
        path = request.url.path
        if request.headers.get("content-type", "").startswith("multipart/"):
            form = await request.form()
            payload = {k: v for k, v in form.items() if isinstance(v, str)}
            files = {
                v.filename or k: await v.read() for k, v in form.items() if not isinstance(v, str)
            }
        else:
            payload, files = await request.json(), {}
        state.entered.set()
        if state.release is not None:
            state.release.wait(10)
        with state.lock:
            state.arrivals.append(Arrival(path, dict(request.headers), payload, files))
            status, headers = state.answers.get(path, (200, {}))
        return JSONResponse({"ok": status < 400}, status_code=status, headers=headers)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    state = Receiver(url="")
    with asgi_server(_receiver_app(state)) as url:
        state.url = url
        yield state


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.answers.clear()
    receiver_server.release = None
    receiver_server.entered.clear()
    return receiver_server


@pytest.fixture(scope="session")
def smtp() -> Iterator[Any]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private Mosquitto on a free loopback port, anonymous, nothing persisted."""
    port = free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    argv = [_system_executable("mosquitto"), "-c", str(conf)]
    with start_server(argv, port, f"mqtt://127.0.0.1:{port}"):
        yield port


@dataclass(frozen=True)
class Homeserver:
    url: str
    port: int
    user: str
    password: str
    token: str


def _synapse_config(folder: Path, port: int) -> Path:
    config = {
        "server_name": "localhost",
        "pid_file": str(folder / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(folder / "homeserver.db")}},
        "media_store_path": str(folder / "media"),
        "signing_key_path": str(folder / "signing.key"),
        "report_stats": False,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "suppress_key_server_warning": True,
        "trusted_key_servers": [],
        "macaroon_secret_key": "test-only-macaroon-key",
        "form_secret": "test-only-form-secret",
        "rc_login": {
            "address": {"per_second": 1000, "burst_count": 1000},
            "account": {"per_second": 1000, "burst_count": 1000},
        },
        "rc_registration": {"per_second": 1000, "burst_count": 1000},
        "rc_message": {"per_second": 1000, "burst_count": 1000},
        "rc_joins": {"local": {"per_second": 1000, "burst_count": 1000}},
    }
    path = folder / "homeserver.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    """A private Synapse homeserver with user ``notifier`` registered."""
    folder = tmp_path_factory.mktemp("synapse")
    port = free_port()
    config = _synapse_config(folder, port)
    python = sys.executable
    keys = [python, "-m", "synapse.app.homeserver", "-c", str(config), "--generate-keys"]
    subprocess.run(keys, check=True, capture_output=True, timeout=120)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/_matrix/client/versions", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    argv = [python, "-m", "synapse.app.homeserver", "-c", str(config)]
    with start_server(argv, port, url, ready=ready, timeout=120):
        password = "notifier-pass-123"
        body = {"username": "notifier", "password": password, "auth": {"type": "m.login.dummy"}}
        answer = httpx.post(f"{url}/_matrix/client/v3/register", json=body, timeout=30)
        answer.raise_for_status()
        yield Homeserver(url, port, "notifier", password, answer.json()["access_token"])
