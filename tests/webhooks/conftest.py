"""A real webhook receiver on loopback (Starlette under uvicorn, in a thread), over HTTP and TLS.

Every request is verified with ``standardwebhooks`` (the specification's reference
implementation, written by others): a genuine one is recorded and answered 200 (or with the
failures its query asks for), anything else is answered 400 and recorded as rejected.

Query parameters script failures per path: ``fail=N`` answers the first N requests with
``code`` (default 503) and ``retry_after`` as the Retry-After header when given.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import standardwebhooks
import trustme
from ductwork.testing.servers import asgi_server
from ductwork.webhooks import generate_secret
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SECRET = generate_secret()
HOOKS_HOST = "hooks.example.com"


@dataclass
class Delivery:
    url: str
    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any


@dataclass
class State:
    secret: str = SECRET
    deliveries: list[Delivery] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    requests: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.secret = SECRET
        self.deliveries.clear()
        self.rejected.clear()
        self.requests.clear()


def build_app(state: State) -> Starlette:
    async def receive(request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        headers = dict(request.headers.items())
        try:
            payload = standardwebhooks.Webhook(state.secret).verify(body, headers)
        except standardwebhooks.WebhookVerificationError as exc:
            state.rejected.append((path, str(exc)))
            return Response(str(exc), status_code=400)
        state.requests[path] += 1
        state.deliveries.append(Delivery(str(request.url), path, headers, body, payload))
        fail = int(request.query_params.get("fail", "0"))
        if state.requests[path] <= fail:
            extra = {}
            if "retry_after" in request.query_params:
                extra["retry-after"] = request.query_params["retry_after"]
            code = int(request.query_params.get("code", "503"))
            return Response("try again later", status_code=code, headers=extra)
        return Response("ok")

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


@dataclass
class Receiver:
    url: str  # http://127.0.0.1:<port>
    tls_port: int  # https on 127.0.0.1, certificate for hooks.example.com
    ca_file: str
    state: State


@pytest.fixture(scope="session")
def receiver_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    state = State()
    app = build_app(state)
    folder = tmp_path_factory.mktemp("webhook-tls")
    ca = trustme.CA()
    cert = ca.issue_cert(HOOKS_HOST)
    ca_file, cert_file = folder / "ca.pem", folder / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    with asgi_server(app) as plain, asgi_server(app, ssl_certfile=str(cert_file)) as tls:
        yield Receiver(plain, urlsplit(tls).port or 0, str(ca_file), state)


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.state.reset()
    return receiver_server
