"""Cancelling a run on an operator's word: its active Vertex jobs are cancelled, its waiting parts leave the
queue, and the run still ends with a report of what completed.

The cancellation is recorded in the run record first (`runstate.cancelled`), so every path that would start
work for the run sees it: collect sends the rows a cancelled run did not run to errors (reason CANCELLED,
not retryable) instead of a retry part, `progress.resume` announces its queued parts as cancelled instead of
queueing them, and the scheduler drops (and announces) a part it meets. A part "announced as cancelled" gets
a job-finished message with no job, which collect settles like any other: it harvests nothing and writes
each of the part's rows to errors. Cancelled Vertex jobs are announced by poll as usual and collect
harvests their partial output. Every step is idempotent: cancelling twice does nothing more, and a crash
half-way is finished by cancelling again (or by the reconciliation, which repairs the run as any other).

    mark the record ─ drop queue objects ─ cancel live Vertex jobs (by label: also a create in flight) ─
    announce queued parts
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import layout, log, runstate, scheduler
from shared.cancellation import announce_queued
from shared.errors import PermanentError
from shared.pipeline import Pipeline
from shared.storage import mutate_json
from shared.vertex import JobInfo
from shared.vertex.base import label_filter


@dataclass(frozen=True, slots=True)
class LiveJob:
    """A Vertex job of the run that has not ended."""

    name: str
    state: str
    part: str

    @property
    def job_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What cancelling a run does (or did): Vertex jobs to cancel, queued parts to drop and announce, and the
    rows of those parts."""

    run: str
    input: str
    state: str
    already: bool  # the run was cancelled before
    jobs: tuple[LiveJob, ...] = ()
    parts: tuple[str, ...] = ()
    rows: int = 0
    queue_objects: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "input": self.input, "state": self.state, "alreadyCancelled": self.already,
                "jobs": [{"name": j.name, "state": j.state, "part": j.part} for j in self.jobs],
                "queuedParts": list(self.parts), "queuedRows": self.rows, "queueObjects": list(self.queue_objects)}


def plan(p: Pipeline, run: str) -> Cancellation:
    """What `cancel` would do now, changing nothing. Raises PermanentError for an unknown or finished run."""
    record = _record(p, run)
    return _plan(p, record)


def cancel(p: Pipeline, run: str, *, reason: str | None = None) -> Cancellation:
    """Cancel the run (see the module docstring). Returns what was done. Raises PermanentError for an
    unknown run, or one that is settled already (finalizing or done: nothing left to cancel)."""
    record = _record(p, run)
    stored = mutate_json(p.store, p.work_bucket, layout.run_state_name(run),
                         lambda r: runstate.cancelled(r, now=p.now(), reason=reason) if r else None)
    if stored is None or not stored.get("cancelled"):
        raise PermanentError(f"run {run} is {stored['state'] if stored else 'gone'}: nothing left to cancel")
    done = _plan(p, stored, already=bool(record.get("cancelled")))
    for name in done.queue_objects:
        p.store.delete(p.work_bucket, name)
    for job in done.jobs:
        p.vertex.cancel(job.name)
    if stored["state"] == runstate.RUNNING:
        announce_queued(p, stored, list(done.parts))  # the parts without a job; the others end at Vertex
    log.warning("run.cancelled", f"run {run} was cancelled by an operator: {len(done.jobs)} Vertex job(s) "
                f"cancelled, {len(done.parts)} queued part(s) ({done.rows} rows) dropped", run=run,
                input=stored["input"]["uri"], jobs=[j.job_id for j in done.jobs], parts=list(done.parts),
                rows=done.rows, reason=reason)
    return done


def _record(p: Pipeline, run: str) -> dict[str, Any]:
    found = p.store.read_json(p.work_bucket, layout.run_state_name(run))
    if found is None:
        raise PermanentError(f"no run {run} in gs://{p.work_bucket}/{layout.run_state_name(run)}")
    record = found.value
    if record["state"] not in (runstate.STAGING, runstate.RUNNING):
        raise PermanentError(f"run {run} is {record['state']}: nothing left to cancel")
    return record


def _plan(p: Pipeline, record: dict[str, Any], *, already: bool | None = None) -> Cancellation:
    run = record["run"]
    record = runstate.with_jobs(record, scheduler.job_markers(p, run))
    # By label, not only the jobs the record and the job markers name: a job created a moment ago may not
    # have its marker yet, and it is not a queued part.
    listed = jobs_of(p, run)
    with_job = {part for _, part in listed}
    queued = [part for part, entry in sorted(record["parts"].items())
              if entry["state"] == runstate.QUEUED and part not in with_job]
    present = scheduler.queued(p, record, queued) if queued else set()
    objects = tuple(layout.queue_entry_name(record["parts"][layout.split_queue_id(qid)[1]].get("since") or 0.0, qid)
                    for qid in sorted(present))
    jobs = tuple(LiveJob(job.name, job.state, part) for job, part in listed
                 if not job.terminal and job.state != "JOB_STATE_CANCELLING")
    return Cancellation(run=run, input=record["input"]["uri"], state=record["state"],
                        already=bool(record.get("cancelled")) if already is None else already, jobs=jobs,
                        parts=tuple(queued), rows=sum(record["parts"][part]["rows"] for part in queued),
                        queue_objects=objects)


def jobs_of(p: Pipeline, run: str) -> list[tuple[JobInfo, str]]:
    """The run's Vertex jobs and their parts: found by label, kept only when the display name says so too."""
    found = []
    for job in p.vertex.list(label_filter({"pipeline": p.config.pipeline_label, "run": run})):
        qid = layout.qid_of_display_name(p.config.pipeline_label, job.display_name)
        if qid is not None and layout.split_queue_id(qid)[0] == run:
            found.append((job, layout.split_queue_id(qid)[1]))
    return found
