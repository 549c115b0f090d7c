"""`batchctl cancel RUN`: stop a run's Vertex jobs and queued work (`shared/cancel.py`); the run still ends
with a report of what completed, its cancelled rows in errors with reason CANCELLED."""

from __future__ import annotations

import click

from batchctl._context import Ops
from batchctl._output import emit_json, pairs
from batchctl._resolve import run_record
from shared import cancel as core


@click.command("cancel", short_help="Cancel a run's jobs and queued work; it still gets a report.")
@click.argument("target", metavar="RUN|INPUT")
@click.option("--reason", help="Why, for the report's note and the log.")
@click.option("--dry-run", is_flag=True, help="Say what would be cancelled, and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def cancel(ops: Ops, target: str, reason: str | None, dry_run: bool, as_json: bool) -> None:
    """Cancel a run: its active Vertex jobs are cancelled and its queued parts dropped.

    The run still ends with a report of what completed: rows that did not run are in its errors file with
    status CANCELLED (not retried), partial output of cancelled jobs is kept. Exits 1 if the run is already
    finishing or done."""
    record = run_record(ops, target)
    p = ops.pipeline()
    with ops.quiet_core():
        done = core.plan(p, record["run"]) if dry_run else core.cancel(p, record["run"], reason=reason)
    if as_json:
        emit_json({**done.to_json(), "dryRun": dry_run})
        return
    verb = "would cancel" if dry_run else "cancelled"
    jobs = ", ".join(f"{j.job_id} ({j.part}, {j.state.removeprefix('JOB_STATE_')})" for j in done.jobs) or "none"
    pairs([("input", done.input), ("state", done.state + (" (cancelled before)" if done.already else "")),
           (f"{verb} jobs", jobs),
           ("queued parts", f"{', '.join(done.parts) or 'none'} ({done.rows} rows)"
                            + (" would go to errors as CANCELLED" if dry_run else " go to errors as CANCELLED"))],
          tty=ops.tty, title=f"{'dry run: ' if dry_run else ''}cancel run {done.run}")
