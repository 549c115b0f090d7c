"""`batchctl runs`: the runs, newest first, from the run index (one listing per shard, no record read)."""

from __future__ import annotations

import re
import time

import click

from batchctl._context import Ops
from batchctl._output import Column, bar, emit_json, rich_table, table
from shared import runindex, runstate
from shared.runindex import RunSummary

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
COLUMNS = (Column("RUN"), Column("INPUT"), Column("STATE"), Column("ROWS", right=True), Column(""),
           Column("FAILED", right=True), Column("JOBS", right=True), Column("AGE", right=True))


def parse_age(value: str | None) -> float | None:
    """Seconds of an age such as 90s, 30m, 12h, 1d, 2w (None stays None)."""
    if value is None:
        return None
    found = _AGE.match(value.strip().lower())
    if not found:
        raise click.BadParameter(f"{value!r} is not an age such as 30m, 12h, 1d or 2w", param_hint="--since")
    return float(found.group(1)) * _UNIT[found.group(2)]


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def input_text(ops: Ops, uri: str) -> str:
    """An input's name as the operator dropped it: relative to the input prefix when it is under it."""
    head = f"gs://{ops.config.input_bucket}/{ops.config.input_prefix}"
    return uri[len(head):] if uri.startswith(head) else uri


def rows(ops: Ops, runs: list[RunSummary], now: float) -> list[list[str]]:
    return [[r.run, input_text(ops, r.input), r.label, f"{r.done}/{r.total}" if r.state != runstate.STAGING else "?",
             bar(r.done, r.total, ascii_only=not ops.tty), str(r.failed), str(r.jobs), age_text(r.age_seconds(now))]
            for r in runs]


def _select(ops: Ops, state: str | None, since: float | None, limit: int) -> tuple[list[RunSummary], int]:
    everything = runindex.list_runs(ops.storage(), ops.config.output_bucket)
    chosen = runindex.select(everything, state=state, since_seconds=since, now=ops.clock())
    return (chosen[:limit] if limit else chosen), len(everything)


@click.command("runs", short_help="List runs, newest first: state, rows, failed, jobs, age.")
@click.option("--state", type=click.Choice(runindex.STATES), help="Only runs in this state (or with this outcome).")
@click.option("--since", metavar="AGE", help="Only runs received within AGE, such as 30m, 12h, 1d or 2w.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Show at most this many runs (0: all).")
@click.option("--watch", is_flag=True, help="Refresh until every shown run is done.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def runs(ops: Ops, state: str | None, since: str | None, limit: int, watch: bool, interval: float,
         as_json: bool) -> None:
    """List runs, newest first: input, state, rows done of total, failed rows, jobs and age.

    The state is the outcome once a run is done (succeeded, partial, failed, superseded). With --watch the
    list refreshes in place until every run shown is done (with --json: one document, once they are)."""
    seconds = parse_age(since)
    chosen, total = _select(ops, state, seconds, limit)
    if watch:
        chosen, total = _watch(ops, state, seconds, limit, interval, chosen, total, quiet=as_json)
        if not as_json:
            return
    if as_json:
        emit_json({"runs": [r.to_json() for r in chosen], "shown": len(chosen), "total": total})
        return
    table(COLUMNS, rows(ops, chosen, ops.clock()), tty=ops.tty)
    if not chosen:
        click.echo("no runs" + (" match" if state or since else ""), err=True)


def _settled(chosen: list[RunSummary]) -> bool:
    return all(r.state == runstate.DONE for r in chosen)


def _watch(ops: Ops, state: str | None, since: float | None, limit: int, interval: float,
           chosen: list[RunSummary], total: int, *, quiet: bool) -> tuple[list[RunSummary], int]:
    if quiet:
        while not _settled(chosen):
            time.sleep(interval)
            chosen, total = _select(ops, state, since, limit)
        return chosen, total
    if ops.tty:
        from rich.live import Live

        with Live(rich_table(COLUMNS, rows(ops, chosen, ops.clock())), auto_refresh=False) as live:
            while not _settled(chosen):
                time.sleep(interval)
                chosen, total = _select(ops, state, since, limit)
                live.update(rich_table(COLUMNS, rows(ops, chosen, ops.clock())), refresh=True)
        return chosen, total
    shown = None
    while True:
        view = [row[:-1] for row in rows(ops, chosen, ops.clock())]  # without the age, which always moves
        if view != shown:
            table(COLUMNS, rows(ops, chosen, ops.clock()), tty=False)
            click.echo("")
            shown = view
        if _settled(chosen):
            return chosen, total
        time.sleep(interval)
        chosen, total = _select(ops, state, since, limit)
