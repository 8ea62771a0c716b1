"""Project commands: init, config, plugins, doctor, demo."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from ductwork.cli.state import State, common, pass_state
from ductwork.errors import ConfigError, DuctworkError


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default=Path("."))
@click.option("--force", is_flag=True, help="Overwrite an existing ductwork.yaml.")
def init(directory: Path, force: bool) -> None:
    """Create a working product in DIRECTORY: dev on embedded providers, a prd sketch."""
    from ductwork.demo import sample_config

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "ductwork.yaml"
    if target.exists() and not force:
        raise ConfigError("already exists; pass --force to overwrite it", file=str(target))
    target.write_text(sample_config())
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text(".ductwork/\n")
    click.echo(f"wrote {target}")
    click.echo("next: ductwork config validate --env dev && ductwork demo")


@click.group()
def config() -> None:
    """Validate, show and export the product config."""


@config.command("validate")
@common
@pass_state
def config_validate(state: State) -> None:
    """Check the config and every resource's options in one env."""
    from ductwork.client import Ductwork

    cfg = state.config()
    env = cfg.env_name(state.env)
    resolved = cfg.validate(env)
    names = [f"{r.section}.{r.tag}" for r in resolved]
    actions = Ductwork(cfg, env=env).actions
    for tag in sorted(cfg.product.apps):
        actions.settings(tag, env)  # base URL, auth and references of each app in this env
        names.append(f"apps.{tag}")
    # function and child-feature targets (expressions and other targets are checked at load)
    names += [f"features.{tag}" for tag in Ductwork(cfg, env=env).features.check()]
    state.emit(
        {"valid": True, "env": env, "resources": names},
        lambda: click.echo(f"{cfg.file}: env {env!r} is valid ({len(names)} resources)"),
    )


@config.command("show")
@common
@pass_state
def config_show(state: State) -> None:
    """Print the config as one env resolves it, secrets redacted."""
    import yaml

    shown = state.config().show(state.env)
    state.emit(shown, lambda: click.echo(yaml.safe_dump(shown, sort_keys=False), nl=False))


@config.command("schema")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this file instead of stdout.",
)
def config_schema(output: Path | None) -> None:
    """Print the JSON Schema of ductwork.yaml, with every installed provider's options."""
    from ductwork.config.schema import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n")
        click.echo(f"wrote {output}")


@click.group()
def plugins() -> None:
    """Installed plugins and their providers."""


@plugins.command("list")
@common
@pass_state
def plugins_list(state: State) -> None:
    """Plugins, their providers and versions, and first-party extras not installed."""
    from ductwork.plugins import KNOWN_EXTRAS, get_registry, install_hint

    registry = get_registry()
    rows: list[dict[str, Any]] = [
        {
            "plugin": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "providers": [f"{p.kind}:{p.name}" for p in info.providers],
            "error": info.error,
        }
        for info in registry.plugins.values()
    ]
    missing = sorted({extra for key, extra in KNOWN_EXTRAS.items() if key not in registry.entries})
    data = {"plugins": rows, "missing_extras": {e: install_hint(e) for e in missing}}

    def human() -> None:
        from ductwork.cli.output import Cell, print_table

        print_table(
            ("plugin", "distribution", "version", "providers", "status"),
            [
                (
                    row["plugin"],
                    row["distribution"] or "-",
                    row["version"] or "-",
                    ", ".join(row["providers"]) or "-",
                    Cell(f"failed: {row['error']}", "red") if row["error"] else Cell("ok", "green"),
                )
                for row in rows
            ],
        )
        for extra in missing:
            click.echo(f"not installed: ductwork[{extra}] -> {install_hint(extra)}")

    state.emit(data, human)


@click.command()
@common
@pass_state
def doctor(state: State) -> None:
    """Check one env: options valid, secrets set, plugins installed, resources and apps answer."""
    cfg = state.config()
    env = cfg.env_name(state.env)
    results = asyncio.run(_doctor(cfg, env))
    failed = [r for r in results if not r["ok"]]

    def human() -> None:
        from ductwork.cli.output import Cell, print_table

        print_table(
            ("resource", "provider", "status", "latency", "detail"),
            [
                (
                    r["resource"],
                    r["provider"] or "-",
                    Cell("ok", "green") if r["ok"] else Cell("FAIL", "red"),
                    f"{r['latency_ms']:.1f} ms" if r["latency_ms"] is not None else "-",
                    r["detail"],
                )
                for r in results
            ],
            title=f"ductwork doctor — env {env}",
        )

    state.emit({"env": env, "ok": not failed, "resources": results}, human)
    if failed:
        raise SystemExit(1)


async def _doctor(cfg: Any, env: str) -> list[dict[str, Any]]:
    from ductwork.config.loader import Config

    assert isinstance(cfg, Config)
    results: list[dict[str, Any]] = []
    for section, tag, resource in cfg.product.resources():
        row: dict[str, Any] = {
            "resource": f"{section}.{tag}",
            "provider": resource.envs.get(env, {}).get("provider"),
            "ok": False,
            "latency_ms": None,
            "detail": "",
        }
        results.append(row)
        try:
            resolved = cfg.resolve(section, tag, env)
        except DuctworkError as exc:
            row["detail"] = str(exc)
            continue
        provider = resolved.build()
        started = time.perf_counter()
        try:
            await asyncio.wait_for(provider.open(), timeout=15)
            await asyncio.wait_for(provider.ping(), timeout=15)
            row["latency_ms"] = (time.perf_counter() - started) * 1000
            row.update(ok=True, detail=f"reachable at {provider.endpoint or 'in process'}")
        except TimeoutError:
            row["detail"] = f"no answer within 15 s from {provider.endpoint}"
        except DuctworkError as exc:
            row["detail"] = str(exc)
        finally:
            try:
                await provider.close()
            except DuctworkError as exc:
                row["detail"] += f" (close failed: {exc})"
    for tag in sorted(cfg.product.apps):
        results.append(await _probe_app(cfg, env, tag))
    if cfg.product.healthchecks:
        results.extend(await _health_rows(cfg, env))
    return results


async def _health_rows(cfg: Any, env: str) -> list[dict[str, Any]]:
    """Each healthcheck as the workers' monitor last stored it (unhealthy fails the doctor)."""
    from ductwork.client import Ductwork
    from ductwork.engine.store import Store
    from ductwork.health.monitor import read_states
    from ductwork.health.probes import probe_of

    tags = sorted(cfg.product.healthchecks)
    rows: list[dict[str, Any]] = []
    for tag in tags:
        kind, target, _ = probe_of(cfg.product.healthchecks[tag].probe)
        rows.append(
            {
                "resource": f"healthchecks.{tag}",
                "provider": f"{kind.name} {target}",
                "ok": False,
                "latency_ms": None,
                "detail": "",
            }
        )
    try:
        url = Ductwork(cfg, env=env).jobs.settings(env).url
        assert url is not None  # the settings always name the store
        store = await Store.open(url, wait=0, connect_timeout=5.0)
    except DuctworkError as exc:
        for row in rows:
            row["detail"] = f"health state unreadable: {exc}"
        return rows
    try:
        states = await read_states(store, env, tags)
    finally:
        await store.close()
    for row, tag in zip(rows, tags, strict=True):
        found = states[tag]
        row["ok"] = found.status != "unhealthy"
        if found.latency is not None:
            row["latency_ms"] = found.latency * 1000
        if found.status == "unknown":
            row["detail"] = "unknown: no probe recorded yet (is a `ductwork worker` running?)"
            continue
        since = found.since.strftime("%Y-%m-%dT%H:%M:%SZ") if found.since else "?"
        row["detail"] = f"{found.status} since {since}"
        if found.last_error:
            row["detail"] += f"; last error: {found.last_error}"
    return rows


async def _probe_app(cfg: Any, env: str, tag: str) -> dict[str, Any]:
    """An app's settings resolve in ``env`` and its base URL answers HTTP (any status counts).

    The probe is one ``HEAD`` of the base URL without the app's credentials or headers: it shows
    the host is reachable and speaks HTTP, never calls an operation.
    """
    import httpx

    from ductwork._redact import redact
    from ductwork.client import Ductwork

    row: dict[str, Any] = {
        "resource": f"apps.{tag}",
        "provider": "http",
        "ok": False,
        "latency_ms": None,
        "detail": "",
    }
    try:
        settings = Ductwork(cfg, env=env).actions.settings(tag, env)
    except DuctworkError as exc:
        row["detail"] = str(exc)
        return row
    wait = min(settings.timeout, 15.0)
    timeout = httpx.Timeout(wait, connect=min(settings.connect_timeout or wait, 15.0))
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=settings.verify) as http:
            answer = await http.head(settings.base_url)
    except httpx.HTTPError as exc:
        row["detail"] = redact(
            f"cannot reach {settings.base_url}: {type(exc).__name__}: {exc}".rstrip(": ")
        )
        return row
    row["latency_ms"] = (time.perf_counter() - started) * 1000
    row.update(
        ok=True,
        detail=redact(f"reachable at {settings.base_url} (HEAD answered {answer.status_code})"),
    )
    return row


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help="Run in this folder (kept) instead of a temporary one.",
)
@common
@pass_state
def demo(state: State, directory: Path | None) -> None:
    """Run the sample product end to end on the embedded providers."""
    from ductwork.demo import run_demo

    if directory is None:
        with tempfile.TemporaryDirectory(prefix="ductwork-demo-") as tmp:
            steps = asyncio.run(run_demo(Path(tmp)))
            where = "a temporary folder (removed)"
    else:
        steps = asyncio.run(run_demo(directory))
        where = str(directory)

    def human() -> None:
        from ductwork.cli.output import print_table

        print_table(
            ("namespace", "did", "result"),
            [(step.namespace, step.action, step.result) for step in steps],
            title="ductwork demo — env dev, embedded providers",
        )
        click.echo(f"all {len(steps)} namespaces worked, in {where}")

    state.emit([step.__dict__ for step in steps], human)


COMMANDS = (init, config, plugins, doctor, demo)
