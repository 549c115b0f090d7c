"""poll: on every scheduler tick, learn the state of every active job with list calls (one per page, not
one get per job), announce finished jobs on job-finished, and in ONE write of the slots object record new
states, free the finished jobs' slots and reserve slots for the oldest waiting parts; then create their jobs.

A slot whose job Vertex does not list is a reservation whose creator may be gone: after the deadline (or at
once when orphaned) it is adopted, and the adopter finds the job by label or creates it. One entry that
cannot be checked (a failing publish, a failing record) is logged and skipped: it must not abort the tick,
and being the oldest it would otherwise block every later one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import layout, log, scheduler
from shared import scheduler_state as rules
from shared.collect import JobFinished
from shared.errors import ConfigError
from shared.pipeline import Pipeline
from shared.scheduler_state import Queued
from shared.vertex import JobInfo
from shared.vertex.base import label_filter

# Look back a little before the oldest reservation: the job's create time is Vertex's clock, not ours.
_CLOCK_SLACK = timedelta(minutes=10)
# Jobs per list call, not the default 100: 1,000 active jobs took 10 calls a tick and 10,000 took 100; now 1
# and 10 (`python -m bench.poll`). 1,000 is the emulator's cap; a service serving fewer per page answers with
# a page token, which the listing follows, so this is only an upper bound.
_LIST_PAGE = 1000
_SUMMARY = ("active", "queued", "finished", "adopted", "started", "failed")
_TICKING = threading.Lock()


def handle_tick(p: Pipeline) -> dict[str, int]:
    if not _TICKING.acquire(blocking=False):
        # A tick is still running in this instance (a slow Vertex listing, ticks delivered together): it does
        # this tick's work, and a second one would only race it to the same write of the slots object.
        return dict.fromkeys(_SUMMARY, 0)
    try:
        return _tick(p)
    finally:
        _TICKING.release()


def _tick(p: Pipeline) -> dict[str, int]:
    slots = scheduler.read_slots(p)
    active: dict[str, dict[str, Any]] = slots["active"]
    summary = dict.fromkeys(_SUMMARY, 0)
    summary["active"] = len(active)
    if rules.written_recently(slots, p.clock()):
        # Written less than a second ago (an overlapping tick, a reservation after an upload): this tick's
        # one write would pass Cloud Storage's per-object rate. The next tick does the same work.
        return summary
    finished: set[str] = set()
    states: dict[str, str] = {}
    vertex_down = False
    if active:
        jobs = _list_active(p, active)
        for qid, entry in sorted(active.items(), key=lambda kv: kv[1]["since"]):
            job = jobs.get(qid)
            try:
                if job is None:
                    if vertex_down:
                        continue  # one unreachable create per tick is enough; the others wait for the next
                    outcome = _adopt_if_abandoned(p, qid)
                    summary["adopted"] += outcome in ("created", "found")
                    vertex_down = outcome == "pending"
                elif _observe(p, qid, entry, job):
                    finished.add(qid)
                else:
                    states[qid] = job.state
            except ConfigError:
                raise  # never skipped: every entry would fail the same way
            except Exception as exc:  # noqa: BLE001 - one entry's failure must not stall the others
                summary["failed"] += 1
                run, part = layout.split_queue_id(qid)
                log.warning("poll.entry_failed", f"{qid}: {type(exc).__name__}: {exc}; skipped this tick",
                            run=run, input=entry.get("input"), part=part, error=type(exc).__name__)
    summary["finished"] = len(finished)
    free = p.config.max_active_jobs - len(active) + len(finished)
    queue = [] if vertex_down else scheduler.waiting(p, slots, free)
    summary["queued"] = len(queue)
    taken: list[tuple[Queued, str]] = []
    reserve = scheduler.reserve_change(p, queue, taken)

    def tick(cur):
        observed = rules.observe(cur, states=states, finished=finished)
        base = observed if observed is not None else cur
        return reserve(base) or observed

    if finished or states or queue:
        # Read again just before the conditional write: the slots read at the start are as old as the Vertex
        # listing, and on this hot object a write refused as stale still counts against its write rate.
        stored, _ = scheduler.change_slots(p, tick)
        scheduler.settle_reserved(p, queue, taken, stored)
        summary["started"] = scheduler.start_jobs(p, taken, stored)
    if any(summary.values()):
        log.info("poll.tick", "poll: " + ", ".join(f"{k} {v}" for k, v in summary.items()), **summary)
    return summary


def _adopt_if_abandoned(p: Pipeline, qid: str) -> str:
    token = scheduler.claim_stuck(p, qid)
    return scheduler.start_job(p, qid, token, adopt=True) if token is not None else "waiting"


def _list_active(p: Pipeline, active: dict[str, dict[str, Any]]) -> dict[str, JobInfo]:
    """The pipeline's jobs created since the oldest reservation, by the queue id their display name names."""
    oldest = min(entry.get("first", entry["since"]) for entry in active.values())
    since = datetime.fromtimestamp(oldest, UTC) - _CLOCK_SLACK
    query = label_filter({"pipeline": p.config.pipeline_label}) + \
        f' AND create_time>="{since.strftime("%Y-%m-%dT%H:%M:%SZ")}"'
    jobs: dict[str, JobInfo] = {}
    for job in p.vertex.list(query, page_size=_LIST_PAGE):
        qid = layout.qid_of_display_name(p.config.pipeline_label, job.display_name)
        if qid in active and (qid not in jobs or not job.terminal):
            jobs[qid] = job  # a part has one job; should a second exist, the live one decides
    return jobs


def _observe(p: Pipeline, qid: str, entry: dict[str, Any], job: JobInfo) -> bool:
    """Log a job's new state; announce it when terminal. True when it finished (its slot is freed)."""
    run, part = layout.split_queue_id(qid)
    if job.state != entry.get("state"):
        log.info("job.state", f"{qid}: {entry.get('state')} -> {job.state}", run=run, job=job.job_id,
                 input=entry.get("input"), part=part, state=job.state)
    _warn_if_slow(p, qid, entry, job)
    if not job.terminal:
        return False
    error = {"code": job.error_code, "message": job.error_message} if job.error_code else None
    # Announce before freeing the slot: if we die in between, the next tick announces again (collect is
    # idempotent); the other order could lose the announcement (then only the reconciliation finds it).
    p.publisher.publish(p.config.job_finished_topic,
                        JobFinished(run=run, part=part, job=job.name, state=job.state, error=error).to_payload())
    seconds = (job.end_time - job.create_time).total_seconds() if job.end_time and job.create_time else None
    log.info("job.finished", f"{qid}: Vertex job {job.job_id} ended {job.state}", run=run, job=job.job_id,
             input=entry.get("input"), part=part, state=job.state, errorCode=job.error_code, seconds=seconds)
    return True


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
