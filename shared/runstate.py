"""The run state machine, as pure functions over the run record (a small JSON object in the work bucket).

    staging ──staged──▶ running ──all parts collected──▶ finalizing ──outputs written──▶ done
       └──────── no usable rows ──────────────────────────▶ finalizing

A run is split into parts (chunk x attempt); each part goes queued ▶ collected, or queued ▶ rejected ▶
collected when Vertex refuses its job for good (the refusal is stored, so it can be announced again if its
message is lost). The record is not written per job (a run of many parts would make it a hot object): a
part's job is kept in a job marker (`layout.job_marker_name`), and `with_jobs` gives the record as the
pipeline knows it, those parts submitted (`job_submitted` does the same for one part, for tools and tests
that have no markers). Collecting a part may add its retry part (same chunk, next attempt) in the same
compare-and-swap, so "every part is collected" means the run is settled. Each function is pure: it returns a
new record, or None for "nothing to change", and is safe to re-run on a replayed event.

An operator may cancel a staging or running run (`cancelled`): the record keeps when and why, its parts that
have not run end with their rows in errors (reason CANCELLED) instead of being retried, and the run still
ends with a report of what completed.

Every record carries a small summary of itself under `_i` (`index`), renewed by every transition and
written as the object's custom metadata too, so listing `state/runs/` answers "which runs, how far"
without reading a record (`shared/runindex.py`).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from shared.storage.base import INDEX_KEY

STAGING, RUNNING, FINALIZING, DONE = "staging", "running", "finalizing", "done"
QUEUED, SUBMITTED, REJECTED, COLLECTED = "queued", "submitted", "rejected", "collected"


def new_run(*, run: str, bucket: str, name: str, generation: int, rel: str, model: str, now: str,
            note: str | None = None) -> dict[str, Any]:
    record = {
        "run": run,
        "input": {"bucket": bucket, "name": name, "generation": str(generation),
                  "uri": f"gs://{bucket}/{name}"},
        "rel": rel,
        "model": model,
        "state": STAGING,
        "received": now,
        "parts": {},
    }
    if note:
        record["note"] = note
    return stamp(record)


def new_part(chunk: int, attempt: int, rows: int, size: int, *, since: float | None = None,
             first_row: int | None = None, last_row: int | None = None,
             row_sums: list[int] | None = None) -> dict[str, Any]:
    """A part to run. `since` (epoch seconds) tells the reconciliation how long it has been queued;
    `firstRow`..`lastRow` bound the input rows of its chunk, so its rows can still be named in the errors
    file if its staged input disappears; `rowSums` (`shared/rowsums.py`) tells collect when every row came back
    and succeeded (a part without it is read again in full)."""
    part = {"chunk": chunk, "attempt": attempt, "rows": rows, "bytes": size, "state": QUEUED, "job": None}
    if since is not None:
        part["since"] = since
    if first_row is not None:
        part.update(firstRow=first_row, lastRow=last_row)
    if row_sums is not None:
        part["rowSums"] = row_sums
    return part


def staged(record: dict[str, Any], *, parts: dict[str, dict[str, Any]], total: int,
           validation: dict[str, Any], note: str | None, now: float) -> dict[str, Any] | None:
    """staging ▶ running (or straight to finalizing when no row is left to send)."""
    if record["state"] != STAGING:
        return None  # another delivery of the same upload finished staging first
    new = copy.deepcopy(record)
    new.update(parts=parts, total=total, validation=validation, state=RUNNING if parts else FINALIZING)
    if not parts:
        new["finalizingSince"] = now
    if note:
        new["note"] = f"{new['note']}; {note}" if new.get("note") else note
    return stamp(new)


def job_submitted(record: dict[str, Any], part: str, job: str) -> dict[str, Any] | None:
    entry = record["parts"].get(part)
    if entry is None or entry["state"] != QUEUED or entry.get("job") == job:
        return None
    new = copy.deepcopy(record)
    new["parts"][part].update(state=SUBMITTED, job=job)
    return stamp(new)


def with_jobs(record: dict[str, Any], jobs: dict[str, str]) -> dict[str, Any]:
    """The record as the pipeline knows it: parts still queued in it whose job exists (a job marker, see
    `layout.job_marker_name`) are submitted, with that job. Pure; the stored record is not changed."""
    late = {part: job for part, job in jobs.items()
            if part in record.get("parts", {}) and record["parts"][part]["state"] == QUEUED}
    if not late:
        return record
    new = copy.deepcopy(record)
    for part, job in late.items():
        new["parts"][part].update(state=SUBMITTED, job=job)
    return new


def part_rejected(record: dict[str, Any], part: str, error: dict[str, Any], now: float) -> dict[str, Any] | None:
    entry = record["parts"].get(part)
    if entry is None or entry["state"] != QUEUED:
        return None
    new = copy.deepcopy(record)
    new["parts"][part].update(state=REJECTED, rejection=error, rejectedAt=now)
    return stamp(new)


def part_collected(record: dict[str, Any], part: str, outcome: dict[str, Any],
                   retry: dict[str, Any] | None, retry_part: str | None, now: float) -> dict[str, Any] | None:
    """Record a collected part, add its retry part, and move to finalizing once nothing is outstanding."""
    entry = record["parts"].get(part)
    if entry is None or entry["state"] == COLLECTED:
        return None
    new = copy.deepcopy(record)
    new["parts"][part].update(state=COLLECTED, **outcome)
    if retry is not None and retry_part is not None:
        new["parts"].setdefault(retry_part, retry)
    if new["state"] == RUNNING and settled(new):
        new.update(state=FINALIZING, finalizingSince=now)
    return stamp(new)


def settled(record: dict[str, Any]) -> bool:
    return all(p["state"] == COLLECTED for p in record["parts"].values())


def finished(record: dict[str, Any], *, now: str, superseded: bool) -> dict[str, Any] | None:
    if record["state"] == DONE:
        return None
    new = copy.deepcopy(record)
    new.update(state=DONE, finished=now, superseded=superseded)
    return stamp(new)


def cancelled(record: dict[str, Any], *, now: str, reason: str | None = None) -> dict[str, Any] | None:
    """An operator cancelled the run (staging or running; later there is nothing left to cancel). Parts
    that have not run, and rows that would be retried, end in errors with reason CANCELLED."""
    if record["state"] not in (STAGING, RUNNING) or record.get("cancelled"):
        return None
    new = copy.deepcopy(record)
    new["cancelled"] = {"at": now, "reason": reason}
    note = f"cancelled by an operator at {now}" + (f" ({reason})" if reason else "")
    new["note"] = f"{new['note']}; {note}" if new.get("note") else note
    return stamp(new)


def counts(record: dict[str, Any]) -> dict[str, Any]:
    """Row counts of a settled run: totals, failures by stage and by reason, tokens, retried rows."""
    by_stage: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    validation = record.get("validation") or {}
    by_stage["validation"] += validation.get("failed", 0)
    by_reason.update(validation.get("byReason") or {})
    succeeded = retried = 0
    tokens: Counter[str] = Counter()
    for part in record["parts"].values():
        if part["state"] != COLLECTED:
            continue
        succeeded += part.get("succeeded", 0)
        retried += part.get("retried", 0)
        by_stage.update(part.get("failedByStage") or {})
        by_reason.update(part.get("failedByReason") or {})
        tokens.update(part.get("tokens") or {})
    failed = sum(by_stage.values())
    return {
        "total": record.get("total", 0),
        "succeeded": succeeded,
        "failed": failed,
        "failedByStage": {k: v for k, v in sorted(by_stage.items()) if v},
        "failedByReason": {k: v for k, v in sorted(by_reason.items()) if v},
        "retried": retried,
        "tokens": {k: tokens.get(k, 0) for k in ("prompt", "candidates", "total")},
    }


def outcome(row_counts: dict[str, Any]) -> str:
    if row_counts["total"] > 0 and row_counts["failed"] == 0:
        return "succeeded"
    if row_counts["succeeded"] > 0:
        return "partial"
    return "failed"


def index(record: dict[str, Any]) -> dict[str, str]:
    """The record's summary, flat strings (custom metadata): state, input, model, when received, rows
    total / settled / failed, parts, and once done its outcome (or "superseded"); "cancelled" when it was."""
    rows = counts(record)
    summary = {
        "v": "1",
        "state": record["state"],
        "input": record["input"]["uri"],
        "model": record["model"],
        "received": record["received"],
        "total": str(rows["total"]),
        "done": str(rows["succeeded"] + rows["failed"]),
        "failed": str(rows["failed"]),
        "jobs": str(len(record["parts"])),
    }
    if record["state"] == DONE:
        summary["outcome"] = "superseded" if record.get("superseded") else outcome(rows)
        summary["finished"] = str(record.get("finished") or "")
    if record.get("cancelled"):
        summary["cancelled"] = str(record["cancelled"].get("at") or "")
    return summary


def stamp(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its summary renewed (every transition returns a stamped record)."""
    record[INDEX_KEY] = index(record)
    return record
