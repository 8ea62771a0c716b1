"""Command groups for databases and graphs: db exec|action|migrate|rollback|status, graph."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import click

from ductwork.cli.state import State, common, input_option, json_arg, pass_state, with_client
from ductwork.providers.database import DEFAULT_BATCH_SIZE


def _streaming(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--format jsonl`` (rows as JSON lines, streamed) and ``--batch-size`` on a command."""
    fn = click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=DEFAULT_BATCH_SIZE,
        show_default=True,
        help="Rows per fetch with --format jsonl.",
    )(fn)
    return click.option(
        "--format",
        "format_",
        type=click.Choice(["json", "jsonl"]),
        default=None,
        help="json: as --json; jsonl: one JSON object per row, streamed through a cursor in "
        "bounded memory (works piped).",
    )(fn)


def _emit_jsonl(state: State, rows: Callable[[Any], AsyncIterator[dict[str, Any]]]) -> None:
    """Write each row of ``rows(dw)`` to stdout as one JSON line, as it arrives."""
    out = sys.stdout

    async def write(dw: Any) -> None:
        async with aclosing(rows(dw)) as stream:  # type: ignore[type-var]
            async for row in stream:
                out.write(json.dumps(row, default=str, ensure_ascii=False))
                out.write("\n")
        out.flush()

    try:
        with_client(state, write)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly; stdout must not be flushed again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


# -- databases ------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """Statements and actions on databases."""


@db.command("exec")
@click.argument("database")
@click.argument("sql")
@click.option("--params", default=None, help="JSON object of :name parameters.")
@_streaming
@common
@pass_state
def db_exec(
    state: State,
    database: str,
    sql: str,
    params: str | None,
    format_: str | None,
    batch_size: int,
) -> None:
    """Run SQL with bound parameters."""
    values = json_arg(params, "--params")
    if format_ == "jsonl":
        _emit_jsonl(
            state,
            lambda dw: dw.databases.stream(database, sql, values, batch_size=batch_size),
        )
        return
    if format_ == "json":
        state.as_json = True
    result = with_client(state, lambda dw: dw.databases.execute(database, sql, values))
    state.emit(
        {"rows": result.rows, "rowcount": result.rowcount},
        lambda: _print_rows(result.rows, result.rowcount),
    )


@db.command("action")
@click.argument("database")
@click.argument("action")
@input_option
@_streaming
@common
@pass_state
def db_action(
    state: State,
    database: str,
    action: str,
    input_: str | None,
    format_: str | None,
    batch_size: int,
) -> None:
    """Run a database action declared in the config."""
    values = json_arg(input_, "--input")
    if format_ == "jsonl":
        _emit_jsonl(
            state,
            lambda dw: dw.databases.action.stream(database, action, values, batch_size=batch_size),
        )
        return
    if format_ == "json":
        state.as_json = True
    result = with_client(state, lambda dw: dw.databases.action.execute(database, action, values))
    state.emit(result)


def _print_rows(rows: list[dict[str, Any]], rowcount: int) -> None:
    if not rows:
        click.echo(f"{rowcount} row(s) affected")
        return
    from ductwork.cli.output import print_table

    print_table(list(rows[0]), [[str(v) for v in row.values()] for row in rows])


@db.command("migrate")
@click.argument("database")
@click.option("--to", "to", default=None, help="Stop after this migration tag.")
@common
@pass_state
def db_migrate(state: State, database: str, to: str | None) -> None:
    """Apply pending migrations in order."""
    done = with_client(state, lambda dw: dw.databases.migration.run(database, to=to))
    state.emit(
        {"applied": done},
        lambda: click.echo(f"applied {', '.join(done)}" if done else "nothing to apply"),
    )


@db.command("rollback")
@click.argument("database")
@click.option("--to", "to", default=None, help="Undo every migration applied after this tag.")
@common
@pass_state
def db_rollback(state: State, database: str, to: str | None) -> None:
    """Undo the last migration (or down to a tag)."""
    undone = with_client(state, lambda dw: dw.databases.migration.rollback(database, to=to))
    state.emit(
        {"rolled_back": undone},
        lambda: click.echo(f"rolled back {', '.join(undone)}" if undone else "nothing applied"),
    )


@db.command("status")
@click.argument("database")
@common
@pass_state
def db_status(state: State, database: str) -> None:
    """Which migrations are applied."""
    rows = with_client(state, lambda dw: dw.databases.migration.status(database))

    def human() -> None:
        for row in rows:
            mark = "applied" if row.applied else "pending"
            note = "  CHANGED since applied" if row.changed else ""
            click.echo(f"{mark:8} {row.applied_at or '':26} {row.tag}{note}")

    state.emit([row.__dict__ for row in rows], human)


# -- graphs ---------------------------------------------------------------------------------


@click.group()
def graph() -> None:
    """Cypher queries and actions on graph databases."""


@graph.command("query")
@click.argument("resource")
@click.argument("cypher")
@click.option("--params", default=None, help="JSON object of $name parameters.")
@common
@pass_state
def graph_query(state: State, resource: str, cypher: str, params: str | None) -> None:
    """Run CYPHER with bound parameters."""
    values = json_arg(params, "--params")
    result = with_client(state, lambda dw: dw.graphs.query(resource, cypher, values))
    state.emit({"records": result.records}, lambda: _print_rows(result.records, 0))


@graph.command("action")
@click.argument("resource")
@click.argument("action")
@input_option
@common
@pass_state
def graph_action(state: State, resource: str, action: str, input_: str | None) -> None:
    """Run a graph action declared in the config."""
    values = json_arg(input_, "--input")
    state.emit(with_client(state, lambda dw: dw.graphs.action.execute(resource, action, values)))


COMMANDS = (db, graph)
