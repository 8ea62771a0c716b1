"""cache= on database actions: concurrent identical calls run the statement once."""

from __future__ import annotations

import asyncio
import uuid

from ductwork.client import Ductwork
from ductwork.config.loader import Config


async def test_twenty_concurrent_cached_inserts_run_one_statement(product_dir):
    config = product_dir / "ductwork.yaml"
    # memory caches of one namespace share values within a process: this test's own
    own = f"{{provider: memory, namespace: {uuid.uuid4().hex}}}"
    config.write_text(config.read_text().replace("{provider: memory}", own))
    async with Ductwork(Config.load(config), env="dev") as dw:
        await dw.databases.action.execute("main", "create_users_table")
        user = {"id": 7, "name": "Ada", "email": "ada@example.com"}
        # An insert run twice would break the primary key: one statement, one shared count.
        counts = await asyncio.gather(
            *(dw.databases.action.execute("main", "add_user", user, cache="hot") for _ in range(20))
        )
        assert counts == [1] * 20
        found = await dw.databases.action.execute("main", "get_user", {"id": 7}, cache="hot")
        assert found["name"] == "Ada"
        await dw.databases.action.execute("main", "add_user", {**user, "id": 8})
        again = await dw.databases.action.execute("main", "get_user", {"id": 7}, cache="hot")
        assert again == found
        keys = (await dw.caches.list("hot", "databases:main:")).keys
        assert sorted(k.split(":")[2] for k in keys) == ["add_user", "get_user"]
