"""The root command and its error handling; the command tree is assembled here from the leaves."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ductwork.cli import (
    apps,
    commands,
    databases,
    features,
    health,
    jobs,
    notifications,
    resilience,
    resources,
    sessions,
)
from ductwork.cli.state import State
from ductwork.errors import DuctworkError

__all__ = ["cli", "main"]


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


for _leaf in (commands, resources, databases, apps, jobs, features, sessions, resilience, health):
    for _command in _leaf.COMMANDS:
        cli.add_command(_command)
# `notify log` joins the `notify` group (`notify send` is in resources.py)
for _command in notifications.COMMANDS:
    resources.notify.add_command(_command)


def main() -> None:
    """Entry point of the ``ductwork`` command."""
    cli(prog_name="ductwork")
