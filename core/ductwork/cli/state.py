"""What every command shares: the state passed down, common options, running async bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ductwork.errors import ValidationError

if TYPE_CHECKING:
    from ductwork.engine.store import Store

__all__ = [
    "State",
    "common",
    "input_option",
    "json_arg",
    "limit",
    "on_store",
    "pass_state",
    "run_async",
    "with_client",
]

T = TypeVar("T")


class State:
    """What every command receives: where the config is, which env, how to print."""

    def __init__(self, config: Path, env: str | None, as_json: bool) -> None:
        self.config_path = config
        self.env = env
        self.as_json = as_json

    def config(self) -> Any:
        """The loaded config."""
        from ductwork.config.loader import Config

        return Config.load(self.config_path)

    def client(self) -> Any:
        """A client on the config and env."""
        from ductwork.client import Ductwork

        return Ductwork(self.config(), env=self.env)

    def emit(self, data: Any, human: Callable[[], None] | None = None) -> None:
        """Print ``data`` as JSON with --json, else run ``human`` (or pretty-print ``data``)."""
        if self.as_json or human is None:
            click.echo(json.dumps(data, indent=2, default=str, sort_keys=False))
        else:
            human()


pass_state = click.make_pass_decorator(State)


#: ``-i/--input JSON``: an action's, a feature's or a plan's input, the same everywhere
input_option = click.option(
    "--input", "-i", "input_", default=None, help="The input, as a JSON object."
)


def limit(default: int, what: str) -> Callable[[Callable[..., Any]], Any]:
    """``--limit N``: at most N of ``what`` (a listing's page), 1 or more, the same everywhere."""
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help=f"At most this many {what}.",
    )


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --env and --json on a command (they may also be given before the command)."""

    @click.option(
        "--config",
        "-c",
        "config",
        type=click.Path(path_type=Path),
        default=None,
        help="Product config file [default: ./ductwork.yaml].",
    )
    @click.option(
        "--env",
        "-e",
        "env",
        default=None,
        help="Environment [default: $DUCTWORK_ENV or the config's default_env].",
    )
    @click.option("--json", "as_json", is_flag=True, default=None, help="Print data as JSON.")
    @click.pass_context
    @wraps(fn)
    def wrapper(
        ctx: click.Context,
        config: Path | None,
        env: str | None,
        as_json: bool | None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        state: State = ctx.ensure_object(State)
        if config is not None:
            state.config_path = config
        if env is not None:
            state.env = env
        if as_json is not None:
            state.as_json = as_json
        return fn(*args, **kwargs)

    return wrapper


def run_async(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run an async command body on a fresh event loop."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return asyncio.run(fn(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


def json_arg(text: str | None, what: str) -> Any:
    """``text`` parsed as JSON (``None`` stays ``None``); a clear error naming ``what``."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{what} is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None


async def _with_client(state: State, fn: Callable[[Any], Awaitable[T]]) -> T:
    async with state.client() as dw:
        return await fn(dw)


def with_client(state: State, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(dw)`` on a client opened on the state's config and env."""
    return asyncio.run(_with_client(state, fn))


# A command reading the run store opens it for one attempt, each connection bounded: it should
# answer at once, not wait out a database restart the way a worker does.
CONNECT_TIMEOUT = 5.0


def on_store(state: State, fn: Callable[[Store], Awaitable[T]]) -> T:
    """``fn(store)`` on the env's run store; unreachable: a ConnectionFailedError at once."""

    async def main() -> T:
        from ductwork.engine.store import Store

        async with state.client() as dw:
            url = dw.jobs.settings().url
            store = await Store.open(url, wait=0, connect_timeout=CONNECT_TIMEOUT)
            try:
                return await fn(store)
            finally:
                await store.close()

    return asyncio.run(main())
