"""reconcile: on every scheduler tick, drive each unfinished run forward from stored state, never from a
message, so a file dropped under INPUT_PREFIX always ends with a report whatever crashed or was lost.

One tick does three bounded, resumable things:
1. visit the open runs (`state/open/`, one marker per unfinished run) a page at a time from a stored
   cursor, plan each run's repairs (`shared/repairs.py`, pure) and carry them out;
2. sweep the input prefix a page at a time for objects that have no run at all (their notification was
   lost or dead-lettered): objects created before the last complete sweep's horizon are skipped without a
   read, so a sweep costs one list call per 1,000 inputs and a read only for the new ones;
3. read the dead-letter subscriptions: each message is reported (`message.dead_lettered`), the run it
   names is repaired, and the message acknowledged.

Repairs are rate-limited per run and kind by a compare-and-swap on `state/repairs/<run>.json`: overlapping
ticks never repeat one, and a repair is only repeated after the deadline (the previous one may still be at
work). A run repaired STUCK_AFTER times for the same reason logs `run.stuck` at ERROR, once per period.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from shared import layout, log, repairs, runstate, scheduler
from shared.collect import JobFinished
from shared.errors import ConfigError
from shared.events import StorageObjectEvent
from shared.finalize import finalize
from shared.pipeline import Pipeline
from shared.repairs import Kind
from shared.storage import change_json
from shared.storage.base import Listed

_SWEEP_PAGE = 1000
_DEAD_LETTERS_PER_TICK = 50


def handle_tick(p: Pipeline) -> dict[str, int]:
    started = time.monotonic()
    # Half the function's timeout: what is left over is picked up by the next tick from the cursor.
    budget = p.config.function_timeout_seconds / 2
    summary: Counter[str] = Counter()
    found = p.store.read_json(p.work_bucket, layout.RECONCILE_CURSOR_NAME)
    cursor = dict(found.value) if found else {}
    new_cursor = dict(cursor)

    def out_of_time() -> bool:
        return time.monotonic() - started > budget

    # Each step stops where the budget runs out, between two items it visits (the first is always visited). A
    # tick stopped by the function's timeout saves no cursor, and the next one does its work again: under storage
    # faults, a sweep of 200 inputs waiting for their submit ran past the timeout (`make soak`, burst-faults).
    new_cursor["openAfter"] = _visit_open_runs(p, cursor.get("openAfter", ""), summary, out_of_time)
    if not out_of_time():
        new_cursor["sweep"] = _sweep_inputs(p, cursor.get("sweep") or {}, summary, out_of_time)
    if p.dead_letters is not None and not out_of_time():
        _read_dead_letters(p, summary, out_of_time)
    if new_cursor != cursor:
        # A lost race means an overlapping tick moved the cursor: its value is as good as ours.
        p.store.write_json(p.work_bucket, layout.RECONCILE_CURSOR_NAME, new_cursor,
                           if_generation_match=found.generation if found else 0)
    if summary["repaired"] or summary["failed"] or summary["deadLettered"] or summary["stuck"]:
        log.info("reconcile.tick", "reconcile: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.items())),
                 seconds=round(time.monotonic() - started, 3), **summary)
    return dict(summary)


# --------------------------------------------------------------------------------------------- open runs
def _visit_open_runs(p: Pipeline, after: str, summary: Counter[str], out_of_time) -> str:
    """Visit one page of open runs after `after`; returns where the next tick starts ("" = from the top)."""
    limit = p.config.reconcile_batch
    page = p.store.list_page(p.work_bucket, layout.OPEN_PREFIX, start_after=after, limit=limit)
    state = scheduler.read_slots(p)
    last = after
    for listed in page:
        if out_of_time():
            return last
        run = layout.run_of_marker(listed.name)
        try:
            _visit(p, run, state, summary)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - one run's failure must not stall the others
            summary["failed"] += 1
            log.warning("run.repair_failed", f"run {run}: {type(exc).__name__}: {exc}; tried again next tick",
                        run=run, error=type(exc).__name__)
        summary["visited"] += 1
        last = listed.name
    return last if len(page) == limit else ""


def _visit(p: Pipeline, run: str, state: dict[str, Any], summary: Counter[str]) -> None:
    bucket = p.work_bucket
    marker = p.store.read_json(bucket, layout.open_marker_name(run))
    found = p.store.read_json(bucket, layout.run_state_name(run))
    record = found.value if found else None
    jobs, queued = {}, set()
    now, deadline = p.clock(), p.config.deadline_seconds
    if record is not None and record["state"] == runstate.RUNNING:
        record = runstate.with_jobs(record, scheduler.job_markers(p, run))
        jobs = {name: p.vertex.get(name) for name in repairs.jobs_to_check(record, state)}
        overdue = repairs.overdue_queued(record, now, deadline)
        queued = scheduler.queued(p, record, overdue) if overdue else set()
    actions = repairs.plan(marker=marker.value if marker else None, record=record, scheduler=state, queued=queued,
                           jobs=jobs, now=now, deadline=deadline)
    for action in actions:
        if action.kind == Kind.CLOSE:
            # The run finished but its marker outlived it (a crash between the two): no repair to count.
            p.store.delete(bucket, layout.open_marker_name(run))
            continue
        attempt = _claim_repair(p, run, action.kind)
        if attempt is None:
            continue
        _report(p, run, record, action, attempt, summary)
        _carry_out(p, run, marker.value if marker else None, record, action)


def _claim_repair(p: Pipeline, run: str, kind: Kind) -> int | None:
    """Count this repair by compare-and-swap; None when it is not due (or an overlapping tick took it)."""
    now, deadline = p.clock(), p.config.deadline_seconds
    stored, won = change_json(p.store, p.work_bucket, layout.repairs_name(run),
                              lambda cur: repairs.record_repair(cur, kind, now)
                              if repairs.due(cur or {}, kind, now, deadline) else None)
    return stored["kinds"][kind.value]["count"] if won and stored else None


def _report(p: Pipeline, run: str, record: dict[str, Any] | None, action: repairs.Action, attempt: int,
            summary: Counter[str]) -> None:
    uri = record["input"]["uri"] if record else None
    summary["repaired"] += 1
    log.warning("run.repaired", f"run {run}: {action.kind}: {action.reason} (repair {attempt})", run=run,
                input=uri, repair=str(action.kind), reason=action.reason, attempt=attempt,
                parts=list(action.parts))
    if attempt > repairs.STUCK_AFTER:
        _stuck(p, run, uri, f"{action.kind} repeated {attempt} times without progress: {action.reason}", summary)


def _stuck(p: Pipeline, run: str, uri: str | None, reason: str, summary: Counter[str]) -> None:
    """Log run.stuck once per run and period (an alert fires on it; repeating every tick would be noise)."""
    now, period = p.clock(), 12 * p.config.deadline_seconds
    _, won = change_json(p.store, p.work_bucket, layout.repairs_name(run),
                         lambda cur: {**(cur or {}), "stuckLogged": now}
                         if now - (cur or {}).get("stuckLogged", float("-inf")) > period else None)
    if won:
        summary["stuck"] += 1
        log.error("run.stuck", f"run {run} cannot be moved forward: {reason}", run=run, input=uri, reason=reason)


def _carry_out(p: Pipeline, run: str, marker: dict[str, Any] | None, record: dict[str, Any] | None,
               action: repairs.Action) -> None:
    if action.kind in (Kind.START_RUN, Kind.RESTAGE):
        source = record["input"] if record else marker
        _republish_upload(p, source["bucket"], source["name"], int(source["generation"]))
    elif action.kind == Kind.REQUEUE:
        scheduler.enqueue(p, record, action.parts, verify=True)
    elif action.kind == Kind.REANNOUNCE:
        for payload in action.announcements:
            p.publisher.publish(p.config.job_finished_topic, JobFinished.from_payload(payload).to_payload())
    elif action.kind == Kind.FINALIZE:
        finalize(p, run)


def _republish_upload(p: Pipeline, bucket: str, name: str, generation: int) -> None:
    """Hand the upload to submit again (it claims or restages the run): submit is sized for big files and
    this tick is not. Its object's metadata (the model override) travels as in a real notification."""
    info = p.store.object_info(bucket, name, generation) or {}
    event = StorageObjectEvent(bucket=bucket, name=name, generation=generation, size=info.get("size"),
                               content_type=info.get("content_type"), metadata=info.get("metadata") or {})
    resource, attributes = event.to_notification()
    p.publisher.publish(p.config.uploads_topic, resource, **attributes)


# --------------------------------------------------------------------------------------------- input sweep
def _sweep_inputs(p: Pipeline, sweep: dict[str, Any], summary: Counter[str],
                  out_of_time: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """One page of the input prefix, or its inputs up to where `out_of_time()`. Returns the sweep's new cursor:
    {"after": last name, "started": t, "horizon": t, "unverified": t|None, "finished": t}. Every input created
    before `horizon` is known to have a run; a sweep only starts deadline/2 after the previous one ended."""
    cfg, now, deadline = p.config, p.clock(), p.config.deadline_seconds
    sweep = dict(sweep)
    if not sweep.get("after"):
        if now - sweep.get("finished", float("-inf")) < deadline / 2:
            return sweep
        sweep.update(after="", started=now, unverified=None)
    page = p.store.list_page(cfg.input_bucket, cfg.input_prefix, start_after=sweep["after"], limit=_SWEEP_PAGE)
    horizon = sweep.get("horizon", float("-inf"))
    for i, obj in enumerate(page):
        if i and out_of_time():
            sweep["after"] = page[i - 1].name  # the next tick goes on from here
            return sweep
        if obj.created < horizon or not _is_input(p, obj):
            continue
        summary["swept"] += 1
        if now - obj.created <= deadline or not _has_run(p, obj, summary):
            # Too young to judge (its submit may be at work), or just handed to submit: look again next sweep.
            sweep["unverified"] = min(sweep["unverified"] or obj.created, obj.created)
    if len(page) == _SWEEP_PAGE:
        sweep["after"] = page[-1].name
        return sweep
    done_before = sweep["started"] - deadline
    sweep.update(after="", finished=now, horizon=min(done_before, sweep["unverified"] or done_before))
    return sweep


def _is_input(p: Pipeline, obj: Listed) -> bool:
    cfg = p.config
    if obj.name.endswith("/"):
        return False
    return not (cfg.input_bucket == cfg.output_bucket and obj.name.startswith(cfg.own_prefixes))


def _has_run(p: Pipeline, obj: Listed, summary: Counter[str]) -> bool:
    """True when the input has a run (or an open marker: the open-run pass owns it). Otherwise starts one."""
    run = layout.run_id(p.config.input_bucket, obj.name, obj.generation)
    bucket = p.work_bucket
    if p.store.read_json(bucket, layout.run_state_name(run)) or p.store.read_json(bucket, layout.open_marker_name(run)):
        return True
    _start_orphan(p, run, p.config.input_bucket, obj.name, obj.generation,
                  "an input with no run (its upload notification was lost or dead-lettered)", summary)
    return False


def _start_orphan(p: Pipeline, run: str, bucket: str, name: str, generation: int, reason: str,
                  summary: Counter[str]) -> None:
    attempt = _claim_repair(p, run, Kind.START_RUN)
    if attempt is None:
        return
    uri = f"gs://{bucket}/{name}"
    _report(p, run, {"input": {"uri": uri}}, repairs.Action(Kind.START_RUN, reason), attempt, summary)
    _republish_upload(p, bucket, name, generation)


# --------------------------------------------------------------------------------------------- dead letters
def _read_dead_letters(p: Pipeline, summary: Counter[str], out_of_time: Callable[[], bool] = lambda: False) -> None:
    """Report every dead-lettered message and repair what it names. The stored state already makes every
    run finish without them (the sweep and the open-run pass); reading them makes an upload's run start
    at once, and tells the operator that deliveries are failing. Out of time, the messages not yet read are left
    unacknowledged: they come again."""
    assert p.dead_letters is not None
    for subscription in p.config.dead_letter_subscriptions:
        if out_of_time():
            return
        messages = p.dead_letters.pull(subscription, _DEAD_LETTERS_PER_TICK)
        done = []
        for message in messages:
            if done and out_of_time():
                break
            done.append(message)
            summary["deadLettered"] += 1
            attrs = dict(message.attributes)
            run, described = _describe(message.data, attrs)
            log.warning("message.dead_lettered", f"{subscription}: message {message.message_id} was dead-lettered "
                        f"({described}); the reconciliation repairs its run", run=run, subscription=subscription,
                        attributes=attrs, messageId=message.message_id)
            if attrs.get("objectId") and attrs.get("bucketId") == p.config.input_bucket:
                listed = Listed(attrs["objectId"], int(attrs.get("objectGeneration") or 0), 0.0, 0)
                if listed.generation and _is_input(p, listed) and \
                        listed.name.startswith(p.config.input_prefix):
                    _has_run(p, listed, summary)
        p.dead_letters.ack(subscription, [m.ack_id for m in done])


def _describe(data: bytes, attrs: dict[str, str]) -> tuple[str | None, str]:
    """(the run a dead letter names, if any; a short description for the log)."""
    if attrs.get("objectId"):
        return None, f"upload of gs://{attrs.get('bucketId')}/{attrs['objectId']}#{attrs.get('objectGeneration')}"
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, f"{len(data)} bytes, not JSON"
    if isinstance(payload, dict) and isinstance(payload.get("run"), str):
        return payload["run"], f"a message about run {payload['run']}"
    return None, "a message that names no run"
