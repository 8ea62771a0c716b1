"""The root command, shared options, output and error handling."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from ductwork.errors import DuctworkError

__all__ = ["State", "main", "pass_state", "run_async"]

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


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DuctworkError as exc:
            from rich.console import Console

            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[bold red]error:[/] {type(exc).__name__}: {_escape(str(exc))}"
            )
            sys.exit(1)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@click.group(cls=_Group)
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path),
    default=Path("ductwork.yaml"),
    envvar="DUCTWORK_CONFIG",
    show_default=True,
    help="Product config file.",
)
@click.option(
    "--env",
    "-e",
    default=None,
    help="Environment [default: $DUCTWORK_ENV or the config's default_env].",
)
@click.option("--json", "as_json", is_flag=True, help="Print data as JSON.")
@click.version_option(package_name="ductwork")
@click.pass_context
def cli(ctx: click.Context, config: Path, env: str | None, as_json: bool) -> None:
    """ductwork: your product's storage, events, databases, caches and notifications by tag."""
    ctx.obj = State(config, env, as_json)


def main() -> None:
    """Entry point of the ``ductwork`` command."""
    from ductwork.cli import (  # noqa: F401 - registers commands
        apps,
        commands,
        databases,
        features,
        jobs,
        resources,
    )

    cli(prog_name="ductwork")
