"""Structured logging for Cloud Logging: one JSON object per line on stdout.

Cloud Logging parses `severity` and `message`, and lifts `logging.googleapis.com/labels` into entry labels,
so log-based metrics and alerts can key on the stable dotted `event` name and the run/job/input labels.

Every event name is declared once, in `EVENTS`: the README's list and the Terraform metrics are tested
against it, and logging an undeclared name fails, so a typo cannot silently blind an alert.

Each entry is ONE text write to `sys.stdout`, ending in a newline: with `LOG_EXECUTION_ID=true` the
functions runtime replaces stdout with a text-only wrapper that parses each write as one JSON object and adds
its `execution_id` label; bytes, or an entry split over two writes, would break that.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

_SEVERITIES = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
FUNCTIONS = ("submit", "poll", "collect", "reconcile")

# event name -> what it means (the README's logging table says the same, and a test keeps them equal).
EVENTS: dict[str, str] = {
    "run.received": "an upload became a run (or a redelivery resumed one still staging)",
    "run.ignored": "an object that is not an input (wrong prefix, folder placeholder, another event type)",
    "run.duplicate": "a replayed or concurrent event for a run that already moved on",
    "run.staged": "validation and staging finished; rows staged in parts, the seconds it took and waited on storage",
    "run.superseded": "a newer generation of the same input owns the outputs, or this one vanished",
    "run.renamed": "the input's name is too long for its output names; outputs use a shortened name",
    "run.finished": "the report is written and run-finished announced",
    "run.unbalanced": "the report's counts disagree (never expected: a bug to report)",
    "run.lease_lost": "another delivery of the run took over publishing its outputs",
    "run.repaired": "the reconciliation moved a run forward from stored state (what and why)",
    "run.repair_failed": "a repair failed this tick (logged, the other runs go on; tried again next tick)",
    "run.stuck": "the reconciliation cannot move a run forward (ERROR; once per run and period)",
    "run.cancelled": "an operator cancelled the run (`batchctl cancel`): its jobs and queued parts stop",
    "rows.failed": "rows that end in the errors file (by stage and reason)",
    "rows.failed_by_reason": "a finished run's failed rows for one reason (one line per reason, for metrics)",
    "rows.retried": "retryable rows sent to another attempt",
    "rows.unjoinable": "a prediction line that cannot be matched to a row",
    "part.collected": "a finished job's output joined into result and error lines, the seconds it took and waited",
    "job.submitted": "a Vertex job was created (or found after an ambiguous create) for a part",
    "job.state": "a Vertex job changed state",
    "job.finished": "a Vertex job reached a final state and was announced",
    "job.slow": "a Vertex job has been pending or running longer than the warning threshold",
    "job.throttled": "Vertex answered 429 at create: that model waits, others go on",
    "job.denied": "Vertex answered 401/403 at create: retried until the permission grace runs out",
    "job.create_ambiguous": "a create may have succeeded: the job is looked up by label before another",
    "job.create_failed": "a create failed after an ambiguous one; retried after a look-up",
    "job.create_pending": "Vertex unreachable: the reservation is handed to the next poll",
    "job.lookup_failed": "looking a job up by label failed; nothing is concluded from it",
    "job.lost": "a reservation was adopted by a poller while its creator still worked",
    "job.skipped": "a queued entry whose part must not run (any more) was dropped",
    "job.cancelled": "a job created while its run was being cancelled was cancelled right after the create",
    "job.cancel_failed": "cancelling such a job failed: it runs to its end, its rows still counted once",
    "job.rejected": "Vertex refused the job for good; its rows go to errors",
    "job.unknown": "a job-finished message names a run or part that does not exist",
    "poll.tick": "one poll tick's summary (active, queued, finished, adopted, started)",
    "poll.entry_failed": "one active job could not be checked this tick; the others went on",
    "reconcile.tick": "one reconciliation tick's summary (runs visited, repairs, inputs swept)",
    "message.dead_lettered": "a message reached a dead-letter topic; the reconciliation repairs its run",
    **{f"{fn}.rejected": f"{fn}: a permanent error; the event is acknowledged" for fn in FUNCTIONS},
    **{f"{fn}.failed": f"{fn}: the event is redelivered (WARNING for a transient error, ERROR for an unexpected one)"
       for fn in FUNCTIONS},
    **{f"{fn}.misconfigured": f"{fn}: configuration error (CRITICAL); the event is redelivered"
       for fn in FUNCTIONS},
}


def log(severity: str, event: str, message: str, *, run: str | None = None, job: str | None = None,
        input: str | None = None, **fields: Any) -> None:  # noqa: A002 - `input` is the contract's label name
    """Write one structured log line. `fields` carry counts and durations (JSON-serialisable values)."""
    assert severity in _SEVERITIES, severity
    assert event in EVENTS, f"undeclared log event {event!r}: declare it in shared/log.py EVENTS"
    entry: dict[str, Any] = {"severity": severity, "message": message, "event": event}
    labels = {k: v for k, v in (("run", run), ("job", job), ("input", input)) if v}
    if labels:
        entry["logging.googleapis.com/labels"] = labels
    entry.update(fields)
    now = time.time()  # one reading: seconds and milliseconds from two readings could straddle a second
    entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    sys.stdout.write(orjson.dumps(entry, default=str).decode() + "\n")
    sys.stdout.flush()


def info(event: str, message: str, **kw: Any) -> None:
    log("INFO", event, message, **kw)


def warning(event: str, message: str, **kw: Any) -> None:
    log("WARNING", event, message, **kw)


def error(event: str, message: str, **kw: Any) -> None:
    log("ERROR", event, message, **kw)


def critical(event: str, message: str, **kw: Any) -> None:
    log("CRITICAL", event, message, **kw)
