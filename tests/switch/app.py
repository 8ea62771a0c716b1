"""The application: the same code for every environment. Prints what it observed as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json

from ductwork import Ductwork, Event


async def main(config: str, env: str, order_id: int) -> dict[str, object]:
    async with Ductwork.from_config(config, env=env) as dw:
        await dw.databases.migration.run("main")

        receipt = f"receipts/{order_id}.txt"
        await dw.storage.save("receipts", receipt, f"order {order_id}: 1 x lamp")
        stored = (await dw.storage.read_file("receipts", receipt)).decode()
        listed = [i.key for i in (await dw.storage.list("receipts", "receipts/")).items]

        seen: list[Event] = []
        ready = asyncio.Event()

        async def on_order(event: Event) -> None:
            seen.append(event)

        consumer = asyncio.create_task(
            dw.events.subscribe(
                "bus", "order_placed", on_order, group=f"app-{order_id}", limit=1, ready=ready
            )
        )
        await asyncio.wait_for(ready.wait(), 60)
        await dw.events.publish(
            "bus", "order_placed", {"id": order_id, "item": "lamp"}, key=str(order_id)
        )
        await asyncio.wait_for(consumer, 60)

        await dw.databases.action.execute(
            "main", "add_order", {"id": order_id, "item": "lamp", "total": 40}
        )
        order = await dw.databases.action.execute("main", "get_order", {"id": order_id})

        await dw.caches.set("hot", f"order:{order_id}", order)
        cached = await dw.caches.get("hot", f"order:{order_id}")
        views = await dw.caches.incr("hot", f"views:{order_id}", 2)

        sent = await dw.notifications.send("mail", "receipt", to="ada@example.com", data=order)
        return {
            "stored": stored,
            "listed": listed,
            "event": seen[0].data,
            "order": order,
            "cached": cached,
            "views": views,
            "mailed_to": sent.to,
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="ductwork.yaml")
    parser.add_argument("--env", default=None)
    parser.add_argument("--order", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.config, args.env, args.order))))
