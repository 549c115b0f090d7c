"""The report a run leaves in reports/<rel>.json: written last, so its presence means "done"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import runstate


def _seconds(start: str, end: str) -> float:
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def build(record: dict[str, Any], *, finished: str, results_uri: str, errors_uri: str) -> dict[str, Any]:
    rows = runstate.counts(record)
    jobs = []
    for part_name, part in sorted(record["parts"].items(), key=lambda kv: (kv[1]["attempt"], kv[1]["chunk"])):
        jobs.append({
            "part": part_name,
            "name": part.get("job"),
            "attempt": part["attempt"],
            "rows": part["rows"],
            "state": part.get("jobState"),
            "error": part.get("jobError"),
        })
    report = {
        "run": record["run"],
        "state": runstate.outcome(rows),
        "input": record["input"],
        "model": record["model"],
        "rows": {k: rows[k] for k in ("total", "succeeded", "failed", "failedByStage", "failedByReason")},
        "retriedRows": rows["retried"],
        "tokens": rows["tokens"],
        "jobs": jobs,
        "received": record["received"],
        "finished": finished,
        "seconds": _seconds(record["received"], finished),
        "results": results_uri,
        "errors": errors_uri,
    }
    notes = [record["note"]] if record.get("note") else []
    notes += [part["note"] for _, part in sorted(record["parts"].items()) if part.get("note")]
    if notes:
        report["note"] = "; ".join(notes)
    return report
