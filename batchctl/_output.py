"""How commands print: one JSON document with --json; otherwise a Rich table on a terminal and plain aligned
columns elsewhere (pipes, files, tests). Data goes to stdout, messages to stderr."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    right: bool = False  # numbers


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


def say(text: str) -> None:
    """A message for the operator (stderr): never mixed into the data on stdout."""
    click.echo(text, err=True)


def bar(done: int, total: int, width: int = 12, *, ascii_only: bool = True) -> str:
    """A progress bar of `width` cells for done/total."""
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    full, empty = ("#", "-") if ascii_only else ("█", "░")
    return full * filled + empty * (width - filled)


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]], *, tty: bool, title: str | None = None) -> None:
    if tty:
        _rich_table(columns, rows, title)
        return
    if title:
        click.echo(title)
    widths = [max([len(c.title)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if c.right else cell.ljust(w)
                         for cell, w, c in zip(cells, widths, columns, strict=True)).rstrip()

    click.echo(fmt([c.title for c in columns]))
    for row in rows:
        click.echo(fmt(row))


def _rich_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None) -> None:
    from rich.console import Console

    Console().print(rich_table(columns, rows, title))


def rich_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None = None):
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c.title, justify="right" if c.right else "left", overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t


def pairs(items: Sequence[tuple[str, str]], *, tty: bool, title: str | None = None) -> None:
    """`key: value` lines (a two-column grid on a terminal)."""
    if title:
        click.secho(title, bold=tty)
    width = max((len(k) for k, _ in items), default=0)
    for key, value in items:
        click.echo(f"  {key.ljust(width)}  {value}")


@contextmanager
def progress(label: str, total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar for `total` bytes on a terminal (a no-op elsewhere); yields `update(done)`."""
    if not enabled:
        yield lambda done: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=True) as bars:
        task = bars.add_task(label, total=total)
        yield lambda done: bars.update(task, completed=done)
