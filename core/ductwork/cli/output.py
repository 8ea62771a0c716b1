"""Tables for people and for pipes.

On a terminal a table is drawn with rich (colours, borders, cells shortened to fit). When
stdout is not a terminal (``| grep``, ``> file``, CI logs) every value is printed in full, one
row per line, cells separated by a tab, under a header line: nothing is cut to 80 columns and
no markup leaks into the text.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import click

__all__ = ["Cell", "Column", "is_terminal", "print_table"]


@dataclass(frozen=True)
class Cell:
    """A value shown in a style on a terminal (``"green"``, ``"red"``), plain elsewhere."""

    text: str
    style: str = ""


@dataclass(frozen=True)
class Column:
    """A column; ``shrinks`` lets a terminal shorten its cells with an ellipsis to fit."""

    name: str
    shrinks: bool = True


def is_terminal() -> bool:
    """Whether stdout is a terminal (a person reads it) rather than a pipe or a file."""
    return sys.stdout.isatty()


def _plain(value: str | Cell) -> str:
    text = value.text if isinstance(value, Cell) else value
    # One row per line and one cell per tab, whatever the value holds.
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def print_table(
    columns: Sequence[str | Column],
    rows: Iterable[Sequence[str | Cell]],
    *,
    title: str | None = None,
    wide: bool = False,
) -> None:
    """Print ``rows`` under ``columns``: rich on a terminal, full tab-separated text elsewhere.

    ``wide`` keeps every cell whole on a terminal too (the table is as wide as its rows).
    """
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    rows = [list(row) for row in rows]
    if not is_terminal():
        click.echo("\t".join(c.name for c in cols))
        for row in rows:
            click.echo("\t".join(_plain(cell) for cell in row))
        return

    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for index, col in enumerate(cols):
        if col.shrinks and not wide:
            table.add_column(col.name, overflow="ellipsis")
        else:
            longest = max([len(col.name), *(len(_plain(row[index])) for row in rows)])
            table.add_column(col.name, no_wrap=True, min_width=longest)
    for row in rows:
        table.add_row(
            *(Text(c.text, style=c.style) if isinstance(c, Cell) else Text(c) for c in row)
        )
    console = Console(highlight=False)
    if wide:
        unbounded = console.options.update(max_width=10_000)
        natural = Measurement.get(console, unbounded, table).maximum
        console = Console(highlight=False, width=max(console.width, natural))
    console.print(table)
