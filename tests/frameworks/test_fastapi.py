"""The FastAPI recipe: the lifespan opens and closes the client; routes publish and cache."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from ductwork.client import Ductwork
from fastapi.testclient import TestClient

USERS = 16


def test_routes_share_the_client_the_lifespan_opened(recipe, product):
    recipe.write("shop_fastapi.py")
    app = recipe.load("shop_fastapi").app
    start = threading.Barrier(8)
    asyncio.run(consume(0))  # the audit group joins the topic first (limit 0: join, return)

    with TestClient(app) as client:  # runs the lifespan
        dw: Ductwork = app.state.dw

        def put(i: int) -> int:
            if i < 8:
                start.wait()  # the first eight go in together
            return client.put(f"/users/{i}", json={"name": f"u{i}"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(put, range(USERS))) == {200}
            reads = list(pool.map(lambda i: client.get(f"/users/{i}").json(), range(USERS)))
        assert reads == [{"name": f"u{i}"} for i in range(USERS)]
        assert client.get("/users/999").status_code == 404
        assert dw._providers  # opened once, shared by every request

    assert dw._providers == {}  # the lifespan closed it at shutdown

    assert sorted(asyncio.run(consume(USERS))) == list(range(USERS))


async def consume(limit: int) -> list[int]:
    seen: list[int] = []

    async def handler(event) -> None:
        seen.append(event.data["id"])

    async with Ductwork.from_config() as reader:
        subscribe = reader.events.subscribe(
            "bus", "user_created", handler, group="audit", limit=limit
        )
        await asyncio.wait_for(subscribe, 30)
    return seen
