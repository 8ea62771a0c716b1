"""``ductwork demo``: the bundled sample product, run end to end on the embedded providers.

The sample product is the same file ``ductwork init`` writes. The demo saves and reads a file,
publishes and consumes an event, runs database actions, caches a value, sends a notification,
and runs the ``signup`` feature end to end (durably, in the embedded SQLite run store), and
reports each step.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ductwork.client import Ductwork
from ductwork.config.loader import DEFAULT_CONFIG, Config
from ductwork.processor.events import Event

__all__ = ["Step", "run_demo", "sample_config"]


@dataclass(frozen=True)
class Step:
    """One thing the demo did."""

    namespace: str
    action: str
    result: str


def sample_config() -> str:
    """The text of the sample product config (what ``ductwork init`` writes)."""
    return resources.files("ductwork.templates").joinpath("ductwork.yaml").read_text()


async def run_demo(folder: Path) -> list[Step]:
    """Write the sample product into ``folder`` (if absent) and exercise every namespace."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / DEFAULT_CONFIG
    if not config_file.exists():
        config_file.write_text(sample_config())
    steps: list[Step] = []
    async with Ductwork(Config.load(config_file), env="dev") as dw:
        info = await dw.storage.save("files", "greetings/hello.txt", "Hello from ductwork!")
        text = (await dw.storage.read_file("files", "greetings/hello.txt")).decode()
        listed = [i.key for i in (await dw.storage.list("files", "greetings/")).items]
        steps.append(
            Step(
                "storage",
                "save + read_file + list",
                f"{text!r} ({info.size} bytes); listed {listed}",
            )
        )

        received: list[Event] = []
        ready = asyncio.Event()

        async def on_user_created(event: Event) -> None:
            received.append(event)

        consumer = asyncio.create_task(
            dw.events.subscribe(
                "bus", "user_created", on_user_created, group="demo", limit=1, ready=ready
            )
        )
        await ready.wait()
        message_id = await dw.events.publish(
            "bus", "user_created", {"id": 1, "name": "Ada"}, key="user-1"
        )
        await asyncio.wait_for(consumer, timeout=30)
        steps.append(
            Step(
                "events",
                "publish + subscribe",
                f"message {message_id} confirmed; handler got "
                f"{json.dumps(received[0].data)} on {received[0].topic}",
            )
        )

        await dw.databases.action.execute("main", "create_users_table")
        await dw.databases.execute("main", "DELETE FROM users WHERE id = :id", {"id": 1})
        added = await dw.databases.action.execute(
            "main", "add_user", {"id": 1, "name": "Ada", "email": "ada@example.com"}
        )
        user = await dw.databases.action.execute("main", "get_user", {"id": 1})
        steps.append(
            Step("databases", "action add_user + get_user", f"{added} row inserted; got {user}")
        )

        await dw.caches.set("hot", "user:1", user)
        cached = await dw.caches.get("hot", "user:1")
        views = await dw.caches.incr("hot", "views:user:1")
        steps.append(Step("caches", "set + get + incr", f"got {cached}; views = {views}"))

        receipt = await dw.notifications.send(
            "mail", "welcome", to="ada@example.com", data={"name": "Ada"}
        )
        outbox = dw.resolve("notifications", "mail").context.resolve(".ductwork/outbox")
        written = sorted(outbox.glob(f"*{receipt.id}*"))
        steps.append(
            Step(
                "notifications",
                "send welcome",
                f"{receipt.channel} to {receipt.to} written to "
                f"{written[0].relative_to(folder) if written else outbox}",
            )
        )
        await dw.databases.execute("main", "DELETE FROM users WHERE id = :id", {"id": 2})
        output = await dw.features.run(
            "signup", {"id": 2, "name": "Grace", "email": "grace@example.com"}
        )
        run_id = (await dw.features.list("signup", limit=1))[0].job_id
        shown = await dw.features.output(run_id)
        took = sum(s["duration_ms"] or 0 for s in shown.steps)
        steps.append(
            Step(
                "features",
                "run signup",
                f"{len(shown.steps)} steps checkpointed ({took} ms of step time) in run "
                f"{run_id}; output {json.dumps(output)}",
            )
        )
    return steps
