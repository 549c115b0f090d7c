"""poll: on every scheduler tick, learn the state of every active job with list calls (one per page, not
one get per job), record changes, announce finished jobs on job-finished, free their slots and start queued
work, oldest first.

One entry that cannot be checked (a failing get, a failing publish) is logged and skipped: it must not
abort the tick, and being the oldest it would otherwise block every later one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared import layout, log, runstate, scheduler
from shared.collect import JobFinished
from shared.errors import ConfigError
from shared.pipeline import Pipeline
from shared.storage import mutate_json
from shared.vertex import JobInfo
from shared.vertex.genai import label_filter

# Look back a little before the oldest reservation: the job's create time is Vertex's clock, not ours.
_CLOCK_SLACK = timedelta(minutes=10)


def handle_tick(p: Pipeline) -> dict[str, int]:
    state = scheduler.read(p)
    active: dict[str, dict[str, Any]] = state["active"]
    summary = {"active": len(active), "queued": len(state["queue"]), "finished": 0, "adopted": 0, "started": 0,
               "failed": 0}
    vertex_down = False
    if active:
        jobs = _list_active(p, active)
        for qid, entry in sorted(active.items(), key=lambda kv: kv[1]["since"]):
            if entry.get("job") is None and vertex_down:
                continue  # one unreachable create per tick is enough; the others wait for the next
            try:
                outcome = _check(p, qid, entry, jobs)
            except ConfigError:
                raise  # never skipped: every entry would fail the same way
            except Exception as exc:  # noqa: BLE001 - one entry's failure must not stall the others
                summary["failed"] += 1
                run, part = layout.split_queue_id(qid)
                log.warning("poll.entry_failed", f"{qid}: {type(exc).__name__}: {exc}; skipped this tick",
                            run=run, input=entry.get("input"), part=part, error=type(exc).__name__)
                continue
            summary["finished"] += outcome == "finished"
            summary["adopted"] += outcome in ("created", "found")
            vertex_down = vertex_down or outcome == "pending"
    summary["started"] = 0 if vertex_down else scheduler.drain(p)
    if any(summary.values()):
        log.info("poll.tick", "poll: " + ", ".join(f"{k} {v}" for k, v in summary.items()), **summary)
    return summary


def _check(p: Pipeline, qid: str, entry: dict[str, Any], jobs: dict[str, JobInfo]) -> str:
    """Move one active entry on: adopt a reservation whose creator is gone, or observe its job."""
    if entry.get("job") is None:
        token = scheduler.claim_stuck(p, qid)
        return scheduler.start_job(p, qid, token, adopt=True) if token is not None else "waiting"
    job = jobs.get(entry["job"]) or p.vertex.get(entry["job"])
    if job is None:
        # Vertex no longer knows the job (deleted by hand, or a lost control plane): its rows are
        # missing, and missing rows are retried.
        job = JobInfo(name=entry["job"], state="JOB_STATE_FAILED", error_code=13,
                      error_message="the job no longer exists")
    return "finished" if _observe(p, qid, entry, job) else "observed"


def _list_active(p: Pipeline, active: dict[str, dict[str, Any]]) -> dict[str, JobInfo]:
    oldest = min(entry["since"] for entry in active.values())
    since = datetime.fromtimestamp(oldest, UTC) - _CLOCK_SLACK
    query = label_filter({"pipeline": p.config.pipeline_label}) + \
        f' AND create_time>="{since.strftime("%Y-%m-%dT%H:%M:%SZ")}"'
    return {job.name: job for job in p.vertex.list(query, page_size=100)}


def _observe(p: Pipeline, qid: str, entry: dict[str, Any], job: JobInfo) -> int:
    """Record a job's state; announce it and free its slot when terminal. Returns 1 when it finished."""
    run, part = layout.split_queue_id(qid)
    if job.state != entry.get("state"):
        log.info("job.state", f"{qid}: {entry.get('state')} -> {job.state}", run=run, job=job.job_id,
                 input=entry.get("input"), part=part, state=job.state)
        if not job.terminal:
            scheduler.set_state(p, qid, job.name, job.state)
    _warn_if_slow(p, qid, entry, job)
    if not job.terminal:
        return 0
    error = {"code": job.error_code, "message": job.error_message} if job.error_code else None
    # Announce before freeing the slot: if we die in between, the next tick announces again (collect is
    # idempotent); the other order could lose the announcement.
    p.publisher.publish(p.config.job_finished_topic,
                        JobFinished(run=run, part=part, job=job.name, state=job.state, error=error).to_payload())
    # The run record learns the job before the slot is freed: a creator that died after the create left the
    # part "queued" there, and a queued part without a slot is what the reconciliation re-queues.
    mutate_json(p.store, p.work_bucket, layout.run_state_name(run),
                lambda r: runstate.job_submitted(r, part, job.name) if r else None)
    scheduler.release(p, qid, job=job.name)
    seconds = (job.end_time - job.create_time).total_seconds() if job.end_time and job.create_time else None
    log.info("job.finished", f"{qid}: Vertex job {job.job_id} ended {job.state}", run=run, job=job.job_id,
             input=entry.get("input"), part=part, state=job.state, errorCode=job.error_code, seconds=seconds)
    return 1


def _warn_if_slow(p: Pipeline, qid: str, entry: dict[str, Any], job: JobInfo) -> None:
    now = datetime.fromtimestamp(p.clock(), UTC)
    run, part = layout.split_queue_id(qid)
    if job.state == "JOB_STATE_RUNNING" and (job.start_time or job.create_time):
        # Vertex sets startTime at the first RUNNING; without it, the create time is the safe lower bound.
        running = (now - (job.start_time or job.create_time)).total_seconds()
        if running > p.config.running_warn_seconds:
            log.warning("job.slow", f"{qid}: Vertex job {job.job_id} has been running for {running:.0f}s",
                        run=run, job=job.job_id, input=entry.get("input"), part=part, state=job.state,
                        seconds=running)
    elif not job.terminal and job.create_time:
        waiting = (now - job.create_time).total_seconds()
        if waiting > p.config.pending_warn_seconds:
            log.warning("job.slow", f"{qid}: Vertex job {job.job_id} has been waiting for {waiting:.0f}s",
                        run=run, job=job.job_id, input=entry.get("input"), part=part, state=job.state,
                        seconds=waiting)
