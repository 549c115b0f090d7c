"""Pushing a run forward from wherever an earlier delivery left it. Every step is idempotent, so any event
that touches a run (a duplicate upload, a replayed job-finished) can call this to repair a crash window."""

from __future__ import annotations

from typing import Any

from shared import cancellation, runstate, scheduler
from shared.finalize import finalize
from shared.pipeline import Pipeline


def resume(p: Pipeline, record: dict[str, Any]) -> None:
    if record["state"] == runstate.RUNNING:
        # Parts whose job exists are not waiting any more, whatever the record says (it learns a part's job
        # when the part is collected).
        record = runstate.with_jobs(record, scheduler.job_markers(p, record["run"]))
    if record["state"] == runstate.RUNNING and record.get("cancelled"):
        cancellation.announce_queued(p, record)  # an operator cancelled the run: its waiting parts will not run
    elif record["state"] == runstate.RUNNING:
        scheduler.enqueue(p, record, [part for part, entry in sorted(record["parts"].items())
                                      if entry["state"] == runstate.QUEUED])
        # One try at starting jobs now; under a burst of uploads the poll tick does it instead.
        scheduler.drain(p, best_effort=True)
    elif record["state"] == runstate.FINALIZING:
        finalize(p, record["run"])
