"""What the reconciliation should do for one unfinished run: pure planning, state in, actions out.

Every rule reads only stored state (the open marker, the run record, the scheduler object, the Vertex job of
a part the scheduler no longer tracks) and the clock; nothing here depends on a message having arrived. A
step is judged abandoned only after `deadline` seconds (longer than any invocation can live), so a repair
never races a function that is still at work; every action is idempotent, so repeating one is harmless.

    marker, no record        ─▶ START_RUN   (submit died between the marker and the claim, or never ran)
    staging                  ─▶ RESTAGE     (the staging delivery died and its message is gone)
    running, queued part the
      scheduler does not hold ─▶ REQUEUE     (a crash between the run record and the queue)
    running, submitted part
      whose job ended, no slot,
      or a refused part       ─▶ REANNOUNCE  (the job-finished message, or its collect, was lost)
    finalizing               ─▶ FINALIZE    (finalize died; its lease expires at the same deadline)
    done                     ─▶ CLOSE       (the run finished but its marker was left behind)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared import layout, runstate
from shared.vertex import JobInfo

# After this many repairs of the same kind a run is reported stuck (it is still repaired on every period).
STUCK_AFTER = 3


class Kind(StrEnum):
    START_RUN = "start_run"
    RESTAGE = "restage"
    REQUEUE = "requeue"
    REANNOUNCE = "reannounce"
    FINALIZE = "finalize"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    reason: str
    parts: tuple[str, ...] = ()
    announcements: tuple[dict[str, Any], ...] = ()  # REANNOUNCE: the job-finished payloads to publish again


def _age(now: float, since: float | str | None) -> float:
    """Seconds since an epoch number or an RFC 3339 string; infinite when unknown (old records)."""
    if since is None:
        return float("inf")
    if isinstance(since, str):
        return now - datetime.fromisoformat(since).timestamp()
    return now - float(since)


def jobs_to_check(record: dict[str, Any], scheduler: dict[str, Any]) -> list[str]:
    """Job names of submitted parts whose slot is gone: only Vertex can say whether they ended."""
    return [entry["job"] for part, entry in sorted(record.get("parts", {}).items())
            if entry["state"] == runstate.SUBMITTED and entry.get("job")
            and layout.queue_id(record["run"], part) not in scheduler["active"]]


def overdue_queued(record: dict[str, Any], now: float, deadline: float) -> list[str]:
    """Parts the run holds as queued for longer than the deadline: is the scheduler still holding them?"""
    return [part for part, entry in sorted(record.get("parts", {}).items())
            if entry["state"] == runstate.QUEUED and _age(now, entry.get("since")) > deadline]


def plan(*, marker: dict[str, Any] | None, record: dict[str, Any] | None, scheduler: dict[str, Any],
         queued: set[str], jobs: dict[str, JobInfo | None], now: float, deadline: float) -> list[Action]:
    """`scheduler`: the slots object; `queued`: queue ids of the run that have a queue object."""
    """The repairs one run needs now (empty when it is moving, or not overdue yet)."""
    if record is None:
        if marker is not None and _age(now, marker.get("since")) > deadline:
            return [Action(Kind.START_RUN, f"no run record {_age(now, marker.get('since')):.0f}s after the "
                                           "upload was claimed: the claim never finished")]
        return []
    state = record["state"]
    if state == runstate.DONE:
        return [Action(Kind.CLOSE, "the run is done")]
    if state == runstate.STAGING:
        age = _age(now, record.get("received"))
        if age > deadline:
            return [Action(Kind.RESTAGE, f"still staging {age:.0f}s after it was received")]
        return []
    if state == runstate.FINALIZING:
        age = _age(now, record.get("finalizingSince"))
        if age > deadline:
            return [Action(Kind.FINALIZE, f"settled {age:.0f}s ago but no report yet" if age != float("inf")
                           else "settled but no report yet")]
        return []
    return _running(record, scheduler, queued, jobs, now, deadline)


def _running(record: dict[str, Any], scheduler: dict[str, Any], queued: set[str], jobs: dict[str, JobInfo | None],
             now: float, deadline: float) -> list[Action]:
    actions = []
    run = record["run"]
    lost = tuple(part for part in overdue_queued(record, now, deadline)
                 if layout.queue_id(run, part) not in scheduler["active"] and layout.queue_id(run, part) not in queued)
    if lost:
        actions.append(Action(Kind.REQUEUE, f"{len(lost)} queued part(s) missing from the scheduler", parts=lost))
    ended: list[tuple[str, dict[str, Any]]] = []
    for part, entry in sorted(record["parts"].items()):
        if entry["state"] == runstate.REJECTED and _age(now, entry.get("rejectedAt")) > deadline:
            ended.append((part, {"run": run, "part": part, "job": None, "state": "JOB_STATE_FAILED",
                                 "error": entry.get("rejection")}))
        if entry["state"] != runstate.SUBMITTED or layout.queue_id(run, part) in scheduler["active"]:
            continue
        name = entry.get("job")
        if name not in jobs:
            continue  # not looked up this time
        job = jobs[name]
        if job is None:
            job = JobInfo(name=name, state="JOB_STATE_FAILED", error_code=13, error_message="the job no longer exists")
        elif not job.terminal or (job.end_time is not None and now - job.end_time.timestamp() <= deadline):
            continue  # still running, or its announcement may still be on its way
        error = {"code": job.error_code, "message": job.error_message} if job.error_code else None
        ended.append((part, {"run": run, "part": part, "job": job.name, "state": job.state, "error": error}))
    if ended:
        actions.append(Action(Kind.REANNOUNCE, f"{len(ended)} finished job(s) never collected",
                              parts=tuple(p for p, _ in ended), announcements=tuple(m for _, m in ended)))
    return actions


def due(repairs: dict[str, Any], kind: Kind, now: float, deadline: float) -> bool:
    """Whether a repair of this kind may run now: not within `deadline` of the previous one, which may
    still be at work (a republished upload being staged, a re-announced job being collected)."""
    last = repairs.get("kinds", {}).get(kind.value, {}).get("last")
    return last is None or now - last > deadline


def record_repair(repairs: dict[str, Any] | None, kind: Kind, now: float) -> dict[str, Any]:
    new = {"kinds": {}, **(repairs or {})}
    new["kinds"] = {**new["kinds"]}
    previous = new["kinds"].get(kind.value, {})
    new["kinds"][kind.value] = {"count": previous.get("count", 0) + 1, "last": now}
    return new


def stuck(repairs: dict[str, Any], kind: Kind) -> bool:
    return repairs.get("kinds", {}).get(kind.value, {}).get("count", 0) >= STUCK_AFTER
