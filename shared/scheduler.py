"""The global job scheduler: at most MAX_ACTIVE_JOBS Vertex jobs at once across all runs, the rest in a FIFO
queue, and at most MAX_CREATES_PER_MINUTE creations a minute (Vertex's regional quota).

Its state is one small JSON object (state/scheduler.json, shape and rules in `shared/scheduler_state.py`)
changed only by compare-and-swap, so concurrent submits, polls and collects can never admit more jobs than
there are slots. A slot is reserved (job null) before the create call and the job name recorded after it,
so a function that dies in between leaves a reservation the poller adopts: it looks the job up by label,
and creates it only if Vertex has none. A function that gives up on an unreachable Vertex marks its
reservation orphaned, so the next poll adopts it at once instead of after the deadline.

One fault never stalls the others: a 429 holds back only that model, a 401/403 only that part (for
PERMISSION_GRACE_SECONDS, then its rows fail naming the permission problem), and a part whose run no longer
wants it is dropped.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any

from shared import layout, log, runstate
from shared import scheduler_state as rules
from shared.errors import (
    VertexAmbiguousError,
    VertexDeniedError,
    VertexError,
    VertexRejectedError,
    VertexTransientError,
)
from shared.pipeline import Pipeline
from shared.storage import mutate_json
from shared.vertex import JobInfo

_CREATE_TRIES = 4
empty = rules.empty


def _mutate(p: Pipeline, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
    return mutate_json(p.store, p.work_bucket, layout.SCHEDULER_NAME,
                       lambda cur: change(rules.upgrade(cur))) or rules.empty()


def read(p: Pipeline) -> dict[str, Any]:
    found = p.store.read_json(p.work_bucket, layout.SCHEDULER_NAME)
    return rules.upgrade(found.value if found else None)


def enqueue(p: Pipeline, qids: Iterable[str], model: str | None = None) -> None:
    """Append parts to the queue unless already queued or active (a replayed event adds nothing)."""
    items = [(q, model) for q in qids]
    if items:
        _mutate(p, lambda s: rules.enqueue(s, items, p.clock()))


def requeue_missing(p: Pipeline, qids: Iterable[str], model: str | None) -> None:
    items = [(q, model) for q in qids]
    if items:
        _mutate(p, lambda s: rules.requeue_missing(s, items, p.clock()))


def release(p: Pipeline, qid: str, *, token: str | None = None, job: str | None = None) -> None:
    """Free a slot the caller knows by its reservation token or its job name."""
    _mutate(p, lambda s: rules.release(s, qid, token=token, job=job))


def set_state(p: Pipeline, qid: str, job: str, state: str) -> None:
    _mutate(p, lambda s: rules.set_state(s, qid, job, state))


def drain(p: Pipeline) -> int:
    """Admit queued parts while slots are free, oldest first. Returns how many jobs were created."""
    created = 0
    while (reserved := _reserve(p)) is not None:
        outcome = start_job(p, *reserved)
        if outcome == "pending":
            break  # Vertex is unreachable: the next tick tries again, not the next part now
        created += outcome == "created"
    return created


def _reserve(p: Pipeline) -> tuple[str, str] | None:
    """Move the first queue entry that may start now into a free slot: (queue id, reservation token), or
    None when no slot is free, the creation rate is used up, or nothing may start."""
    reserved: list[str] = []
    token = secrets.token_hex(8)
    cfg = p.config

    def take(s):
        reserved.clear()  # `take` may run again after a lost race
        result = rules.reserve(s, now=p.clock(), token=token, cap=cfg.max_active_jobs,
                               creates_per_minute=cfg.max_creates_per_minute)
        if result is None:
            return None
        reserved.append(result[1])
        return result[0]

    _mutate(p, take)
    if not reserved:
        return None
    p.checkpoint("scheduler.reserved")
    return reserved[0], token


def claim_stuck(p: Pipeline, qid: str) -> str | None:
    """Take over a reservation whose creator seems dead (no job after the deadline, or orphaned). The new
    token is written by compare-and-swap, so of two overlapping polls only one adopts it, and the old holder,
    if it is only slow, sees it has lost the reservation before its next create."""
    token = secrets.token_hex(8)
    stored = _mutate(p, lambda s: rules.adopt(s, qid, now=p.clock(), stuck_after=p.config.create_stuck_seconds,
                                              token=token))
    entry = stored["active"].get(qid)
    return token if entry is not None and entry.get("token") == token else None


def _holds(p: Pipeline, qid: str, token: str) -> dict[str, Any] | None:
    entry = read(p)["active"].get(qid)
    return entry if entry is not None and entry.get("job") is None and entry.get("token") == token else None


def start_job(p: Pipeline, qid: str, token: str, *, adopt: bool = False) -> str:
    """Create (or, when `adopt` or the entry asks to verify, first find) the Vertex job of a reserved slot
    and record it.

    Returns "created", "found", "throttled" (429: the model waits, the slot goes back to the queue head),
    "denied" (401/403: the part retries later), "rejected" (Vertex refused the job, or permission stayed
    denied past the grace: announced as finished so its rows go to errors), "skipped" (the part must not
    run any more), "lost" (another poller adopted the reservation) or "pending" (Vertex unreachable after
    an ambiguous create; the poller adopts the reservation later).
    """
    run, part = layout.split_queue_id(qid)
    record = p.store.read_json(p.work_bucket, layout.run_state_name(run))
    entry = record.value["parts"].get(part) if record else None
    if record is None or record.value["state"] != runstate.RUNNING or entry is None or \
            entry["state"] != runstate.QUEUED:
        # A late duplicate may queue a part that already ran, or whose run is over: never create it.
        log.warning("job.skipped", f"{qid} is not a queued part of a running run; freeing its slot", run=run)
        release(p, qid, token=token)
        return "skipped"
    cfg = p.config
    labels = layout.job_labels(cfg.pipeline_label, run, part)
    job: JobInfo | None = None
    outcome = "created"
    reservation = _holds(p, qid, token)
    # Once a create may have succeeded (timeout, 5xx, a creator that died), every later try looks the job
    # up by label first: Vertex job creation is not idempotent, and one part must never get two jobs.
    maybe_created = adopt or bool(reservation and reservation.get("verify"))
    for attempt in range(_CREATE_TRIES):
        if attempt:
            p.sleep(min(4.0, 0.25 * 2 ** attempt))
            reservation = _holds(p, qid, token)
        if reservation is None:
            log.warning("job.lost", f"{qid}: the reservation was adopted by a poller; stopping", run=run)
            return "lost"
        if p.clock() - reservation["since"] > cfg.function_timeout_seconds - 2 * cfg.vertex_call_seconds:
            # Too close to the deadline after which a poller adopts the reservation: a create sent now
            # could land after the adopter looked for it. Stop, and let the adopter find or create the job.
            break
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
        except VertexDeniedError as exc:
            return _denied(p, qid, token, reservation, exc)
        except VertexTransientError as exc:
            if not maybe_created:  # a plain 429 on create: nothing exists; that model waits
                _mutate(p, lambda s: rules.throttle(s, qid, token, now=p.clock()))
                log.warning("job.throttled", f"{qid}: {exc}; model {record.value['model']} waits, others go on",
                            run=run, model=record.value["model"])
                return "throttled"
            log.warning("job.create_failed", f"{qid}: {exc}", run=run)
        except VertexRejectedError as exc:
            _reject(p, qid, token, exc.code, exc.status, str(exc))
            return "rejected"
    if job is None:
        # The reservation stays (a create may have succeeded, so the slot is taken until we know), handed
        # to the next poll, which finds the job by label or creates it.
        _mutate(p, lambda s: rules.orphan(s, qid, token))
        log.warning("job.create_pending", f"{qid}: Vertex unreachable; the next poll adopts the reservation",
                    run=run)
        return "pending"
    p.checkpoint("scheduler.created")
    uri = record.value["input"]["uri"]
    stored = _mutate(p, lambda s: rules.set_job(s, qid, token, job=job.name, state=job.state, input_uri=uri,
                                                now=p.clock()))
    held = stored["active"].get(qid)
    if held is None or held.get("job") != job.name:
        # Adopted meanwhile: the adopter finds this very job by label and records it; nothing more here.
        log.warning("job.lost", f"{qid}: the reservation was adopted while creating {job.job_id}", run=run)
        return "lost"
    mutate_json(p.store, p.work_bucket, layout.run_state_name(run),
                lambda r: runstate.job_submitted(r, part, job.name) if r else None)
    log.info("job.submitted", f"{qid} is Vertex job {job.job_id} ({outcome})", run=run, job=job.job_id,
             input=uri, part=part, rows=entry["rows"])
    return outcome


def _denied(p: Pipeline, qid: str, token: str, reservation: dict[str, Any], exc: VertexDeniedError) -> str:
    run, _ = layout.split_queue_id(qid)
    cfg = p.config
    since = reservation.get("denied", p.clock())
    if p.clock() - since >= cfg.permission_grace_seconds:
        _reject(p, qid, token, exc.code, exc.status,
                f"Vertex AI denied creating the batch job ({exc.code} {exc.status}) for "
                f"{cfg.permission_grace_seconds}s: the functions' service account needs roles/aiplatform.user "
                f"in {cfg.project}, and the Vertex AI service agent needs read access to gs://{p.work_bucket}"
                f"/staging/ and the input bucket, and write access to gs://{p.work_bucket}/vertex/ ({exc})")
        return "rejected"
    retry_in = max(1.0, min(60.0, cfg.permission_grace_seconds / 10))
    _mutate(p, lambda s: rules.deny(s, qid, token, now=p.clock(), retry_in=retry_in))
    log.warning("job.denied", f"{qid}: {exc}; retried in {retry_in:.0f}s (IAM may still be propagating), "
                f"for up to {cfg.permission_grace_seconds}s", run=run, code=exc.code)
    return "denied"


def _reject(p: Pipeline, qid: str, token: str, code: int, status: str, message: str) -> None:
    """Vertex refused to create the job for good (e.g. unknown model): record the refusal, announce the part
    as finished with that error, so collect turns its rows into errors and the run still completes, then
    free the slot (a crash before that leaves a reservation the poller adopts and drops as not queued)."""
    run, part = layout.split_queue_id(qid)
    log.error("job.rejected", f"{qid}: Vertex refused the job: {message}", run=run, part=part)
    error = {"code": None, "httpCode": code, "status": status, "message": message}
    # Stored first: if the announcement is lost, the reconciliation announces the stored refusal again.
    mutate_json(p.store, p.work_bucket, layout.run_state_name(run),
                lambda r: runstate.part_rejected(r, part, error, p.clock()) if r else None)
    p.publisher.publish(p.config.job_finished_topic, rejection_payload(run, part, error))
    release(p, qid, token=token)


def rejection_payload(run: str, part: str, error: dict[str, Any]) -> dict[str, Any]:
    """The job-finished message of a part Vertex refused to run (its rows go to errors)."""
    return {"run": run, "part": part, "job": None, "state": "JOB_STATE_FAILED", "error": error}
