"""What a cancelled run means to the functions (the rules every path follows once an operator cancelled a
run; the operator's action itself is `shared/cancel.py`).

A row of a cancelled run that did not run fails as CANCELLED (499, not retryable), and a part that has not
run is announced as finished with no job, so collect writes its rows to errors and the run still settles.
"""

from __future__ import annotations

from typing import Any

from shared import joining, runstate
from shared.pipeline import Pipeline

CANCELLED_CODE, CANCELLED_STATUS = 499, "CANCELLED"


def failure(cancelled: dict[str, Any]) -> joining.Failure:
    """What a row of a cancelled run that did not run fails with (row 0: filled in by the caller)."""
    reason = f" ({cancelled['reason']})" if cancelled.get("reason") else ""
    return joining.Failure(0, CANCELLED_CODE, CANCELLED_STATUS,
                           f"the run was cancelled by an operator at {cancelled.get('at')}{reason} before this "
                           "row ran", False)


def announcement(run: str, part: str, cancelled: dict[str, Any]) -> dict[str, Any]:
    """The job-finished message of a part that will not run because its run was cancelled."""
    fail = failure(cancelled)
    return {"run": run, "part": part, "job": None, "state": "JOB_STATE_CANCELLED",
            "error": {"code": None, "httpCode": fail.code, "status": fail.status, "message": fail.message}}


def announce_queued(p: Pipeline, record: dict[str, Any], parts: list[str] | None = None) -> list[str]:
    """Announce the queued parts of a cancelled run (`parts`, or every part the record holds as queued) as
    cancelled: collect turns their rows into errors. Returns the parts announced."""
    if parts is None:
        parts = [part for part, entry in sorted(record["parts"].items()) if entry["state"] == runstate.QUEUED]
    for part in parts:
        p.publisher.publish(p.config.job_finished_topic, announcement(record["run"], part, record["cancelled"]))
    return parts
