"""Finishing a settled run: merge the part files into results/ and errors/ with server-side compose, write
the report last, announce it on run-finished.

A re-upload starts a new run; its outputs replace the old ones only if its generation is newer. The
input's "latest" pointer is a publishing lease taken by compare-and-swap and held by ONE invocation (a
random token): a run that lost to a newer generation writes nothing under results/, errors/ or reports/,
and any other writer, a newer run or a duplicate delivery of the same run, waits (retries) while the
holder is writing. So neither an older compose nor a slow duplicate can land on top of newer outputs.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from shared import layout, log, report, runstate
from shared.errors import TransientError
from shared.pipeline import Pipeline
from shared.storage import mutate_json


def finalize(p: Pipeline, run: str) -> None:
    bucket = p.work_bucket
    found = p.store.read_json(bucket, layout.run_state_name(run))
    if found is None or found.value["state"] != runstate.FINALIZING:
        return
    record = found.value
    generation = int(record["input"]["generation"])
    token = secrets.token_hex(8)
    rel = record["rel"]
    # The generations our outputs replace, read BEFORE the lease is ours. Every output write is fenced on
    # them: a finalize that stalls past its lease, while a newer generation (or another delivery) takes over
    # and writes, finds its expected generations gone and can never land on top of the newer outputs.
    outputs = (layout.results_name(rel), layout.errors_name(rel), layout.report_name(rel))
    expected = {name: _generation(p, name) for name in outputs}
    if not _claim_latest(p, record, generation, token):
        log.warning("run.superseded", f"run {run}: a newer generation of {record['input']['uri']} already "
                    "published its outputs; this run's are not written", run=run, input=record["input"]["uri"])
        _done(p, record, superseded=True, report_doc=None)
        return

    p.checkpoint("finalize.claimed")
    parts = sorted(record["parts"].items(), key=lambda kv: (kv[1]["chunk"], kv[1]["attempt"]))
    results_sources = [layout.part_results_name(run, name) for name, _ in parts]
    errors_sources = [layout.validation_errors_name(run)] + [layout.part_errors_name(run, name) for name, _ in parts]
    composed = all(_fenced(p, record, token, expected, dest, lambda gen, src=src, dest=dest, what=what:
                           p.store.compose(bucket, src, dest, layout.compose_scratch_prefix(run, what),
                                           if_generation_match=gen))
                   for src, dest, what in ((results_sources, outputs[0], "results"),
                                           (errors_sources, outputs[1], "errors")))
    p.checkpoint("finalize.composed")
    finished = p.now()
    doc = report.build(record, finished=finished, results_uri=f"gs://{bucket}/{layout.results_name(rel)}",
                       errors_uri=f"gs://{bucket}/{layout.errors_name(rel)}")
    rows = doc["rows"]
    if rows["total"] != rows["succeeded"] + rows["failed"]:
        # Every row is accounted for exactly once by construction; if the tallies disagree, say so loudly
        # (the report still goes out: its numbers and the files are what the operator needs to look at).
        log.error("run.unbalanced", f"run {run}: {rows['total']} rows but {rows['succeeded']} succeeded and "
                  f"{rows['failed']} failed", run=run, input=record["input"]["uri"], rows=rows)
    holder = _holder(p, record)
    if not composed or holder.get("token") != token or not _fenced(
            p, record, token, expected, outputs[2],
            lambda gen: p.store.write_json(bucket, outputs[2], doc, if_generation_match=gen)):
        holder = _holder(p, record)
        if holder.get("run") == run:
            # Our lease expired and another delivery of this run took over: it writes the report and marks
            # the run done; doing either here could contradict it.
            log.warning("run.lease_lost", f"run {run}: another delivery took over the outputs", run=run,
                        input=record["input"]["uri"])
            return
        log.warning("run.superseded", f"run {run}: overtaken by a newer generation while finishing",
                    run=run, input=record["input"]["uri"])
        _done(p, record, superseded=True, report_doc=None)
        return
    p.checkpoint("finalize.reported")
    _release_latest(p, record, token)
    _done(p, record, superseded=False, report_doc=doc)


def _generation(p: Pipeline, name: str) -> int:
    info = p.store.object_info(p.work_bucket, name)
    return int(info["generation"]) if info else 0


def _fenced(p: Pipeline, record: dict[str, Any], token: str, expected: dict[str, int], name: str,
            write: Callable[[int], int | None]) -> bool:
    """Write an output only over the generation we expect. When it changed meanwhile, a stalled older
    writer got there (we still hold the lease: take the new generation and write again) or the lease is
    no longer ours (False: stop writing)."""
    for _ in range(5):
        generation = write(expected[name])
        if generation is not None:
            expected[name] = generation
            return True
        if _holder(p, record).get("token") != token:
            return False
        expected[name] = _generation(p, name)
    raise OutputsBusy(f"gs://{p.work_bucket}/{name} keeps changing under run {record['run']}")


class OutputsBusy(TransientError):
    """Another invocation (an older generation of the same input, or a duplicate delivery of this run) is
    still writing its outputs: try again later."""


def _claim_latest(p: Pipeline, record: dict[str, Any], generation: int, token: str) -> bool:
    """Take the publishing lease for this invocation. False when a newer generation already owns the outputs;
    OutputsBusy while another invocation (of an older run, or of this very run) holds a live lease."""
    run, now = record["run"], p.clock()
    # A lease older than the deadline belongs to an invocation that died while writing (no invocation
    # outlives the functions' timeout): another one takes it over.
    lease_seconds = p.config.deadline_seconds

    def change(cur):
        if cur:
            if cur["generation"] > generation:
                return None
            if cur.get("publishing") and now - cur.get("since", 0) < lease_seconds:
                whose = "another delivery of this run" if cur["run"] == run else f"run {cur['run']}"
                raise OutputsBusy(f"{whose} (generation {cur['generation']}) is still writing the outputs of "
                                  f"{record['input']['uri']}")
        return {"generation": generation, "run": run, "publishing": True, "since": now, "token": token}

    stored = mutate_json(p.store, p.work_bucket, _latest(record), change)
    return stored is not None and stored.get("token") == token


def _holder(p: Pipeline, record: dict[str, Any]) -> dict[str, Any]:
    """The publishing lease as it stands ({} when there is none)."""
    found = p.store.read_json(p.work_bucket, _latest(record))
    return found.value if found else {}


def _release_latest(p: Pipeline, record: dict[str, Any], token: str) -> None:
    mutate_json(p.store, p.work_bucket, _latest(record),
                lambda cur: {**cur, "publishing": False} if cur and cur.get("token") == token
                and cur.get("publishing") else None)


def _latest(record: dict[str, Any]) -> str:
    return layout.latest_name(record["input"]["bucket"], record["input"]["name"])


def _done(p: Pipeline, record: dict[str, Any], *, superseded: bool, report_doc: dict[str, Any] | None) -> None:
    """Announce, then mark done: a crash in between repeats the announcement (at least once), never loses it."""
    run = record["run"]
    payload = {"run": run, "input": record["input"], "superseded": superseded}
    if report_doc is not None:
        payload.update(state=report_doc["state"], rows=report_doc["rows"],
                       report=f"gs://{p.work_bucket}/{layout.report_name(record['rel'])}",
                       results=report_doc["results"], errors=report_doc["errors"])
    p.publisher.publish(p.config.run_finished_topic, payload)
    mutate_json(p.store, p.work_bucket, layout.run_state_name(run),
                lambda r: runstate.finished(r, now=p.now(), superseded=superseded) if r else None)
    for marker in list(p.store.list_names(p.work_bucket, layout.job_marker_prefix(run))):
        p.store.delete(p.work_bucket, marker)  # the record names every job now
    # Last: the run leaves the reconciliation's list of unfinished runs only once it is done.
    p.store.delete(p.work_bucket, layout.open_marker_name(run))
    if report_doc is not None:
        log.info("run.finished", f"run {run} {report_doc['state']}: {report_doc['rows']['succeeded']} of "
                 f"{report_doc['rows']['total']} rows succeeded", run=run, input=record["input"]["uri"],
                 state=report_doc["state"], rows=report_doc["rows"], tokens=report_doc["tokens"],
                 seconds=report_doc["seconds"], jobs=len(report_doc["jobs"]))
        # One line per reason: a log-based metric cannot read a map, but it can count rows by a label.
        for reason, rows in report_doc["rows"]["failedByReason"].items():
            log.info("rows.failed_by_reason", f"run {run}: {rows} rows failed: {reason}", run=run,
                     input=record["input"]["uri"], reason=reason, rows=rows)
