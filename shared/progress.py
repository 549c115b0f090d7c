"""Pushing a run forward from wherever an earlier delivery left it. Every step is idempotent, so any event
that touches a run (a duplicate upload, a replayed job-finished) can call this to repair a crash window."""

from __future__ import annotations

from typing import Any

from shared import layout, runstate, scheduler
from shared.finalize import finalize
from shared.pipeline import Pipeline


def resume(p: Pipeline, record: dict[str, Any]) -> None:
    if record["state"] == runstate.RUNNING:
        queued = [layout.queue_id(record["run"], part) for part, entry in sorted(record["parts"].items())
                  if entry["state"] == runstate.QUEUED]
        if queued:
            scheduler.enqueue(p, queued, record["model"])
        scheduler.drain(p)
    elif record["state"] == runstate.FINALIZING:
        finalize(p, record["run"])
