"""The global job scheduler: at most MAX_ACTIVE_JOBS Vertex jobs at once across all runs, the rest in a FIFO
queue.

Its state is one small JSON object (state/scheduler.json) changed only by compare-and-swap, so concurrent
submits, polls and collects can never admit more jobs than there are slots:

    {"queue": ["<run>:<part>", ...],                        # FIFO, oldest first
     "active": {"<run>:<part>": {"job": name|null, "since": epoch, "state": ..., "input": uri}},
     "known": {"<run>:<part>": 1}}                            # ever enqueued, until the run is done

A slot is reserved (job null) before the create call and the job name recorded after it, so a function
that dies in between leaves a reservation the poller adopts: it looks the job up by label, and creates it
only if Vertex has none. A function that gives up on an unreachable Vertex marks its reservation
`"orphan": true`, so the next poll adopts it at once instead of after STUCK_CREATE_SECONDS.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from shared import layout, log, runstate
from shared.errors import VertexAmbiguousError, VertexError, VertexRejectedError, VertexTransientError
from shared.pipeline import Pipeline
from shared.storage import mutate_json
from shared.vertex import JobInfo

_CREATE_TRIES = 4


def empty() -> dict[str, Any]:
    return {"queue": [], "active": {}, "known": {}}


def _mutate(p: Pipeline, change) -> dict[str, Any]:
    return mutate_json(p.store, p.work_bucket, layout.SCHEDULER_NAME,
                       lambda cur: change(cur if cur is not None else empty())) or empty()


def read(p: Pipeline) -> dict[str, Any]:
    found = p.store.read_json(p.work_bucket, layout.SCHEDULER_NAME)
    return found.value if found else empty()


def enqueue(p: Pipeline, qids: Iterable[str]) -> None:
    """Append parts to the queue, each exactly once, ever (a replayed event must not run a part twice)."""
    wanted = list(qids)

    def change(s):
        fresh = [q for q in wanted if q not in s["known"]]
        if not fresh:
            return None
        s["queue"].extend(fresh)
        s["known"].update(dict.fromkeys(fresh, 1))
        return s

    _mutate(p, change)


def forget_run(p: Pipeline, run: str) -> None:
    """Drop a finished run's parts from `known` so the scheduler object stays small."""
    prefix = f"{run}:"

    def change(s):
        stale = [q for q in s["known"] if q.startswith(prefix) and q not in s["active"] and q not in s["queue"]]
        if not stale:
            return None
        for q in stale:
            del s["known"][q]
        return s

    _mutate(p, change)


def release(p: Pipeline, qid: str) -> None:
    """Free a slot (the job is finished and announced)."""
    _mutate(p, lambda s: (s["active"].pop(qid), s)[1] if qid in s["active"] else None)


def set_job(p: Pipeline, qid: str, job: str | None = None, state: str | None = None,
            input_uri: str | None = None) -> None:
    """Record the job of a slot (and the input it serves, for the poller's log labels) or its new state."""
    def change(s):
        entry = s["active"].get(qid)
        if entry is None:
            return None
        new = dict(entry)
        if job is not None:
            new["job"] = job
        if state is not None:
            new["state"] = state
        if input_uri is not None:
            new["input"] = input_uri
        if new == entry:
            return None
        s["active"][qid] = new
        return s

    _mutate(p, change)


def drain(p: Pipeline) -> int:
    """Admit queued parts while slots are free, oldest first. Returns how many jobs were created."""
    created = 0
    while (reserved := _reserve(p)) is not None:
        outcome = start_job(p, *reserved, adopt=False)
        if outcome in ("throttled", "pending"):
            break  # Vertex is refusing or unreachable: the next tick tries again, not the next part now
        created += outcome == "created"
    return created


def _reserve(p: Pipeline) -> tuple[str, str] | None:
    """Move the queue head into a free slot (job not yet created): (queue id, reservation token), or None
    when no slot is free or nothing is queued."""
    reserved: list[tuple[str, str]] = []
    token = secrets.token_hex(8)

    def take(s):
        reserved.clear()  # `take` may run again after a lost race
        if not s["queue"] or len(s["active"]) >= p.config.max_active_jobs:
            return None
        qid = s["queue"].pop(0)
        s["active"][qid] = {"job": None, "since": p.clock(), "state": None, "token": token}
        reserved.append((qid, token))
        return s

    _mutate(p, take)
    return reserved[0] if reserved else None


def claim_stuck(p: Pipeline, qid: str) -> str | None:
    """Take over a reservation whose creator seems dead (no job after STUCK_CREATE_SECONDS). The new token
    is written by compare-and-swap, so of two overlapping polls only one adopts it, and the old holder,
    if it is only slow, sees it has lost the reservation before its next create."""
    won: list[str] = []
    token = secrets.token_hex(8)

    def change(s):
        won.clear()
        entry = s["active"].get(qid)
        if entry is None or entry.get("job"):
            return None
        if not entry.get("orphan") and p.clock() - entry["since"] <= p.config.stuck_create_seconds:
            return None
        s["active"][qid] = {**entry, "since": p.clock(), "token": token, "orphan": False}
        won.append(token)
        return s

    _mutate(p, change)
    return won[0] if won else None


def _holds(p: Pipeline, qid: str, token: str) -> bool:
    entry = read(p)["active"].get(qid)
    return entry is not None and entry.get("job") is None and entry.get("token") == token


def start_job(p: Pipeline, qid: str, token: str, *, adopt: bool) -> str:
    """Create (or, when `adopt`, first find) the Vertex job of a reserved slot and record it.

    Returns "created", "found", "throttled" (slot handed back to the queue head), "rejected" (Vertex
    refused the job: announced as finished so its rows go to errors), "skipped" (the part must not run
    any more), "lost" (another poller adopted the reservation) or "pending" (Vertex unreachable after
    an ambiguous create; the poller adopts the reservation later).
    """
    run, part = layout.split_queue_id(qid)
    record = p.store.read_json(p.work_bucket, layout.run_state_name(run))
    entry = record.value["parts"].get(part) if record else None
    if record is None or record.value["state"] != runstate.RUNNING or entry is None or \
            entry["state"] != runstate.QUEUED:
        # A late duplicate may queue a part that already ran, or whose run is over: never create it.
        log.warning("job.skipped", f"{qid} is not a queued part of a running run; freeing its slot", run=run)
        release(p, qid)
        return "skipped"
    cfg = p.config
    labels = layout.job_labels(cfg.pipeline_label, run, part)
    job: JobInfo | None = None
    outcome = "created"
    # Once a create may have succeeded (timeout, 5xx), every later try looks the job up by label first:
    # Vertex job creation is not idempotent, and one part must never get two jobs.
    maybe_created = adopt
    for attempt in range(_CREATE_TRIES):
        if attempt:
            p.sleep(min(4.0, 0.25 * 2 ** attempt))
        if not _holds(p, qid, token):
            log.warning("job.lost", f"{qid}: the reservation was adopted by a poller; stopping", run=run)
            return "lost"
        if maybe_created:
            try:
                job = p.vertex.find(labels)
            except VertexError as exc:  # a failed look-up proves nothing: never reject the rows on it
                log.warning("job.lookup_failed", f"{qid}: {exc}", run=run)
                continue
            if job is not None:
                outcome = "found"
                break
        try:
            job = p.vertex.create(
                model=record.value["model"],
                source_uri=f"gs://{p.work_bucket}/{layout.staged_name(run, part)}",
                destination_prefix=f"gs://{p.work_bucket}/{layout.vertex_output_prefix(run, part)}",
                display_name=f"{cfg.pipeline_label}-{run}-{part}",
                labels=labels,
            )
            break
        except VertexAmbiguousError as exc:
            maybe_created = True
            log.warning("job.create_ambiguous", f"{qid}: {exc}; looking it up by label before retrying", run=run)
        except VertexTransientError as exc:
            if not maybe_created:  # a plain 429 on create: nothing exists, hand the slot back
                _requeue_front(p, qid)
                log.warning("job.throttled", f"{qid}: {exc}; back to the head of the queue", run=run)
                return "throttled"
            log.warning("job.create_failed", f"{qid}: {exc}", run=run)
        except VertexRejectedError as exc:
            _reject(p, qid, exc)
            return "rejected"
    if job is None:
        # The reservation stays (a create may have succeeded, so the slot is taken until we know), handed
        # to the next poll, which finds the job by label or creates it.
        _orphan(p, qid, token)
        log.warning("job.create_pending", f"{qid}: Vertex unreachable; the next poll adopts the reservation",
                    run=run)
        return "pending"
    set_job(p, qid, job=job.name, state=job.state, input_uri=record.value["input"]["uri"])
    mutate_json(p.store, p.work_bucket, layout.run_state_name(run),
                lambda r: runstate.job_submitted(r, part, job.name) if r else None)
    log.info("job.submitted", f"{qid} is Vertex job {job.job_id} ({outcome})", run=run, job=job.job_id,
             input=record.value["input"]["uri"], part=part, rows=entry["rows"])
    return outcome


def _orphan(p: Pipeline, qid: str, token: str) -> None:
    def change(s):
        entry = s["active"].get(qid)
        if entry is None or entry.get("job") or entry.get("token") != token:
            return None  # adopted meanwhile: the adopter owns it now
        s["active"][qid] = {**entry, "orphan": True}
        return s

    _mutate(p, change)


def _requeue_front(p: Pipeline, qid: str) -> None:
    def change(s):
        if qid not in s["active"] or s["active"][qid].get("job"):
            return None
        del s["active"][qid]
        s["queue"].insert(0, qid)
        return s

    _mutate(p, change)


def _reject(p: Pipeline, qid: str, exc: VertexRejectedError) -> None:
    """Vertex refused to create the job for good (e.g. unknown model): announce the part as finished
    with that error, so collect turns its rows into errors and the run still completes."""
    run, part = layout.split_queue_id(qid)
    log.error("job.rejected", f"{qid}: Vertex refused the job: {exc}", run=run, part=part)
    p.publisher.publish(p.config.job_finished_topic, {
        "run": run, "part": part, "job": None, "state": "JOB_STATE_FAILED",
        "error": {"code": None, "httpCode": exc.code, "status": exc.status, "message": str(exc)},
    })
    release(p, qid)
