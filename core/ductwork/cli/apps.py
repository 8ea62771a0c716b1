"""The ``actions`` and ``apps`` command groups: call HTTP app actions, list, show, import."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from ductwork.cli.state import State, common, input_option, json_arg, pass_state, with_client
from ductwork.errors import ConfigError, ValidationError


@click.group()
def actions() -> None:
    """Call HTTP app actions."""


@actions.command("run")
@click.argument("app")
@click.argument("action")
@input_option
@click.option("--cache", default=None, help="Cache resource to reuse results from.")
@click.option("--retries", type=int, default=None, help="Retries instead of the policy's.")
@click.option("--max-size", type=click.IntRange(min=1), default=None, help="Largest body in bytes.")
@click.option(
    "--save-to",
    default=None,
    metavar="STORAGE:KEY",
    help="Stream the body into storage resource STORAGE under KEY instead of printing it.",
)
@common
@pass_state
def actions_run(
    state: State,
    app: str,
    action: str,
    input_: str | None,
    cache: str | None,
    retries: int | None,
    max_size: int | None,
    save_to: str | None,
) -> None:
    """Run ACTION of APP and print the result (status, headers, body)."""
    data = json_arg(input_, "--input")
    if data is not None and not isinstance(data, dict):
        raise ValidationError("--input must be a JSON object")
    target: tuple[str, str] | None = None
    if save_to is not None:
        storage, sep, key = save_to.partition(":")
        if not (sep and storage and key):
            raise ValidationError(f"--save-to must be STORAGE:KEY, not {save_to!r}")
        target = (storage, key)
    result = with_client(
        state,
        lambda dw: dw.actions.run(
            app, action, data, cache=cache, retries=retries, max_size=max_size, save_to=target
        ),
    )
    out = {**result.to_dict(), "cached": result.cached}

    def human() -> None:
        note = " (cached)" if result.cached else ""
        click.echo(
            f"{result.status} in {result.elapsed * 1000:.0f} ms, {result.attempts} attempt(s){note}"
        )
        if result.saved is not None:
            saved = result.saved
            click.echo(f"saved {saved.size} bytes to {saved.storage}:{saved.key}")
            return
        body = out["body"]
        click.echo(body if isinstance(body, str) else json.dumps(body, indent=2))

    state.emit(out, human)


@click.group()
def apps() -> None:
    """HTTP apps: list, show, import from OpenAPI."""


@apps.command("ls")
@common
@pass_state
def apps_ls(state: State) -> None:
    """List the apps, their environments and number of actions."""
    product = state.config().product
    rows = [
        {
            "app": tag,
            "envs": sorted(app.envs),
            "actions": len(app.actions),
            "description": app.description,
        }
        for tag, app in sorted(product.apps.items())
    ]

    def human() -> None:
        for row in rows:
            click.echo(
                f"{row['app']:24} {row['actions']:>4} actions  envs: "
                f"{', '.join(row['envs']) or '-'}"
            )
        if not rows:
            click.echo("no apps defined")

    state.emit(rows, human)


@apps.command("show")
@click.argument("app")
@common
@pass_state
def apps_show(state: State, app: str) -> None:
    """Show APP: its env's base URL and auth kind, and every action."""
    from ductwork._redact import redact
    from ductwork.client import Ductwork

    config = state.config()
    dw = Ductwork(config, env=state.env)
    spec = dw.actions.app(app)
    settings = dw.actions.settings(app)
    data: dict[str, Any] = {
        "app": app,
        "env": dw.env,
        "base_url": redact(settings.base_url),
        "auth": settings.auth.kind,
        "timeout": settings.timeout,
        "retry": spec.retry.model_dump(),
        "actions": {
            tag: {
                "method": a.method,
                "path": a.path,
                "request": a.request,
                "inputs": {
                    part: sorted(fields)
                    for part, fields in (
                        ("params", a.path_params()),
                        ("query", a.query),
                        ("headers", a.headers),
                        ("body", a.body or {}),
                    )
                    if fields
                },
                "summary": a.summary,
            }
            for tag, a in sorted(spec.actions.items())
        },
    }

    def human() -> None:
        click.echo(f"{app} (env {dw.env}): {data['base_url']}  auth: {data['auth']}")
        for tag, a in data["actions"].items():
            inputs = "; ".join(f"{p}: {', '.join(n)}" for p, n in a["inputs"].items())
            click.echo(f"  {tag:28} {a['method']:6} {a['path']}  {inputs}")

    state.emit(data, human)


@apps.command("import")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tag", required=True, help="The app's tag in ductwork.yaml.")
@click.option("--base-url", default=None, help="Base URL [default: the spec's first server].")
@click.option("--no-auth", is_flag=True, help="Do not map the spec's security scheme.")
@click.option("--write", is_flag=True, help="Add the app to the config file.")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the app definition (YAML) to this file.",
)
@common
@pass_state
def apps_import(
    state: State,
    spec: Path,
    tag: str,
    base_url: str | None,
    no_auth: bool,
    write: bool,
    output: Path | None,
) -> None:
    """Import an OpenAPI 3.0/3.1 SPEC (JSON or YAML) as app TAG."""
    import yaml

    from ductwork.apps.openapi import import_openapi
    from ductwork.config.loader import Config

    config = state.config() if write or state.config_path.exists() else None
    environments = config.product.environments if config else ["dev"]
    imported = import_openapi(
        spec, tag=tag, environments=environments, base_url=base_url, auth=not no_auth
    )
    block = yaml.safe_dump(
        {"apps": {tag: imported.definition}}, sort_keys=False, allow_unicode=True, width=100
    )
    for note in imported.notes:
        click.echo(f"note: {note}", err=True)
    if write:
        assert config is not None
        if tag in config.product.apps:
            raise ConfigError(
                f"app {tag!r} exists already; remove it first", file=str(state.config_path)
            )
        text = _insert_app(state.config_path.read_text(), block)
        Config.from_text(text, root=config.root, file=state.config_path)
        state.config_path.write_text(text)
    elif output is not None:
        output.write_text(block)
    summary = {
        "app": tag,
        "actions": sorted(imported.definition["actions"]),
        "notes": imported.notes,
    }
    if not write and output is None:
        click.echo(block, nl=False)
        return
    where = state.config_path if write else output
    state.emit(
        summary,
        lambda: click.echo(
            f"imported {len(summary['actions'])} actions as app {tag!r} into {where}"
        ),
    )


def _insert_app(text: str, block: str) -> str:
    """``text`` with the app under its ``apps:`` key (added at the end if absent); comments stay."""
    body = block.split("\n", 1)[1]  # the lines under "apps:", indented by two spaces
    found = re.search(r"^apps:[ \t]*(\{\s*\})?[ \t]*(#.*)?$", text, re.MULTILINE)
    if found is None:
        return text.rstrip("\n") + "\n\napps:\n" + body
    head, tail = text[: found.start()], text[found.end() :]
    return f"{head}apps:\n{body}{tail.lstrip(chr(10))}" if tail.strip() else f"{head}apps:\n{body}"


COMMANDS = (actions, apps)
