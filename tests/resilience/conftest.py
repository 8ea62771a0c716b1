"""Vendor HTTP APIs on loopback (Starlette under uvicorn) that fail on command, and products.

Each vendor answers ``POST /<vendor>/send`` in its own shape. ``Vendors.mode[vendor]`` says
how: ``ok``, ``503`` or ``slow`` (answers after 10 s: callers time out first). A vendor
pointed at ``Vendors.closed`` (a loopback port nothing listens on) refuses connections.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from ductwork.config.loader import Config
from ductwork.testing.servers import asgi_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SHAPES = {  # how each vendor answers: callers never see these, only the output mapping's
    "alpha": lambda to: {"sid": f"A-{to}", "status": "queued"},
    "beta": lambda to: {"messages": [{"message-id": f"B-{to}"}]},
    "gamma": lambda to: {"data": {"id": f"C-{to}"}},
}
OUTPUTS = {
    "alpha": {"id": "{{ result.body.sid }}", "vendor": "alpha"},
    "beta": {"id": "{{ result.body.messages[0]['message-id'] }}", "vendor": "beta"},
    "gamma": {"id": "{{ result.body.data.id }}", "vendor": "gamma"},
}


@dataclass
class Vendors:
    url: str
    closed: str  # a loopback URL that refuses connections
    mode: dict[str, str] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.mode = dict.fromkeys(SHAPES, "ok")
        self.hits.clear()

    def apps(self, *, timeout: str = "2s", down: tuple[str, ...] = ()) -> dict[str, Any]:
        """One app per vendor (``down`` ones at the closed port), no app-level retries."""
        return {
            name: {
                "dev": {
                    "base_url": f"{self.closed if name in down else self.url}/{name}",
                    "timeout": timeout,
                },
                "retry": {"retries": 0},
                "actions": {"send": {"method": "POST", "path": "/send", "body": {"to": "str"}}},
            }
            for name in SHAPES
        }


def build_app(vendors: Vendors) -> Starlette:
    async def send(request: Request) -> Response:
        name = request.path_params["vendor"]
        vendors.hits[name] += 1
        mode = vendors.mode.get(name, "ok")
        if mode == "503":
            return JSONResponse({"error": "unavailable"}, status_code=503)
        if mode == "slow":
            await asyncio.sleep(10)
        body = await request.json()
        return JSONResponse(SHAPES[name](body["to"]))

    return Starlette(routes=[Route("/{vendor}/send", send, methods=["POST"])])


def _closed_port() -> int:
    """A loopback port with nothing listening (bound then closed, not listened on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="session")
def _vendor_server() -> Any:
    vendors = Vendors(url="", closed=f"http://127.0.0.1:{_closed_port()}")
    with asgi_server(build_app(vendors)) as url:
        vendors.url = url
        yield vendors


@pytest.fixture
def vendors(_vendor_server: Vendors) -> Vendors:
    _vendor_server.reset()
    return _vendor_server


def unique_product() -> str:
    """A product name of its own, so in-process breaker and limit state is the test's own."""
    return f"p{uuid.uuid4().hex[:12]}"


def make_config(sections: dict[str, Any], root: Any = None) -> Config:
    return Config.from_dict(
        {"product": unique_product(), "environments": ["dev"], **sections}, root=root
    )


def provider(name: str, **extra: Any) -> dict[str, Any]:
    """A vendor provider: its target, the shared input mapping and its output mapping."""
    return {
        "name": name,
        "target": f"{name}:send",
        "input": {"to": "{{ input.to }}"},
        "output": OUTPUTS[name],
        **extra,
    }
