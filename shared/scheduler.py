"""The global job scheduler: at most MAX_ACTIVE_JOBS Vertex jobs at once across all runs, the rest in a FIFO
queue, and at most MAX_CREATES_PER_MINUTE creations a minute (Vertex's regional quota).

The state (shape and rules in `shared/scheduler_state.py`) is one queue object per waiting part plus one
small slots object, so no object is written more often than Cloud Storage allows: submit and collect only
create queue objects; the slots object is written once per poll tick and on rare events. A slot is reserved
before the create call, so a function that dies before or after creating leaves a reservation the poller
adopts: it looks the job up by label, and creates it only if Vertex has none.

One fault never stalls the others: a 429 holds back only that model, a 401/403 only that part (for
PERMISSION_GRACE_SECONDS, then its rows fail naming the permission problem), and a part whose run no longer
wants it is dropped.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from shared import cancellation, layout, log, runstate
from shared import scheduler_state as rules
from shared.errors import (
    StateConflictError,
    TransientError,
    VertexAmbiguousError,
    VertexDeniedError,
    VertexError,
    VertexRejectedError,
    VertexTransientError,
)
from shared.pipeline import Pipeline
from shared.scheduler_state import Queued
from shared.storage import change_json, mutate_json
from shared.storage.base import INDEX_KEY, Versioned
from shared.vertex import JobInfo

_CREATE_TRIES = 4
_LOOK_UP_BATCH = 20  # parts per look-up call: the filter rides in the request's URL
_QUEUE_PAGE = 100  # queue entries considered per reservation: slots, not the queue's length, bound the work
_PACE_TRIES = 5  # waits for the slots object's write interval before writing regardless
_SLOTS_TURN = threading.Lock()


def change_slots(p: Pipeline, change: Callable[[dict[str, Any]], dict[str, Any] | None], *, attempts: int = 40,
                 skip_within: float | None = None) -> tuple[dict[str, Any] | None, bool]:
    """`change_json` on the slots object, paced: never written within MIN_WRITE_INTERVAL of its last write as
    read just before the conditional write. Cloud Storage takes about one write a second to one object, and
    a write refused as stale counts too, so checking only when a writer starts its work (before a Vertex
    listing, say) is not enough: another writer may have written since.

    A paced writer waits out the interval and reads again (its change then sees what was written meanwhile,
    and may find nothing left to do). With `skip_within` (best-effort writers, whose work the next tick
    does anyway), a write within that many seconds skips this turn instead: (None, False).

    Writers in one process take turns (`_SLOTS_TURN`), so two overlapping calls never read the same
    generation and both write, one of them only to be refused."""
    interval = skip_within if skip_within is not None else rules.MIN_WRITE_INTERVAL
    wait: list[float] = []

    def paced(cur: dict[str, Any] | None) -> dict[str, Any] | None:
        s = rules.current(cur)
        now = p.clock()
        if rules.written_recently(s, now, interval):
            wait.append(s["at"] + interval - now)
            return None
        return rules.stamped(change(s), now)

    for _ in range(_PACE_TRIES):
        wait.clear()
        with _SLOTS_TURN:
            stored, wrote = change_json(p.store, p.work_bucket, layout.SCHEDULER_NAME, paced, attempts=attempts)
        if not wait:
            return stored, wrote
        if skip_within is not None:
            return None, False
        p.sleep(min(max(wait[0], 0.05), interval))
    # Still busy after every wait (writers with clocks far apart can read a stamp as recent for long):
    # the change matters more than the pace.
    with _SLOTS_TURN:
        return change_json(p.store, p.work_bucket, layout.SCHEDULER_NAME,
                           lambda cur: rules.stamped(change(rules.current(cur)), p.clock()), attempts=attempts)


def _mutate(p: Pipeline, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
    return change_slots(p, change)[0] or rules.empty()


def read_slots(p: Pipeline) -> dict[str, Any]:
    found = p.store.read_json(p.work_bucket, layout.SCHEDULER_NAME)
    return rules.current(found.value if found else None)  # a fresh read: no one else holds it


def _as_current(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A value of the slots object just written or read, in the current version (copied only if older)."""
    return stored if stored is not None and stored.get("version") == rules.VERSION else rules.upgrade(stored)


def queue_page(p: Pipeline, limit: int = _QUEUE_PAGE) -> list[Queued]:
    """The oldest waiting parts, FIFO order (their fields from the listing's metadata; older ones read)."""
    page = p.store.list_page(p.work_bucket, layout.QUEUE_PREFIX, limit=limit)
    return [e for e in (Queued.from_index(x.name, x.metadata) or _read_entry(p, x.name) for x in page) if e]


def waiting(p: Pipeline, slots: dict[str, Any], want: int, *, pages: int = 10) -> list[Queued]:
    """Queue entries, oldest first, until `want` of them may start now (or `pages` pages were read): entries
    of a throttled model at the head never hide the others behind them. Nothing is read when no slot is free."""
    if want <= 0:
        return []
    found: list[Queued] = []
    after, now = "", p.clock()
    for _ in range(pages):
        page = p.store.list_page(p.work_bucket, layout.QUEUE_PREFIX, start_after=after, limit=_QUEUE_PAGE)
        found += [e for e in (Queued.from_index(x.name, x.metadata) or _read_entry(p, x.name) for x in page) if e]
        if len(page) < _QUEUE_PAGE or sum(rules.may_start(slots, e, now) for e in found) >= want:
            break
        after = page[-1].name
    return found


def _read_entry(p: Pipeline, name: str) -> Queued | None:
    """A queue entry written without its index (None: reserved meanwhile)."""
    found = p.store.read_json(p.work_bucket, name)
    return Queued.from_json(name, found.value) if found is not None else None


def read(p: Pipeline) -> dict[str, Any]:
    """A snapshot for tests and tools: the slots object plus "queue", the first page of waiting parts."""
    state = read_slots(p)
    state["queue"] = [{"name": e.name, **e.to_json()} for e in queue_page(p, limit=1000)]
    return state


def enqueue(p: Pipeline, record: dict[str, Any], parts: Iterable[str], *, verify: bool = False) -> None:
    """Queue parts of a run. Create-if-absent: a replayed event adds nothing. `parts` are parts still queued
    in the record as the pipeline knows it (`runstate.with_jobs`: a part with a job is not waiting). `verify`:
    the part may have a job already (a repair re-queues it), so its creator looks it up by label first."""
    parts = list(parts)
    active = read_slots(p)["active"] if parts else {}
    for part in parts:
        qid = layout.queue_id(record["run"], part)
        if qid in active:
            continue  # reserved: its job is being created
        name = layout.queue_entry_name(record["parts"][part].get("since") or 0.0, qid)
        value = Queued(name=name, qid=qid, model=record["model"], verify=verify,
                       input=record["input"]["uri"]).to_json()
        p.store.write_json(p.work_bucket, name, value, if_generation_match=0)


def job_markers(p: Pipeline, run: str) -> dict[str, str]:
    """part -> Vertex job name, for the parts of a run whose job was created (one list call)."""
    prefix = layout.job_marker_prefix(run)
    found: dict[str, str] = {}
    after = ""
    while True:
        page = p.store.list_page(p.work_bucket, prefix, start_after=after, limit=1000)
        for listed in page:
            job = listed.metadata.get("job")
            if job is None:  # written without its index: read it
                value = p.store.read_json(p.work_bucket, listed.name)
                job = value.value.get("job") if value else None
            if job:
                found[listed.name[len(prefix):].removesuffix(".json")] = job
        if len(page) < 1000:
            return found
        after = page[-1].name


def _mark_job(p: Pipeline, run: str, part: str, job: str) -> None:
    p.store.write_json(p.work_bucket, layout.job_marker_name(run, part), {"job": job, INDEX_KEY: {"job": job}},
                       if_generation_match=None)


def queued(p: Pipeline, record: dict[str, Any], parts: Iterable[str]) -> set[str]:
    """Which of these parts of a run have a queue object (one list call per distinct `since`)."""
    found: set[str] = set()
    for since in {record["parts"][part].get("since") or 0.0 for part in parts}:
        prefix = f"{layout.queue_since_prefix(since)}-{record['run']}:"
        found |= {name.removeprefix(layout.QUEUE_PREFIX).split("-", 1)[1].removesuffix(".json")
                  for name in (x.name for x in p.store.list_page(p.work_bucket, layout.QUEUE_PREFIX + prefix,
                                                                  limit=10_000))}
    return found


def _put_back(p: Pipeline, name: str, entry: Queued) -> None:
    """Give a reserved part its queue object back, under its old name: it keeps its place in the FIFO."""
    p.store.write_json(p.work_bucket, name, entry.to_json(), if_generation_match=None)


def drain(p: Pipeline, *, best_effort: bool = False) -> int:
    """Reserve free slots for the oldest waiting parts and create their jobs. Returns how many were created.

    `best_effort` (right after an upload or a collect): one try at the slots object, no retry on contention
    or throttling; the next poll tick reserves what this one could not."""
    slots = read_slots(p)
    if best_effort and rules.written_recently(slots, p.clock(), 2 * rules.MIN_WRITE_INTERVAL):
        # The slots object is busy: leave this to the next poll tick. Twice poll's interval, so a steady
        # stream of uploads can never keep the tick (which also frees finished slots) from its turn.
        return 0
    queue = waiting(p, slots, p.config.max_active_jobs - len(slots["active"]))
    if not queue:
        return 0
    reserved, stored = _reserve(p, queue, best_effort=best_effort)
    return start_jobs(p, reserved, stored)


def start_jobs(p: Pipeline, reserved: list[tuple[Queued, str]], slots: dict[str, Any] | None = None) -> int:
    """Create the jobs of the slots just reserved. `slots`: the slots object as that reservation stored it,
    so a create reads neither it nor, for a second part of the same run, the run record again (each
    start would otherwise read both: three reads a part, per tick)."""
    created = 0
    records: dict[str, Versioned | None] = {}
    current = _as_current(slots) if slots is not None else None
    existing = _look_up(p, [entry.qid for entry, _ in reserved]) if len(reserved) > 1 else None
    for number, (entry, token) in enumerate(reserved):
        outcome = start_job(p, entry.qid, token, slots=current, records=records, existing=existing)
        if outcome == "pending":
            # Vertex is unreachable: hand the other reservations to the next tick instead of waiting on each.
            later = reserved[number + 1:]
            for entry_later, _ in later:
                _put_back(p, entry_later.name, entry_later)
            if later:  # in one write: the slots object takes about one a second
                _mutate(p, lambda s, later=later: _release_all(s, later))
            break
        created += outcome == "created"
    return created


def _release_all(s: dict[str, Any], reserved: list[tuple[Queued, str]]) -> dict[str, Any] | None:
    changed = None
    for entry, token in reserved:
        changed = rules.release(changed or s, entry.qid, token) or changed
    return changed


def _look_up(p: Pipeline, qids: list[str]) -> dict[str, JobInfo] | None:
    """The jobs that already exist for these parts, found with one list call (by display name, which names
    the part) instead of one look-up each; None when the call fails (each part then looks itself up)."""
    label = p.config.pipeline_label
    wanted = set(qids)
    found: dict[str, JobInfo] = {}
    try:
        for start in range(0, len(qids), _LOOK_UP_BATCH):
            query = " OR ".join(f'display_name="{layout.job_display_name(label, *layout.split_queue_id(q))}"'
                                for q in qids[start:start + _LOOK_UP_BATCH])
            for job in p.vertex.list(query, page_size=1000):
                qid = layout.qid_of_display_name(label, job.display_name)
                if qid in wanted and (qid not in found or job.recency > found[qid].recency):
                    found[qid] = job  # as `find`: the latest job of the part
    except VertexError as exc:
        log.warning("job.lookup_failed", f"{len(qids)} parts: {exc}")
        return None
    return found


def _tokens() -> Iterator[str]:
    while True:
        yield secrets.token_hex(8)


def reserve_change(p: Pipeline, queue: list[Queued], taken: list[tuple[Queued, str]]):
    """The change that reserves slots for `queue` (collecting the reservations into `taken`), for use alone
    or inside poll's one write per tick."""
    cfg = p.config
    tokens = _tokens()

    def change(s: dict[str, Any]) -> dict[str, Any] | None:
        taken.clear()  # the change may run again after a lost race
        result = rules.reserve(s, queue, now=p.clock(), tokens=tokens, cap=cfg.max_active_jobs,
                               creates_per_minute=cfg.max_creates_per_minute)
        if result is None:
            return None
        taken.extend(result[1])
        return result[0]

    return change


def _reserve(p: Pipeline, queue: list[Queued], *,
             best_effort: bool) -> tuple[list[tuple[Queued, str]], dict[str, Any] | None]:
    """The reservations made, and the slots object as stored after them."""
    taken: list[tuple[Queued, str]] = []
    change = reserve_change(p, queue, taken)
    try:
        stored, _ = change_slots(p, change, attempts=1 if best_effort else 40,
                                 skip_within=2 * rules.MIN_WRITE_INTERVAL if best_effort else None)
    except (StateConflictError, TransientError):
        if not best_effort:
            raise
        return [], None
    if stored is None and not taken:
        return [], None  # this turn was skipped (the slots object was just written), or there is none yet
    settle_reserved(p, queue, taken, stored)
    return taken, stored


def settle_reserved(p: Pipeline, queue: list[Queued], taken: list[tuple[Queued, str]],
                    stored: dict[str, Any] | None = None) -> None:
    """After a reservation is stored (`stored`: the slots object as it was written, else it is read): drop the
    reserved parts' queue objects, and any left behind by a crash between an earlier reservation and its
    clean-up (their part is in a slot already)."""
    if taken:
        p.checkpoint("scheduler.reserved")
    if not queue:
        return
    active = (_as_current(stored) if stored is not None else read_slots(p))["active"]
    for entry in queue:
        if entry.qid in active or any(e.name == entry.name for e, _ in taken):
            p.store.delete(p.work_bucket, entry.name)


def claim_stuck(p: Pipeline, qid: str) -> str | None:
    """Take over a reservation whose creator seems gone (no job at Vertex after the deadline, or orphaned).
    The new token is written by compare-and-swap, so of two overlapping polls only one adopts it, and the old
    holder, if it is only slow, sees it has lost the reservation before its next create."""
    token = secrets.token_hex(8)
    stored = _mutate(p, lambda s: rules.adopt(s, qid, now=p.clock(), stuck_after=p.config.create_stuck_seconds,
                                              token=token))
    return token if rules.holds(stored, qid, token) else None


def start_job(p: Pipeline, qid: str, token: str, *, adopt: bool = False, slots: dict[str, Any] | None = None,
              records: dict[str, Versioned | None] | None = None,
              existing: dict[str, JobInfo] | None = None) -> str:
    """Create (or, when `adopt` or the entry asks to verify, first find) the Vertex job of a reserved slot
    and record it in the run record.

    Returns "created", "found", "throttled" (429: the model waits, the part goes back to its place in the
    queue), "denied" (401/403: the part retries later), "rejected" (Vertex refused the job, or permission
    stayed denied past the grace: announced as finished so its rows go to errors), "skipped" (the part must
    not run any more), "lost" (another poller adopted the reservation) or "pending" (Vertex unreachable after
    an ambiguous create; the poller adopts the reservation).

    `slots`: the slots object as just stored by the reservation (else read); `records`: run records already
    read in this tick, by run (filled in here); `existing`: the jobs of the parts starting in this tick, looked
    up together just before (else this part is looked up alone).
    """
    run, part = layout.split_queue_id(qid)
    if records is not None and run in records:
        record = records[run]
    else:
        record = p.store.read_json(p.work_bucket, layout.run_state_name(run))
        if records is not None:
            records[run] = record
    entry = record.value["parts"].get(part) if record else None
    if record is None or record.value["state"] != runstate.RUNNING or entry is None or \
            entry["state"] != runstate.QUEUED or record.value.get("cancelled"):
        # A late duplicate may queue a part that already ran, or whose run is over: never create it.
        log.warning("job.skipped", f"{qid} is not a queued part of a running run; freeing its slot", run=run)
        if record is not None and record.value.get("cancelled") and entry and entry["state"] == runstate.QUEUED:
            # Its run was cancelled: the part ends with its rows in errors, so the run can still finish.
            p.publisher.publish(p.config.job_finished_topic,
                                cancellation.announcement(run, part, record.value["cancelled"]))
        _mutate(p, lambda s: rules.release(s, qid, token))
        return "skipped"
    cfg = p.config
    labels = layout.job_labels(cfg.pipeline_label, run, part)
    job: JobInfo | None = None
    outcome = "created"
    reservation = rules.holds(slots if slots is not None else read_slots(p), qid, token)
    maybe_created = adopt
    # Every create is preceded by a look-up by label: Vertex job creation is not idempotent, and a part must
    # never get two jobs, whatever left its queue entry behind (a creator that died after the create, a
    # replayed event, a repair). The run record is not written per job: a run of many parts would make it
    # a hot object (Cloud Storage takes one write per second per name).
    for attempt in range(_CREATE_TRIES):
        if attempt:
            p.sleep(min(4.0, 0.25 * 2 ** attempt))
            reservation = rules.holds(read_slots(p), qid, token)
        if reservation is None:
            log.warning("job.lost", f"{qid}: the reservation was adopted by a poller; stopping", run=run)
            return "lost"
        if p.clock() - reservation["since"] > cfg.last_create_seconds:
            # Too close to the deadline after which a poller adopts the reservation: a create sent now
            # could land after the adopter looked for it. Stop, and let the adopter find or create the job.
            break
        if attempt == 0 and not maybe_created and existing is not None:
            job = existing.get(qid)
            if job is not None:
                outcome = "found"
                break
        elif maybe_created or attempt == 0:
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
                display_name=layout.job_display_name(cfg.pipeline_label, run, part),
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
                _put_back(p, reservation["entry"], Queued(reservation["entry"], qid, reservation.get("model"),
                                                          input=reservation.get("input")))
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
    _mark_job(p, run, part, job.name)
    if outcome == "created":
        _stop_if_cancelled(p, qid, job)
    # A create worked: lift the model's throttle if there was one (the slots seen before the create tell; one
    # set since by another poller's 429 lapses by its own back-off).
    if reservation.get("model") in (slots if slots is not None else read_slots(p))["throttled"]:
        _mutate(p, lambda s: rules.created(s, qid, token, reservation.get("model")))
    log.info("job.submitted", f"{qid} is Vertex job {job.job_id} ({outcome})", run=run, job=job.job_id,
             input=record.value["input"]["uri"], part=part, rows=entry["rows"])
    return outcome


def _stop_if_cancelled(p: Pipeline, qid: str, job: JobInfo) -> None:
    """Cancel a job just created for a run an operator cancelled since this tick read its record.

    `cancel.cancel` marks the record, then cancels the run's jobs it lists at Vertex. A create that lands
    after that listing would run unseen (billed for rows already written off as CANCELLED). Reading the record
    after the create closes the gap: a cancel marked before this read is seen here, and one marked after it
    lists this job. The part itself needs nothing: the cancel announced it, or Vertex will end the job
    CANCELLED and poll announces it as any other."""
    run, part = layout.split_queue_id(qid)
    found = p.store.read_json(p.work_bucket, layout.run_state_name(run))
    if found is None or not found.value.get("cancelled"):
        return
    try:
        p.vertex.cancel(job.name)
    except VertexError as exc:  # the job then runs to its end; its rows are counted once all the same
        log.warning("job.cancel_failed", f"{qid}: run {run} was cancelled while Vertex job {job.job_id} was "
                    f"being created, and cancelling the job failed: {exc}", run=run, job=job.job_id)
        return
    log.warning("job.cancelled", f"{qid}: run {run} was cancelled while Vertex job {job.job_id} was being "
                "created; the job was cancelled", run=run, job=job.job_id, part=part)


def _denied(p: Pipeline, qid: str, token: str, reservation: dict[str, Any], exc: VertexDeniedError) -> str:
    run, _ = layout.split_queue_id(qid)
    cfg = p.config
    now = p.clock()
    since = reservation.get("denied", now)
    if now - since >= cfg.permission_grace_seconds:
        _reject(p, qid, token, exc.code, exc.status,
                f"Vertex AI denied creating the batch job ({exc.code} {exc.status}) for "
                f"{cfg.permission_grace_seconds}s: the functions' service account needs roles/aiplatform.user "
                f"in {cfg.project}, and the Vertex AI service agent needs read access to gs://{p.work_bucket}"
                f"/staging/ and the input bucket, and write access to gs://{p.work_bucket}/vertex/ ({exc})")
        return "rejected"
    retry_in = max(1.0, min(60.0, cfg.permission_grace_seconds / 10))
    _put_back(p, reservation["entry"], Queued(reservation["entry"], qid, reservation.get("model"),
                                              denied=since, not_before=now + retry_in,
                                              input=reservation.get("input")))
    _mutate(p, lambda s: rules.release(s, qid, token))
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
    _mutate(p, lambda s: rules.release(s, qid, token))


def rejection_payload(run: str, part: str, error: dict[str, Any]) -> dict[str, Any]:
    """The job-finished message of a part Vertex refused to run (its rows go to errors)."""
    return {"run": run, "part": part, "job": None, "state": "JOB_STATE_FAILED", "error": error}
