"""Command groups for storage, events, caches and notifications."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from ductwork.cli.state import State, common, json_arg, limit, pass_state, with_client
from ductwork.errors import ValidationError

# -- storage --------------------------------------------------------------------------------


@click.group()
def storage() -> None:
    """Objects in storage resources."""


@storage.command("save")
@click.argument("resource")
@click.argument("key")
@click.argument(
    "source", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@click.option(
    "--content-type", default=None, help="The object's media type [default: from its name]."
)
@common
@pass_state
def storage_save(
    state: State, resource: str, key: str, source: Path, content_type: str | None
) -> None:
    """Save file SOURCE (- for stdin) under KEY."""

    async def stream() -> Any:
        handle = sys.stdin.buffer if str(source) == "-" else open(source, "rb")  # noqa: SIM115
        try:
            while chunk := await asyncio.to_thread(handle.read, 1 << 20):
                yield chunk
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()

    info = with_client(
        state, lambda dw: dw.storage.save(resource, key, stream(), content_type=content_type)
    )
    state.emit(info.__dict__, lambda: click.echo(f"saved {info.key} ({info.size} bytes)"))


@storage.command("read")
@click.argument("resource")
@click.argument("key")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this file [default: stdout].",
)
@common
@pass_state
def storage_read(state: State, resource: str, key: str, output: Path | None) -> None:
    """Read KEY (streamed, never whole in memory)."""

    async def copy(dw: Any) -> None:
        out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        try:
            async for chunk in dw.storage.stream(resource, key):
                out.write(chunk)
        finally:
            if output:
                out.close()
            else:
                out.flush()

    with_client(state, copy)


@storage.command("ls")
@click.argument("resource")
@click.argument("prefix", default="")
@limit(1000, "objects")
@common
@pass_state
def storage_ls(state: State, resource: str, prefix: str, limit: int) -> None:
    """List objects under PREFIX."""
    page = with_client(state, lambda dw: dw.storage.list(resource, prefix, limit=limit))
    rows = [
        {
            "key": i.key,
            "size": i.size,
            "content_type": i.content_type,
            "modified": i.modified.isoformat() if i.modified else None,
        }
        for i in page.items
    ]

    def human() -> None:
        for row in rows:
            click.echo(f"{row['size']:>12}  {row['modified'] or '-':32}  {row['key']}")
        if page.cursor:
            click.echo(f"(more: --limit larger than {limit})")

    state.emit({"items": rows, "cursor": page.cursor}, human)


@storage.command("rm")
@click.argument("resource")
@click.argument("key")
@common
@pass_state
def storage_rm(state: State, resource: str, key: str) -> None:
    """Delete KEY."""
    _deleted(state, key, with_client(state, lambda dw: dw.storage.delete(resource, key)))


def _deleted(state: State, key: str, existed: bool) -> None:
    state.emit(
        {"deleted": existed},
        lambda: click.echo(f"deleted {key}" if existed else f"{key} did not exist"),
    )


# -- events ---------------------------------------------------------------------------------


@click.group()
def events() -> None:
    """Publish and consume events."""


@events.command("publish")
@click.argument("broker")
@click.argument("event")
@click.argument("message")
@click.option("--key", default=None, help="Message key: events with one key keep their order.")
@common
@pass_state
def events_publish(state: State, broker: str, event: str, message: str, key: str | None) -> None:
    """Publish MESSAGE (JSON) as EVENT; returns once the broker confirmed it."""
    data = json_arg(message, "MESSAGE")
    mid = with_client(state, lambda dw: dw.events.publish(broker, event, data, key=key))
    state.emit({"id": mid}, lambda: click.echo(f"published (confirmed), id {mid}"))


@events.command("tail")
@click.argument("broker")
@click.argument("event")
@click.option(
    "--group", default="ductwork-cli", show_default=True, help="Consumer group to read as."
)
@click.option("--limit", "-n", type=int, default=None, help="Stop after N events.")
@common
@pass_state
def events_tail(state: State, broker: str, event: str, group: str, limit: int | None) -> None:
    """Print events as they arrive (each is acked once printed)."""

    async def printer(ev: Any) -> None:
        data = ev.data
        shown = data.decode(errors="replace") if isinstance(data, bytes) else json.dumps(data)
        click.echo(
            json.dumps({"topic": ev.topic, "key": ev.key, "id": ev.id, "data": shown})
            if state.as_json
            else f"[{ev.topic}] key={ev.key} {shown}"
        )

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the in-flight event goes back
        with_client(
            state, lambda dw: dw.events.subscribe(broker, event, printer, group=group, limit=limit)
        )


@events.group("dead-letters")
def dead_letters() -> None:
    """Messages whose handlers kept failing."""


@dead_letters.command("ls")
@click.argument("broker")
@click.argument("event")
@limit(100, "dead letters")
@common
@pass_state
def dead_letters_ls(state: State, broker: str, event: str, limit: int) -> None:
    """List dead letters of EVENT."""
    letters = with_client(state, lambda dw: dw.events.dead_letters(broker, event, limit=limit))
    rows = [
        {
            "id": e.id,
            "key": e.key,
            "error": e.header("x-ductwork-error"),
            "deliveries": e.header("x-ductwork-deliveries"),
            "body": e.body.decode(errors="replace"),
        }
        for e in letters
    ]

    def human() -> None:
        for row in rows:
            click.echo(
                f"{row['id']}  deliveries={row['deliveries']}  error={row['error']}  {row['body']}"
            )
        click.echo(f"{len(rows)} dead letter(s)")

    state.emit(rows, human)


@dead_letters.command("replay")
@click.argument("broker")
@click.argument("event")
@limit(100, "dead letters")
@common
@pass_state
def dead_letters_replay(state: State, broker: str, event: str, limit: int) -> None:
    """Publish dead letters back to EVENT's topic."""
    count = with_client(state, lambda dw: dw.events.replay_dead_letters(broker, event, limit=limit))
    state.emit({"replayed": count}, lambda: click.echo(f"replayed {count} dead letter(s)"))


# -- caches ---------------------------------------------------------------------------------


@click.group()
def cache() -> None:
    """Values in caches."""


@cache.command("get")
@click.argument("resource")
@click.argument("key")
@common
@pass_state
def cache_get(state: State, resource: str, key: str) -> None:
    """Print the cached value (JSON), or null."""
    state.emit(with_client(state, lambda dw: dw.caches.get(resource, key)))


@cache.command("set")
@click.argument("resource")
@click.argument("key")
@click.argument("value")
@click.option("--ttl", default=None, help="Time to live, e.g. 30s, 15m [default: the cache's].")
@common
@pass_state
def cache_set(state: State, resource: str, key: str, value: str, ttl: str | None) -> None:
    """Cache VALUE (JSON) under KEY."""
    from ductwork.config.durations import parse_duration

    data = json_arg(value, "VALUE")
    kwargs: dict[str, Any] = {}
    if ttl is not None:
        try:
            kwargs["ttl"] = parse_duration(ttl)
        except ValueError as exc:
            raise ValidationError(f"--ttl: {exc}") from None
    with_client(state, lambda dw: dw.caches.set(resource, key, data, **kwargs))
    state.emit({"set": key}, lambda: click.echo(f"set {key}"))


@cache.command("ls")
@click.argument("resource")
@click.argument("prefix", default="")
@limit(1000, "keys")
@common
@pass_state
def cache_ls(state: State, resource: str, prefix: str, limit: int) -> None:
    """List keys starting with PREFIX (the product's own keys only)."""

    async def keys(dw: Any) -> list[str]:
        found: list[str] = []
        cursor = None
        while len(found) < limit:
            page = await dw.caches.list(resource, prefix, cursor=cursor, limit=limit - len(found))
            found.extend(page.keys)
            if page.cursor is None:
                break
            cursor = page.cursor
        return sorted(set(found))[:limit]

    found = with_client(state, keys)
    state.emit(found, lambda: click.echo("".join(f"{key}\n" for key in found), nl=False))


@cache.command("delete")
@click.argument("resource")
@click.argument("key")
@common
@pass_state
def cache_delete(state: State, resource: str, key: str) -> None:
    """Delete KEY."""
    _deleted(state, key, with_client(state, lambda dw: dw.caches.delete(resource, key)))


@cache.command("clear")
@click.argument("resource")
@click.argument("prefix", default="")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common
@pass_state
def cache_clear(state: State, resource: str, prefix: str, yes: bool) -> None:
    """Delete every key starting with PREFIX (all of the cache's keys by default)."""
    what = f"keys starting with {prefix!r}" if prefix else "every key"
    if not yes:
        click.confirm(f"delete {what} of cache {resource!r}?", abort=True)
    count = with_client(state, lambda dw: dw.caches.clear(resource, prefix))
    state.emit({"deleted": count}, lambda: click.echo(f"deleted {count} key(s)"))


# -- notifications --------------------------------------------------------------------------


@click.group()
def notify() -> None:
    """Send notifications; read the delivery log."""


@notify.command("send")
@click.argument("notification")
@click.argument("message", required=False)
@click.option("--to", "to", multiple=True, required=True, help="Recipient (repeatable).")
@click.option(
    "--channel",
    type=click.Choice(["email", "push", "sms", "callback"]),
    default=None,
    help="The message's template to send [default: its only one].",
)
@click.option("--data", default=None, help="JSON object filling the template.")
@click.option("--subject", default=None, help="Email subject of an ad hoc message (no MESSAGE).")
@click.option("--body", default=None, help="Body of an ad hoc message (no MESSAGE).")
@common
@pass_state
def notify_send(
    state: State,
    notification: str,
    message: str | None,
    to: tuple[str, ...],
    channel: str | None,
    data: str | None,
    subject: str | None,
    body: str | None,
) -> None:
    """Send MESSAGE (a template from the config) or an ad hoc --body."""
    values = json_arg(data, "--data")
    receipt = with_client(
        state,
        lambda dw: dw.notifications.send(
            notification,
            message,
            to=list(to),
            channel=channel,
            data=values,
            subject=subject,
            body=body,
        ),
    )
    state.emit(
        receipt.__dict__,
        lambda: click.echo(f"sent {receipt.channel} to {', '.join(receipt.to)} (id {receipt.id})"),
    )


COMMANDS = (storage, events, cache, notify)
