"""A real HTTP API on loopback (Starlette under uvicorn, in a thread) and a product using it."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.testing.asgi import asgi_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

CLIENT_ID, CLIENT_SECRET = "shop-client", "s3cr3t-client-pw"
STATIC_TOKEN = "static-tok-9f8e7d"
BASIC = ("ada", "lovelace-pw")


@dataclass
class State:
    """What the server saw; tests read and reset it."""

    requests: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    tokens: list[str] = field(default_factory=list)
    expires_in: int = 3600
    logins: int = 0
    authorizations: list[str] = field(default_factory=list)  # every Authorization header seen

    def reset(self) -> None:
        self.requests = 0
        self.hits.clear()
        self.tokens.clear()
        self.expires_in = 3600
        self.logins = 0
        self.authorizations.clear()


def build_app(state: State) -> Starlette:
    async def echo(request: Request) -> Response:
        ctype = request.headers.get("content-type", "")
        body: Any = None
        if "json" in ctype:
            body = await request.json()
        elif "form" in ctype:
            form = await request.form()
            body = {
                k: (
                    {
                        "filename": v.filename,
                        "size": len(await v.read()),
                        "content_type": v.content_type,
                    }
                    if hasattr(v, "filename")
                    else v
                )
                for k, v in form.multi_items()
            }
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "params": dict(request.path_params),
                "query": {k: request.query_params.getlist(k) for k in request.query_params},
                "headers": dict(request.headers),
                "content_type": ctype.split(";")[0],
                "body": body,
            }
        )

    async def flaky(request: Request) -> Response:
        key = request.path_params["key"]
        state.hits[key] += 1
        fail = int(request.query_params.get("fail", "1"))
        status = int(request.query_params.get("status", "503"))
        if state.hits[key] <= fail:
            headers = {}
            if "retry_after" in request.query_params:
                headers["Retry-After"] = request.query_params["retry_after"]
            return JSONResponse({"error": "busy"}, status_code=status, headers=headers)
        return JSONResponse({"ok": True, "calls": state.hits[key]})

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        state.hits[f"status-{code}"] += 1
        # echoes the credentials back, as some APIs do in error bodies
        return JSONResponse(
            {"error": "bad request", "auth": request.headers.get("authorization")},
            status_code=code,
        )

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("delay", "1")))
        return PlainTextResponse("late")

    async def token(request: Request) -> Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = await request.form()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        issued = f"oauth-tok-{len(state.tokens) + 1}"
        state.tokens.append(issued)
        return JSONResponse(
            {"access_token": issued, "token_type": "Bearer", "expires_in": state.expires_in}
        )

    async def login(request: Request) -> Response:
        data = await request.json()
        if data != {"user": "svc", "password": "svc-pw-123"}:
            return JSONResponse({"error": "denied"}, status_code=401)
        state.logins += 1
        issued = f"sess-tok-{state.logins}"
        state.tokens.append(issued)
        return JSONResponse({"data": {"token": issued, "ttl": state.expires_in}})

    async def protected(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in state.tokens[-1:]:
            return JSONResponse({"error": "invalid token"}, status_code=401)
        return JSONResponse({"token": auth[7:]})

    async def count(request: Request) -> Response:
        state.hits["count"] += 1
        return JSONResponse({"n": state.hits["count"], "q": request.query_params.get("q")})

    # -- a few operations of tests/apps/specs/petstore.yaml and parcel.json ----------------

    pets = [
        {"id": 1, "name": "Rex", "tag": "dog"},
        {"id": 2, "name": "Tom"},
        {"id": 3, "name": "Nemo", "tag": "fish"},
    ]

    async def list_pets(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "100"))
        return JSONResponse(pets[:limit], headers={"x-next": "/pets?page=2"})

    async def create_pets(request: Request) -> Response:
        state.hits["createPets"] += 1
        return Response(status_code=201)

    async def show_pet(request: Request) -> Response:
        found = [p for p in pets if str(p["id"]) == request.path_params["petId"]]
        if not found:
            return JSONResponse({"code": 404, "message": "no such pet"}, status_code=404)
        return JSONResponse(found)

    def authorised(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in state.tokens[-1:]

    async def create_shipment(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"title": "unauthorised"}, status_code=401)
        if len(request.headers.get("idempotency-key", "")) < 8:
            return JSONResponse({"title": "missing Idempotency-Key"}, status_code=400)
        body = await request.json()
        return JSONResponse({**body, "id": "shp_0001", "status": "created"}, status_code=201)

    async def get_shipment(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"title": "unauthorised"}, status_code=401)
        return JSONResponse({"id": request.path_params["shipmentId"], "status": "in_transit"})

    async def cancel_shipment(request: Request) -> Response:
        state.hits[f"cancel-{request.path_params['shipmentId']}"] += 1
        return Response(status_code=204)

    async def upload_document(request: Request) -> Response:
        form = await request.form()
        upload = form["file"]
        size = len(await upload.read())  # type: ignore[union-attr]
        return JSONResponse({"id": "doc_1", "kind": form["kind"], "size": size}, status_code=201)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "auth": request.headers.get("authorization")})

    async def middleware_count(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            state.requests += 1
            state.authorizations.extend(
                v.decode() for k, v in scope["headers"] if k == b"authorization"
            )
        await inner(scope, receive, send)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    inner = Starlette(
        routes=[
            Route("/echo", echo, methods=methods),
            Route("/echo/{id}", echo, methods=methods),
            Route("/bot{key}/me", echo, methods=methods),
            Route("/flaky/{key}", flaky, methods=methods),
            Route("/status/{code}", status, methods=methods),
            Route("/slow", slow),
            Route("/oauth/token", token, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/protected", protected),
            Route("/count", count),
            Route("/petstore/v1/pets", list_pets),
            Route("/petstore/v1/pets", create_pets, methods=["POST"]),
            Route("/petstore/v1/pets/{petId}", show_pet),
            Route("/parcel/v2/shipments", create_shipment, methods=["POST"]),
            Route("/parcel/v2/shipments/{shipmentId}", get_shipment),
            Route("/parcel/v2/shipments/{shipmentId}", cancel_shipment, methods=["DELETE"]),
            Route("/parcel/v2/shipments/{shipmentId}/documents", upload_document, methods=["POST"]),
            Route("/parcel/v2/health", health),
        ]
    )
    return middleware_count  # type: ignore[return-value]


@dataclass
class ApiServer:
    url: str
    state: State


@pytest.fixture(scope="session")
def api() -> Any:
    state = State()
    with asgi_server(build_app(state)) as served:
        yield ApiServer(served.url, state)


@pytest.fixture
def server(api: ApiServer) -> ApiServer:
    api.state.reset()
    return api


def product(apps: dict[str, Any], *, root: Any = None) -> Config:
    return Config.from_dict(
        {
            "product": "shop",
            "environments": ["dev", "prd"],
            "caches": {"hot": {"dev": {"provider": "memory"}, "ttl": 60}},
            "apps": apps,
        },
        root=root,
    )


@pytest.fixture
async def make_client():
    opened: list[Ductwork] = []

    def make(apps: dict[str, Any], env: str = "dev") -> Ductwork:
        client = Ductwork(product(apps), env=env)
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.close()
